"""3D-WLDM's latent split: a latent ``z`` as a *structure* half and a *modality* half, with cosine losses.

:class:`LatentSplit` maps a frozen autoencoder latent ``(B, L, *s)`` by a pointwise convolution onto
``2 * C`` channels, read as ``structure`` ``(B, C, *s)`` (anatomy: should agree between contrasts of one
case) and ``modality`` ``(B, C, *s)`` (contrast appearance: should agree between cases of one contrast);
a pointwise ``merge`` maps ``[structure, modality]`` back onto ``z`` so the split keeps the information.

The cosine losses (:func:`structure_loss`, :func:`modality_loss`) push, for a pair of samples ``(a, b)``:

- structure: ``1 - cos`` when paired (same case and window, different contrasts), ``max(0, cos)`` when
  unpaired (other case or window); the cosine is over the whole flattened structure map;
- modality: ``1 - cos`` when ``a`` and ``b`` have the same contrast, ``max(0, cos)`` when they differ;
  the cosine is over the spatially averaged modality vector (appearance, not position).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from MRSynthLib.networks.configs.latent_split import LatentSplitConfig  # noqa: F401  (re-exported)


class LatentSplit(nn.Module):
    """``forward(latents (B, L, *s))`` → ``(structure (B, C, *s), modality (B, C, *s))``; ``merge`` inverts it."""

    def __init__(self, config: LatentSplitConfig = LatentSplitConfig()) -> None:
        super().__init__()
        self.config = config
        conv = nn.Conv3d if config.spatial_dims == 3 else nn.Conv2d
        c = config.split_channels
        self.split = nn.Sequential(conv(config.latent_channels, 2 * c, 1), nn.SiLU(), conv(2 * c, 2 * c, 1))
        self.merge_conv = nn.Sequential(conv(2 * c, 2 * c, 1), nn.SiLU(), conv(2 * c, config.latent_channels, 1))

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        halves = self.split(latents)
        c = self.config.split_channels
        return halves[:, :c], halves[:, c:]

    def merge(self, structure: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        """``(B, C, *s)``, ``(B, C, *s)`` → latents ``(B, L, *s)``."""
        return self.merge_conv(torch.cat([structure, modality], dim=1))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine of flattened ``(B, ...)`` tensors → ``(B,)``."""
    return F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=1e-6)


def pair_loss(cos: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
    """Mean of ``1 - cos`` where ``similar`` (bool ``(B,)``) and ``max(0, cos)`` elsewhere."""
    return torch.where(similar, 1.0 - cos, torch.relu(cos)).mean()


def structure_loss(structure_a: torch.Tensor, structure_b: torch.Tensor, paired: torch.Tensor) -> torch.Tensor:
    """Structure halves ``(B, C, *s)`` of two samples each; ``paired`` bool ``(B,)`` (same case and window)."""
    return pair_loss(_cosine(structure_a, structure_b), paired)


def modality_loss(modality_a: torch.Tensor, modality_b: torch.Tensor, same_contrast: torch.Tensor) -> torch.Tensor:
    """Modality halves ``(B, C, *s)``; the cosine is taken between their spatial means ``(B, C)``."""
    dims = tuple(range(2, modality_a.ndim))
    return pair_loss(_cosine(modality_a.mean(dims), modality_b.mean(dims)), same_contrast)
