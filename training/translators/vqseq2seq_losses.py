"""VQ-Seq2Seq's latent consistency loss (masked MSE + patch contrastive) and its optional perceptual loss.

The common latents of two sequences of one case, at one window, should be the same: the MSE pulls each
towards the other (the other side detached, both directions), and the patch contrastive loss (InfoNCE)
makes each latent voxel of one sequence closer to the *same* voxel of the other sequence than to any
other sampled voxel.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.config import ConfigError


def masked_consistency_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mse(a, sg(b)) + mse(sg(a), b)`` over voxels where ``mask`` ``(B, 1, *s)`` is set; ``a, b`` ``(B, C, *s)``."""
    weight = mask.to(a.dtype).expand_as(a)
    count = weight.sum().clamp_min(1.0)
    return (((a - b.detach()) ** 2 * weight).sum() + ((a.detach() - b) ** 2 * weight).sum()) / count


def patch_contrastive(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, patches: int, temperature: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Symmetric InfoNCE between the voxels of ``a`` and ``b`` ``(B, C, *s)`` at up to ``patches`` random
    voxels of ``mask`` ``(B, 1, *s)`` per sample: the positive of voxel ``i`` of ``a`` is voxel ``i`` of
    ``b``, the other sampled voxels of ``b`` are its negatives (cosine similarity / ``temperature``).
    Samples with fewer than 2 masked voxels are skipped (0 when none has 2)."""
    losses = []
    for i in range(a.shape[0]):
        where = torch.nonzero(mask[i, 0].reshape(-1), as_tuple=False).flatten()
        if where.numel() < 2:
            continue
        if where.numel() > patches:
            where = where[torch.randperm(where.numel(), generator=generator)[:patches].to(where.device)]
        fa = F.normalize(a[i].reshape(a.shape[1], -1)[:, where].t(), dim=1)
        fb = F.normalize(b[i].reshape(b.shape[1], -1)[:, where].t(), dim=1)
        logits = fa @ fb.t() / temperature
        labels = torch.arange(len(where), device=a.device)
        losses.append(0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)))
    return torch.stack(losses).mean() if losses else a.sum() * 0.0


class SlicePerceptualLoss(nn.Module):
    """L1 between the features of a frozen local 2D network on the central axial, coronal and sagittal
    slices of prediction and truth ``(B, 1, Z, Y, X)`` (normalised units, clipped to [0, 1], repeated to
    3 channels). The network is a TorchScript file (``torch.jit.save``) returning a tensor or a list/tuple
    of tensors; nothing is downloaded."""

    def __init__(self, path: str) -> None:
        super().__init__()
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"method.vqseq2seq.perceptual_network {str(file)!r} must be an existing TorchScript file "
                              f"(a 2D feature network saved with torch.jit.save); set it to \"\" to train without it")
        self.network = torch.jit.load(str(file), map_location="cpu").eval()
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> SlicePerceptualLoss:
        super().train(mode)
        self.network.eval()
        return self

    @staticmethod
    def _slices(volume: torch.Tensor) -> torch.Tensor:
        z, y, x = volume.shape[2:]
        planes = [volume[:, 0, z // 2], volume[:, 0, :, y // 2], volume[:, 0, :, :, x // 2]]
        size = max(max(p.shape[-2:]) for p in planes)
        planes = [F.interpolate(p[:, None], size=(size, size), mode="bilinear", align_corners=False) for p in planes]
        return torch.cat(planes).clamp(0, 1).expand(-1, 3, -1, -1)

    def forward(self, prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        def features(volume):
            out = self.network(self._slices(volume))
            return list(out) if isinstance(out, (list, tuple)) else [out]

        with torch.no_grad():
            targets = features(truth)
        return torch.stack([F.l1_loss(p, t) for p, t in zip(features(prediction), targets)]).mean()
