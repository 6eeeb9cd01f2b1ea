"""Reconstruction losses shared by both stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ImageLoss(torch.nn.Module):
    """``L1 + ssim_weight * (1 - SSIM)`` on ``(B, 1, *S)`` images in normalised units."""

    def __init__(self, spatial_dims: int, ssim_weight: float, data_range: float = 1.5) -> None:
        super().__init__()
        from monai.losses import SSIMLoss

        self.ssim_weight = ssim_weight
        self.ssim = SSIMLoss(spatial_dims=spatial_dims, data_range=data_range, win_size=7) if ssim_weight > 0 else None

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        l1 = F.l1_loss(prediction, target)
        terms = {"l1": l1.item()}
        loss = l1
        if self.ssim is not None:
            ssim_loss = self.ssim(prediction, target)
            terms["ssim_loss"] = ssim_loss.item()
            loss = loss + self.ssim_weight * ssim_loss
        return loss, terms
