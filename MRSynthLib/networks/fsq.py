"""Finite scalar quantisation (FSQ): each latent channel is bounded and rounded to a few levels.

The implicit codebook is the product of the per-channel levels, e.g. ``(8, 5, 5, 5)`` → 1000 codes.
Gradients pass through the rounding unchanged (straight-through estimator).
"""

from __future__ import annotations

import torch
from torch import nn


class FSQ(nn.Module):
    """Quantise ``z`` of shape ``(B, C, *spatial)`` with ``C == len(levels)``.

    Channel ``c`` is squashed to ``(-1, 1)`` with ``tanh`` and rounded to ``levels[c]`` evenly spaced
    values in ``[-1, 1]``.
    """

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        if not levels or any(int(level) < 2 for level in levels):
            raise ValueError(f"levels must be a non-empty tuple of integers >= 2, not {levels!r}")
        self.levels = tuple(int(level) for level in levels)
        self.register_buffer("_levels", torch.tensor(self.levels, dtype=torch.float32), persistent=False)
        basis = torch.cumprod(torch.tensor((1,) + self.levels[:-1], dtype=torch.int64), dim=0)
        self.register_buffer("_basis", basis, persistent=False)

    @property
    def dim(self) -> int:
        return len(self.levels)

    @property
    def encoder_channels(self) -> int:
        return self.dim

    @property
    def latent_channels(self) -> int:
        return self.dim

    @property
    def codebook_size(self) -> int:
        size = 1
        for level in self.levels:
            size *= level
        return size

    def _shape(self, ndim: int) -> tuple[int, ...]:
        return (1, self.dim) + (1,) * (ndim - 2)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Continuous values in ``(-1, 1)`` before rounding, ``(B, C, *spatial)``."""
        return torch.tanh(z)

    def round_bounded(self, bounded: torch.Tensor) -> torch.Tensor:
        """Round bounded values to the grid of each channel, straight-through."""
        half = (self._levels.view(self._shape(bounded.ndim)) - 1) / 2
        quantized = torch.round((bounded + 1) * half) / half - 1
        return bounded + (quantized - bounded).detach()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Quantised latent, same shape as ``z``, values on the per-channel grids in ``[-1, 1]``."""
        return self.round_bounded(self.bound(z))

    def train_latent(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(quantised z, regulariser)``; FSQ needs no regulariser (a zero scalar)."""
        return self(z), z.new_zeros(())

    def inference_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self(z)

    def to_decoder(self, latent: torch.Tensor) -> torch.Tensor:
        return latent

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial)`` quantised codes → ``(B, *spatial)`` int64 codebook indices."""
        half = (self._levels.view(self._shape(codes.ndim)) - 1) / 2
        digits = torch.round((codes + 1) * half).long()
        return (digits * self._basis.view(self._shape(codes.ndim))).sum(dim=1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """``(B, *spatial)`` indices → ``(B, C, *spatial)`` codes in ``[-1, 1]``."""
        shape = self._shape(indices.ndim + 1)
        digits = (indices.unsqueeze(1) // self._basis.view(shape)) % self._levels.view(shape).long()
        half = (self._levels.view(shape) - 1) / 2
        return digits.float() / half - 1
