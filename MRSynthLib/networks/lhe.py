"""RSF's LHE: a slice-wise vision-transformer branch fused into the encoder's convolutional features.

Every axial slice of the input volume is cut into ``patch × patch`` tokens (``patch`` = the encoder's
downsampling, so the token grid is the latent grid in-plane) and passed through a few transformer
layers, slice by slice; the ``patch`` slices of one latent slab are averaged. The branch's features
are then aligned to the convolutional features channel by channel (their per-sample mean and standard
deviation are replaced by those of the conv features) and added as a residual with a learned gain.

Note the alignment uses per-sample statistics, so the branch's contribution depends on the field of
view it sees (patch in training, whole volume or window at inference).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from MRSynthLib.networks.configs.lhe import LHEConfig  # noqa: F401  (re-exported)


class TransformerLayer(nn.Module):
    """Pre-norm self-attention + MLP on tokens ``(N, T, D)`` (memory-efficient attention kernel)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, t, d = tokens.shape
        q, k, v = self.qkv(self.norm1(tokens)).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, d)
        tokens = tokens + self.proj(attended)
        return tokens + self.mlp(self.norm2(tokens))


class SliceTransformer(nn.Module):
    """``(B, 1, Z, Y, X)`` (or ``(B, 1, Y, X)``) image → ``(B, dim, Z/p, Y/p, X/p)`` (or ``(B, dim, Y/p, X/p)``).

    Slices never see each other: output slab ``j`` depends only on input slices ``j*p .. j*p + p - 1``.
    """

    def __init__(self, config: LHEConfig, patch: int) -> None:
        super().__init__()
        self.patch, self.chunk = patch, config.slice_chunk
        self.embed = nn.Conv2d(1, config.dim, patch, stride=patch)
        self.position = nn.Conv2d(config.dim, config.dim, 3, padding=1, groups=config.dim)  # size-agnostic
        self.layers = nn.ModuleList(TransformerLayer(config.dim, config.heads) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)

    def _slices(self, slices: torch.Tensor) -> torch.Tensor:
        """``(N, 1, Y, X)`` → ``(N, dim, Y/p, X/p)``."""
        tokens = self.embed(slices)
        tokens = tokens + self.position(tokens)
        n, d, h, w = tokens.shape
        x = tokens.flatten(2).transpose(1, 2)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).transpose(1, 2).reshape(n, d, h, w)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim == 4:
            return self._slices(image)
        b, _, z, y, x = image.shape
        slices = image.permute(0, 2, 1, 3, 4).reshape(b * z, 1, y, x)
        if torch.onnx.is_in_onnx_export():  # a traced split would fix the number of slices
            features = self._slices(slices)
        else:
            features = torch.cat([self._slices(part) for part in slices.split(self.chunk)])
        features = features.view(b, z, *features.shape[1:]).permute(0, 2, 1, 3, 4)  # (B, D, Z, y, x)
        if self.patch > 1:
            features = features.unflatten(2, (z // self.patch, self.patch)).mean(dim=3)
        return features


def align_moments(source: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``source`` ``(B, C, *S)`` with each (sample, channel)'s mean/std replaced by ``reference``'s."""
    dims = tuple(range(2, source.ndim))
    src_mean, src_std = source.mean(dims, keepdim=True), source.std(dims, keepdim=True, correction=0)
    ref_mean, ref_std = reference.mean(dims, keepdim=True), reference.std(dims, keepdim=True, correction=0)
    return (source - src_mean) / (src_std + eps) * ref_std + ref_mean


class SliceTransformerEnhancement(nn.Module):
    """RSF's LHE: ``conv_features + gain * align_moments(project(branch(image)), conv_features)``."""

    def __init__(self, config: LHEConfig, spatial_dims: int, channels: int, patch: int) -> None:
        super().__init__()
        self.branch = SliceTransformer(config, patch)
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.project = conv(config.dim, channels, 1)
        self.gain = nn.Parameter(torch.tensor(float(config.initial_gain)))

    def forward(self, conv_features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``conv_features`` ``(B, C, *S/p)``, ``image`` ``(B, 1, *S)`` → ``(B, C, *S/p)``."""
        aligned = align_moments(self.project(self.branch(image)), conv_features)
        return conv_features + self.gain * aligned
