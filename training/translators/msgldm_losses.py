"""MSG-LDM's training losses besides diffusion: structure-aware (L1 + SSIM of DCT amplitude spectra),
style consistency (supervised contrastive over modality labels) and the auxiliary segmentation loss.

Tensors are ``(B, C, *S)`` with ``S`` 2D or 3D.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from MRSynthLib.networks.filters import gaussian_blur

SSIM_SIGMA, SSIM_RADIUS = 1.5, 3


def dct_matrix(n: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``(n, n)``: ``X = D @ x`` along one axis, ``D @ D.T = I``."""
    k = torch.arange(n, dtype=torch.float64, device=device).view(-1, 1)
    i = torch.arange(n, dtype=torch.float64, device=device).view(1, -1)
    matrix = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    matrix[0] /= math.sqrt(2.0)
    return matrix.to(dtype)


def dct(x: torch.Tensor) -> torch.Tensor:
    """Separable orthonormal DCT-II over every spatial axis of ``x`` ``(B, C, *S)``."""
    out = x
    for axis in range(2, x.ndim):
        matrix = dct_matrix(x.shape[axis], x.dtype, x.device)
        out = torch.movedim(torch.tensordot(out, matrix, dims=([axis], [1])), -1, axis)
    return out


def amplitude_spectrum(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + |DCT(x)|)``: the DCT amplitude spectrum on a log scale (its dynamic range spans decades)."""
    return torch.log1p(dct(x).abs())


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of ``a`` and ``b`` ``(B, C, *S)`` with a Gaussian window (sigma 1.5), data range = the
    larger maximum of the two; any size (replicate padding)."""
    data_range = torch.maximum(a.detach().abs().max(), b.detach().abs().max()).clamp_min(1e-6)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(x):
        return gaussian_blur(x, SSIM_SIGMA, SSIM_RADIUS)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return value.mean()


def structure_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structure-aware loss: ``L1 + (1 - SSIM)`` between the DCT amplitude spectra of the two feature maps."""
    a, b = amplitude_spectrum(prediction), amplitude_spectrum(target)
    return F.l1_loss(a, b) + (1.0 - ssim(a, b))


def style_contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss: embeddings ``(N, D)`` of the same modality label ``(N,)`` attract,
    others repel (cosine similarity / ``temperature``). 0 when no embedding shares its label with another."""
    z = F.normalize(embeddings, dim=1)
    similarity = z @ z.t() / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    similarity = similarity.masked_fill(self_mask, float("-inf"))
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positives = (labels.view(-1, 1) == labels.view(1, -1)) & ~self_mask
    count = positives.sum(dim=1)
    anchors = count > 0
    if not bool(anchors.any()):
        return embeddings.sum() * 0.0
    mean_positive = (log_prob.masked_fill(~positives, 0.0)).sum(dim=1)[anchors] / count[anchors]
    return -mean_positive.mean()


def label_fractions(labels: torch.Tensor, label_values: tuple[int, ...], downsampling: int) -> torch.Tensor:
    """Label maps ``(B, *S)`` (integers) → class fractions ``(B, 1 + len(label_values), *S / downsampling)``:
    class ``k + 1`` is ``label_values[k]``, class 0 everything else; averaged over each ``downsampling^d`` block."""
    classes = torch.zeros_like(labels, dtype=torch.long)
    for k, value in enumerate(label_values, start=1):
        classes = torch.where(labels == value, torch.full_like(classes, k), classes)
    onehot = torch.movedim(F.one_hot(classes, len(label_values) + 1), -1, 1).float()
    pool = F.avg_pool3d if labels.ndim == 4 else F.avg_pool2d
    return pool(onehot, downsampling) if downsampling > 1 else onehot


def segmentation_loss(logits: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits`` ``(B, K, *s)`` against soft class fractions ``(B, K, *s)``."""
    return -(fractions * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
