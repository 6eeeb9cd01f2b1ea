"""Torch-free architecture config of :mod:`MRSynthLib.networks.lhe`: readable (``from_dict``) and
checked without importing torch; the network module re-exports it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LHEConfig:
    enabled: bool = False
    dim: int = 32
    depth: int = 2
    heads: int = 4
    slice_chunk: int = 64  # axial slices per transformer call (bounds memory on whole volumes)
    initial_gain: float = 0.1

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"lhe.dim ({self.dim}) must be divisible by lhe.heads ({self.heads})")


__all__ = ['LHEConfig']
