"""Orthonormal Haar wavelet transform (2D/3D) and 3D-WLDM's wavelet residual block.

The one-level Haar transform splits ``(B, C, *S)`` into a low band ``(B, C, *S/2)`` and ``2**n - 1``
high bands stacked band-major as ``(B, (2**n - 1) * C, *S/2)`` (n = spatial dims). It is orthonormal
(energy preserving) and its inverse reconstructs the input exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_SQRT_HALF = math.sqrt(0.5)


def _haar_pairs(t: torch.Tensor, axis: int) -> torch.Tensor:
    """Replace the length-2 ``axis`` (a, b) by ((a + b), (a - b)) / sqrt(2); its own inverse."""
    a, b = t.select(axis, 0), t.select(axis, 1)
    return torch.stack((a + b, a - b), dim=axis) * _SQRT_HALF


def haar_dwt(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``(B, C, *S)`` with even ``S`` → ``(low (B, C, *S/2), high (B, (2**n - 1) * C, *S/2))``."""
    b, c, spatial = x.shape[0], x.shape[1], x.shape[2:]
    n = len(spatial)
    if any(s % 2 for s in spatial):
        raise ValueError(f"haar_dwt needs even spatial sizes, not {tuple(spatial)}")
    half = [s // 2 for s in spatial]
    t = x.reshape(b, c, *[v for h in half for v in (h, 2)])
    pair_axes = [3 + 2 * i for i in range(n)]
    for axis in pair_axes:
        t = _haar_pairs(t, axis)
    t = t.permute(0, *pair_axes, 1, *[2 + 2 * i for i in range(n)]).reshape(b, 2**n, c, *half)
    return t[:, 0], t[:, 1:].reshape(b, (2**n - 1) * c, *half)


def haar_idwt(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`haar_dwt`: ``(B, C, *s)``, ``(B, (2**n - 1) * C, *s)`` → ``(B, C, *2s)``."""
    b, c, half = low.shape[0], low.shape[1], low.shape[2:]
    n = len(half)
    t = torch.cat([low[:, None], high.reshape(b, 2**n - 1, c, *half)], dim=1).reshape(b, *([2] * n), c, *half)
    for axis in range(1, n + 1):
        t = _haar_pairs(t, axis)
    order = [0, n + 1] + [a for i in range(n) for a in (n + 2 + i, 1 + i)]
    return t.permute(*order).reshape(b, c, *[2 * h for h in half])


def _conv(spatial_dims: int, channels: int, groups: int) -> nn.Module:
    """3-wide conv, activation, 1-wide conv (the second conv is pointwise to halve the cost)."""
    conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    return nn.Sequential(
        conv(channels, channels, 3, padding=1, groups=groups),
        nn.LeakyReLU(0.1),
        conv(channels, channels, 1, groups=groups),
    )


class WaveletResidualBlock(nn.Module):
    """``x + IDWT(conv_low(low), conv_high(high))`` with ``(low, high) = DWT(x)``; ``(B, C, *S)`` → same.

    The high bands get a grouped convolution (one group per band), so each orientation has its own
    filters. Odd sizes are padded (replicate) to even and cropped back.
    """

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        bands = 2**spatial_dims - 1
        self.low = _conv(spatial_dims, channels, groups=1)
        self.high = _conv(spatial_dims, bands * channels, groups=bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        padding = [p for s in reversed(spatial) for p in (0, s % 2)]
        # padded also when every size is even: a Python branch on the sizes would be traced as a constant, and the
        # ONNX graph would then refuse odd sizes (a wavelet autoencoder's deeper levels see them)
        padded = F.pad(x, padding, mode="replicate")
        low, high = haar_dwt(padded)
        out = haar_idwt(self.low(low), self.high(high))
        return x + out[(...,) + tuple(slice(0, s) for s in spatial)]
