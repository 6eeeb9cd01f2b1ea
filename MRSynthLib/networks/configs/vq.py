"""Torch-free architecture config of :mod:`MRSynthLib.networks.vq`: readable (``from_dict``) and
checked without importing torch; the network module re-exports it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VQConfig:
    """Codebook of ``codebook_size`` entries of ``dim`` channels (``dim`` = latent channels)."""

    codebook_size: int = 512
    dim: int = 4
    decay: float = 0.99
    dead_code_threshold: float = 1.0  # EMA count of assigned voxels per step below which an entry restarts
    epsilon: float = 1e-5

    def __post_init__(self) -> None:
        if self.codebook_size < 2 or self.dim < 1:
            raise ValueError(f"vq.codebook_size must be >= 2 and vq.dim >= 1, not {self.codebook_size}, {self.dim}")
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"vq.decay must be in (0, 1), not {self.decay}")


__all__ = ['VQConfig']
