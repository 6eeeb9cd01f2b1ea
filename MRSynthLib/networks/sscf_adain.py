"""Adaptive instance normalisation (AdaIN), plain and region-wise (SSCF's prototype injection, CCP).

``adain(x, mean, std)`` gives every channel of ``x`` the mean and standard deviation of a style:
``(x - mu(x)) / sigma(x) * std + mean`` with ``mu``, ``sigma`` over the spatial axes of each channel
(``sigma = sqrt(var + eps)``). :func:`region_adain` does this separately inside and outside a soft mask
(statistics weighted by the mask) and blends the two by the mask, so a tumour and the tissue around it
each receive their own style. Everything is differentiable and exports to ONNX.
"""

from __future__ import annotations

import torch

EPS = 1e-5


def weighted_moments(x: torch.Tensor, weights: torch.Tensor | None = None,
                     eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel mean and std over the spatial axes, optionally weighted.

    Args:
        x: ``(B, C, *s)``; weights: ``(B, 1, *s)`` non-negative, or None (uniform).
    Returns:
        mean ``(B, C)`` and std ``(B, C)`` with ``std = sqrt(var + eps)``.
    """
    axes = tuple(range(2, x.ndim))
    if weights is None:
        mean = x.mean(dim=axes)
        var = x.var(dim=axes, unbiased=False)
    else:
        total = weights.sum(dim=axes).clamp_min(eps)  # (B, 1)
        mean = (x * weights).sum(dim=axes) / total
        centred = x - mean.view(mean.shape + (1,) * len(axes))
        var = (centred**2 * weights).sum(dim=axes) / total
    return mean, torch.sqrt(var + eps)


def _spread(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(values.shape + (1,) * (like.ndim - 2))


def adain(x: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
          weights: torch.Tensor | None = None, eps: float = EPS) -> torch.Tensor:
    """``x`` ``(B, C, *s)`` with the channel statistics of ``x`` (weighted by ``weights`` ``(B, 1, *s)``)
    replaced by ``style_mean``, ``style_std`` ``(B, C)``."""
    mean, std = weighted_moments(x, weights, eps)
    return (x - _spread(mean, x)) / _spread(std, x) * _spread(style_std, x) + _spread(style_mean, x)


def region_adain(x: torch.Tensor, tumour: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
                 strength: torch.Tensor | None = None, eps: float = EPS) -> torch.Tensor:
    """Region-wise AdaIN: outside the mask (region 0) and inside it (region 1) separately.

    Args:
        x: ``(B, C, *s)`` features; tumour: ``(B, 1, *s)`` soft mask in [0, 1].
        style_mean, style_std: ``(B, 2, C)`` statistics of region 0 (outside) and 1 (inside).
        strength: ``(B, 1)`` in [0, 1]: 1 injects the style, 0 keeps ``x`` (no prototype); None = 1.
    Returns:
        ``(B, C, *s)``: ``(1 - m) * AdaIN_0(x) + m * AdaIN_1(x)``, each AdaIN with the statistics of
        ``x`` weighted by its region, blended with ``x`` by ``strength``.
    """
    outside, inside = 1.0 - tumour, tumour
    styled = (outside * adain(x, style_mean[:, 0], style_std[:, 0], outside, eps)
              + inside * adain(x, style_mean[:, 1], style_std[:, 1], inside, eps))
    if strength is None:
        return styled
    s = _spread(strength, x)
    return s * styled + (1.0 - s) * x


def region_moments(x: torch.Tensor, tumour: torch.Tensor, min_weight: float = 1.0,
                   eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-region statistics of ``x`` ``(B, C, *s)`` for a prototype: ``(B, 2, C)`` mean and std outside and
    inside the soft mask ``tumour`` ``(B, 1, *s)``. A region of less than ``min_weight`` voxels (summed
    mask) falls back smoothly to the statistics of the whole patch (a patch without tumour stores its
    global statistics as its tumour prototype)."""
    axes = tuple(range(2, x.ndim))
    whole = weighted_moments(x, None, eps)
    means, stds = [], []
    for weights in (1.0 - tumour, tumour):
        alpha = (weights.sum(dim=axes) / min_weight).clamp(0.0, 1.0)  # (B, 1)
        mean, std = weighted_moments(x, weights, eps)
        means.append(alpha * mean + (1 - alpha) * whole[0])
        stds.append(alpha * std + (1 - alpha) * whole[1])
    return torch.stack(means, dim=1), torch.stack(stds, dim=1)
