"""MSG-LDM's fusion of the per-modality structure features: MMSF gates at every scale, then MSSE
cross-attention from the lower (coarser) scales into the top (latent-resolution) scale.

- :class:`GatedScaleFusion` (MMSF, one per scale): a sigmoid gate per modality and voxel, conditioned on
  the target contrast; the gates are normalised over the *available* modalities (a missing one gets
  weight exactly 0), the features are summed with these weights and passed through a convolution.
- :class:`ScaleCrossAttention` (MSSE): every top-scale voxel (query) attends to the ``(2r+1)^d``
  neighbourhood of its parent voxel at every lower scale (keys and values projected from that scale and
  upsampled, nearest, to the top resolution); the multi-head attention output is added to the top scale.
  Local rather than global attention keeps memory linear in the volume (3D latents have 10^4-10^5 voxels).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from MRSynthLib.networks.autoencoder import ACTIVATION


class GatedScaleFusion(nn.Module):
    """MMSF at one scale.

    forward(features, available, target_onehot):
        features: ``(B, M, C, *s)`` every modality slot's structure features;
        available: ``(B, M)`` 1.0 where the modality is given;
        target_onehot: ``(B, M)``;
    returns fused ``(B, C, *s)`` and weights ``(B, M, *s)`` (sum 1 over available slots, 0 elsewhere).
    """

    def __init__(self, spatial_dims: int, channels: int, slots: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            Convolution(spatial_dims, channels + slots, max(channels // 2, 1), kernel_size=3, act=ACTIVATION, norm=None),
            Convolution(spatial_dims, max(channels // 2, 1), 1, kernel_size=1, conv_only=True),
        )
        self.mix = Convolution(spatial_dims, channels, channels, kernel_size=3, act=ACTIVATION, norm=None)

    def forward(self, features: torch.Tensor, available: torch.Tensor,
                target_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, m = features.shape[:2]
        spatial = features.shape[3:]
        ones = (1,) * len(spatial)
        code = target_onehot.to(features.dtype).view(b, 1, m, *ones).expand(b, m, m, *spatial)
        gates = torch.sigmoid(self.gate(torch.cat([features, code], dim=2).flatten(0, 1))).view(b, m, *spatial)
        weights = gates * available.to(gates.dtype).view(b, m, *ones)
        weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-6)
        fused = (features * weights.unsqueeze(2)).sum(dim=1)
        return self.mix(fused), weights


def neighbourhoods(x: torch.Tensor, radius: int) -> torch.Tensor:
    """``(B, C, *s)`` → ``(B, C, (2r+1)^d, *s)``: each voxel's neighbours (replicate padding at the borders)."""
    d = x.ndim - 2
    padded = F.pad(x, [radius] * (2 * d), mode="replicate")
    size = 2 * radius
    views = []
    for offsets in itertools.product(range(size + 1), repeat=d):
        where = tuple(slice(o, o - size if o < size else None) for o in offsets)
        views.append(padded[(slice(None), slice(None)) + where])
    return torch.stack(views, dim=2)


class ScaleCrossAttention(nn.Module):
    """MSSE: ``forward(top (B, C0, *s), lower [(B, C_i, *s / 2**i), i = 1..]) → (B, C0, *s)``.

    ``top + out(attention)``, queries from ``top``, keys/values from the ``(2 radius + 1)^d`` neighbourhood
    of the parent voxel at every lower scale; ``heads`` heads of ``width / heads`` channels.
    """

    def __init__(self, spatial_dims: int, channels: tuple[int, ...], width: int, heads: int, radius: int = 1) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"attention width {width} must be divisible by heads {heads}")
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.heads, self.radius = heads, radius
        self.query = conv(channels[0], width, 1)
        self.keys = nn.ModuleList([conv(c, width, 1) for c in channels[1:]])
        self.values = nn.ModuleList([conv(c, width, 1) for c in channels[1:]])
        self.out = conv(width, channels[0], 1)

    def attention(self, top: torch.Tensor, lower: list[torch.Tensor]) -> torch.Tensor:
        """Attention weights ``(B, heads, N, *s)`` over the ``N`` lower-scale neighbours of each top voxel."""
        return self._attend(top, lower)[0]

    def _attend(self, top: torch.Tensor, lower: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = [], []
        for i, (scale, key, value) in enumerate(zip(lower, self.keys, self.values), start=1):
            factor = float(2**i)
            for projection, out in ((key, keys), (value, values)):
                near = neighbourhoods(projection(scale), self.radius)  # (B, W, n, *s_i)
                b, w, n = near.shape[:3]
                up = F.interpolate(near.flatten(1, 2), scale_factor=factor, mode="nearest")
                out.append(up.view(b, w, n, *up.shape[2:]))
        k, v = torch.cat(keys, dim=2), torch.cat(values, dim=2)  # (B, W, N, *s)
        q = self.query(top)
        b, w = q.shape[:2]
        spatial = q.shape[2:]
        h = self.heads
        q = q.view(b, h, w // h, 1, *spatial)
        k = k.view(b, h, w // h, k.shape[2], *spatial)
        v = v.view(b, h, w // h, v.shape[2], *spatial)
        weights = torch.softmax((q * k).sum(dim=2) / math.sqrt(w // h), dim=2)  # (B, h, N, *s)
        attended = (weights.unsqueeze(2) * v).sum(dim=3).reshape(b, w, *spatial)
        return weights, attended

    def forward(self, top: torch.Tensor, lower: list[torch.Tensor]) -> torch.Tensor:
        if not lower:
            return top
        return top + self.out(self._attend(top, lower)[1])
