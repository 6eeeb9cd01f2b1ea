"""MSG-LDM's encoders on latents: per-modality multi-scale structure encoders with HFIB, a shared style
encoder and a shared segmentation decoder.

- :class:`StructureEncoder` (one per modality slot): scale 0 at the latent resolution, every further
  scale halves it; each scale is a convolution followed by a high-frequency injection block
  (:class:`MRSynthLib.networks.hfib.HighFrequencyInjection`, learnable Gaussian low-pass, high-pass residual).
- :class:`StyleEncoder` (shared by all modalities): two strided convolutions, a global mean and a linear
  layer → one style vector per latent; trained with a contrastive loss over modality labels.
- :class:`SegmentationDecoder` (shared): scale-0 structure features → label logits at the latent
  resolution; one decoder for every modality forces the structure features to be modality-invariant.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

from MRSynthLib.networks.autoencoder import ACTIVATION
from MRSynthLib.networks.hfib import HighFrequencyInjection


class StructureEncoder(nn.Module):
    """``(B, L, *s)`` → list of ``(B, channels[i], *s / 2**i)``, one per scale."""

    def __init__(self, spatial_dims: int, latent_channels: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        levels = []
        previous = latent_channels
        for i, width in enumerate(channels):
            levels.append(nn.Sequential(
                Convolution(spatial_dims, previous, width, strides=1 if i == 0 else 2, kernel_size=3, act=ACTIVATION,
                            norm=None),
                HighFrequencyInjection(spatial_dims, width),
            ))
            previous = width
        self.levels = nn.ModuleList(levels)

    def forward(self, latent: torch.Tensor) -> list[torch.Tensor]:
        scales = []
        x = latent
        for level in self.levels:
            x = level(x)
            scales.append(x)
        return scales


class StyleEncoder(nn.Module):
    """``(B, L, *s)`` → style vectors ``(B, style_dim)`` (not normalised)."""

    def __init__(self, spatial_dims: int, latent_channels: int, width: int, style_dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            Convolution(spatial_dims, latent_channels, width, strides=2, kernel_size=3, act=ACTIVATION, norm=None),
            Convolution(spatial_dims, width, width, strides=2, kernel_size=3, act=ACTIVATION, norm=None),
        )
        self.project = nn.Linear(width, style_dim)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.project(self.body(latent).flatten(2).mean(dim=2))


class SegmentationDecoder(nn.Module):
    """Scale-0 structure features ``(B, C, *s)`` → label logits ``(B, classes, *s)``."""

    def __init__(self, spatial_dims: int, channels: int, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            Convolution(spatial_dims, channels, channels, kernel_size=3, act=ACTIVATION, norm=None),
            Convolution(spatial_dims, channels, classes, kernel_size=1, conv_only=True),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features)
