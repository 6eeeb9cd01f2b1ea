"""Torch-free architecture config of :mod:`MRSynthLib.networks.latent_split`: readable (``from_dict``) and
checked without importing torch; the network module re-exports it."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LatentSplitConfig:
    """``latent_channels`` L of the autoencoder; ``split_channels`` C of each half."""

    spatial_dims: int = 3
    latent_channels: int = 4
    split_channels: int = 4

    def __post_init__(self) -> None:
        if self.split_channels < 1:
            raise ValueError(f"split_channels must be at least 1, not {self.split_channels}")

    @classmethod
    def from_dict(cls, data: dict) -> LatentSplitConfig:
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


__all__ = ['LatentSplitConfig']
