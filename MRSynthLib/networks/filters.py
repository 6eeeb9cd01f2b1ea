"""Differentiable image filters on ``(B, C, *S)`` tensors, 2D or 3D: separable Gaussian blur, gradient magnitude.

Used by the HFIB encoder block (learnable sigma) and by the adaptive frequency loss (fixed sigma).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Normalised Gaussian taps ``(2 * radius + 1,)``; differentiable in the scalar tensor ``sigma``."""
    offsets = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return taps / taps.sum()


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor | float, radius: int) -> torch.Tensor:
    """Blur every channel of ``x`` ``(B, C, *S)`` along each spatial axis; replicate padding, same shape.

    Channels are folded into the batch, so the kernel's shape is static (ONNX-exportable)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    taps = gaussian_kernel1d(sigma, radius)
    spatial_dims = x.ndim - 2
    conv = F.conv3d if spatial_dims == 3 else F.conv2d
    out = x.reshape((-1, 1) + tuple(x.shape[2:]))
    for axis in range(spatial_dims):
        shape = [1] * spatial_dims
        shape[axis] = 2 * radius + 1
        padding = [0, 0] * spatial_dims
        padding[2 * (spatial_dims - 1 - axis)] = radius  # F.pad lists the last axis first
        padding[2 * (spatial_dims - 1 - axis) + 1] = radius
        out = conv(F.pad(out, padding, mode="replicate"), taps.view(1, 1, *shape))
    return out.reshape(x.shape)


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(sum_axis (central difference)^2)`` of ``x`` ``(B, C, *S)``; one-sided at the borders, same shape."""
    squared = torch.zeros_like(x)
    for axis in range(2, x.ndim):
        if x.shape[axis] < 2:
            continue
        squared = squared + torch.gradient(x, dim=axis)[0] ** 2
    return squared.sqrt()
