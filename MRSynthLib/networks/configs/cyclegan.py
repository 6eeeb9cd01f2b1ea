"""Torch-free architecture config of :mod:`MRSynthLib.networks.cyclegan`: readable (``from_dict``) and
checked without importing torch; the network module re-exports it."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of :class:`LatentGenerator`; ``source``/``target`` name the contrasts it maps between."""

    spatial_dims: int = 3
    latent_channels: int = 4
    source: str = "t1"
    target: str = "t1ce"
    hidden: int = 32
    num_blocks: int = 3
    dropout: float = 0.1

    @classmethod
    def from_dict(cls, data: dict) -> GeneratorConfig:
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


__all__ = ['GeneratorConfig']
