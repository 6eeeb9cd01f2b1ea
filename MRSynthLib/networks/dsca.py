"""3D-WLDM's DSCA skip attention: structure emphasis and modality filtering of a UNet skip connection.

For skip features ``f`` ``(B, F, *s)`` and the source's structure and modality latents ``S``, ``M``
``(B, C, *c)`` (average-pooled onto a coarse token grid)::

    f' = f + Attn(f, S)          structure emphasis: cross-attention from the skip to the structure latent
    out = f' - Attn(f', M)       modality filtering: what attends to the modality latent is subtracted

``Attn(q, k)`` is single-head scaled dot-product cross-attention with pointwise projections: queries
from ``q``, keys and values from ``k`` (values are projected without bias, so a zero context
contributes exactly zero).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class CrossAttention(nn.Module):
    """``forward(features (B, F, *s), context (B, C, *c))`` → ``(B, F, *s)``; ``weights`` gives ``(B, N, Nc)``."""

    def __init__(self, spatial_dims: int, feature_channels: int, context_channels: int, inner_channels: int) -> None:
        super().__init__()
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.query = conv(feature_channels, inner_channels, 1)
        self.key = conv(context_channels, inner_channels, 1)
        self.value = conv(context_channels, feature_channels, 1, bias=False)
        self.scale = 1.0 / math.sqrt(inner_channels)

    def weights(self, features: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(B, N, Nc)`` of every feature voxel over the context tokens (rows sum to 1)."""
        q = self.query(features).flatten(2).transpose(1, 2)  # (B, N, d)
        k = self.key(context).flatten(2)  # (B, d, Nc)
        return torch.softmax(torch.bmm(q, k) * self.scale, dim=-1)

    def forward(self, features: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        v = self.value(context).flatten(2).transpose(1, 2)  # (B, Nc, F)
        out = torch.bmm(self.weights(features, context), v)  # (B, N, F)
        return out.transpose(1, 2).reshape(features.shape)


class DSCA(nn.Module):
    """``forward(skip (B, F, *s), structure (B, C, *c), modality (B, C, *c))`` → ``(B, F, *s)`` (see module doc)."""

    def __init__(self, spatial_dims: int, feature_channels: int, context_channels: int, inner_channels: int) -> None:
        super().__init__()
        self.emphasis = CrossAttention(spatial_dims, feature_channels, context_channels, inner_channels)
        self.filtering = CrossAttention(spatial_dims, feature_channels, context_channels, inner_channels)

    def forward(self, skip: torch.Tensor, structure: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        emphasised = skip + self.emphasis(skip, structure)
        return emphasised - self.filtering(emphasised, modality)
