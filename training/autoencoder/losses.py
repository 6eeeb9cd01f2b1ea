"""Reconstruction losses: L1 + 3D SSIM (both stages), RSF's adaptive frequency loss, cosine alignment."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from MRSynthLib.networks.filters import gaussian_blur, gradient_magnitude
from MRSynthLib.networks.precision import full_precision


class ImageLoss(torch.nn.Module):
    """``l1_weight * L1 + ssim_weight * (1 - SSIM)`` on ``(B, 1, *S)`` images in normalised units
    (SSIM with a 7-voxel window in ``spatial_dims`` dimensions).

    Always computed in float32, also inside bf16 autocast: SSIM's variances (E[x²] - E[x]²) cancel
    catastrophically in bf16's 8-bit mantissa (a bf16 SSIM loss moves in steps of 1/128)."""

    def __init__(self, spatial_dims: int, ssim_weight: float, data_range: float = 1.5, l1_weight: float = 1.0) -> None:
        super().__init__()
        from monai.losses import SSIMLoss

        self.l1_weight, self.ssim_weight = l1_weight, ssim_weight
        self.ssim = SSIMLoss(spatial_dims=spatial_dims, data_range=data_range, win_size=7) if ssim_weight > 0 else None

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with full_precision(prediction):
            return self._float32(prediction.float(), target.float())

    def _float32(self, prediction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        l1 = F.l1_loss(prediction, target)
        terms = {"l1": l1.detach()}  # tensors, read (synchronised) only when logged
        loss = self.l1_weight * l1
        if self.ssim is not None:
            ssim_loss = self.ssim(prediction, target)
            terms["ssim_loss"] = ssim_loss.detach()
            loss = loss + self.ssim_weight * ssim_loss
        return loss, terms


def high_frequency(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x - G_sigma * x``: the volume minus its local (Gaussian) smoothing, same shape."""
    return x - gaussian_blur(x, sigma, radius=max(1, math.ceil(3 * sigma)))


def gradient_attention(target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Volumetric gradient magnitude of ``target`` ``(B, 1, *S)``, divided by its per-sample mean (mean 1)."""
    magnitude = gradient_magnitude(target)
    return magnitude / (magnitude.mean(dim=tuple(range(1, target.ndim)), keepdim=True) + eps)


class AdaptiveFrequencyLoss(torch.nn.Module):
    """RSF's AFL: ``mean(attention * |HF(prediction) - HF(target)|)`` with ``HF = x - G_sigma * x``.

    ``attention`` is the target's gradient magnitude (mean 1 per sample), multiplied by the teacher's
    attention ``(B, 1, *S)`` when given; it is computed without gradients.
    """

    def __init__(self, sigma: float = 1.0) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, prediction: torch.Tensor, target: torch.Tensor,
                teacher_attention: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            attention = gradient_attention(target)
            if teacher_attention is not None:
                attention = attention * teacher_attention
        residual = high_frequency(prediction, self.sigma) - high_frequency(target, self.sigma)
        return (attention * residual.abs()).mean()


def cosine_alignment_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean(1 - cos(prediction, target))`` over rows of ``(N, D)``; 0 when aligned, at most 2."""
    return (1.0 - F.cosine_similarity(prediction, target.to(prediction.dtype), dim=1)).mean()
