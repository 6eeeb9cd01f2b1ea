"""MSG-LDM's high-frequency injection block (HFIB): a learnable Gaussian low-pass splits the features,
and the high-frequency part, processed by a convolution, is re-injected as a residual.

``low = G_sigma * x``, ``high = x - low`` (so ``low + high = x`` exactly), output ``x + conv(high)``;
``sigma`` is learned (kept in ``[0.3, radius]``) and gets gradients through ``high``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from MRSynthLib.networks.filters import gaussian_blur

RADIUS = 3
SIGMA_RANGE = (0.3, float(RADIUS))


class HighFrequencyInjection(nn.Module):
    """``(B, C, *S)`` → same shape."""

    def __init__(self, spatial_dims: int, channels: int, sigma: float = 1.0) -> None:
        super().__init__()
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma)))
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.inject = nn.Sequential(conv(channels, channels, 3, padding=1), nn.LeakyReLU(0.1))

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp().clamp(*SIGMA_RANGE)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(low, high)`` with ``low + high == x``."""
        low = gaussian_blur(x, self.sigma, RADIUS)
        return low, x - low

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inject(self.split(x)[1])
