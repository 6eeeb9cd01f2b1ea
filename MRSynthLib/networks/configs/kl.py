"""Torch-free architecture config of :mod:`MRSynthLib.networks.kl`: readable (``from_dict``) and
checked without importing torch; the network module re-exports it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KLConfig:
    """``channels`` latent channels (the encoder outputs twice as many: mean and log-variance)."""

    channels: int = 4
    scale_factor: float = 1.0  # measured by stage 1 and written here by the export

    def __post_init__(self) -> None:
        if self.channels < 1 or not self.scale_factor > 0:
            raise ValueError(f"kl.channels must be >= 1 and kl.scale_factor > 0, not {self.channels}, {self.scale_factor}")


__all__ = ['KLConfig']
