"""What a translator kind receives and returns for one sliding window, and the helpers every kind uses (numpy).

Arrays are model-space ``(z, y, x)``; latents ``(L, z', y', x')``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Report = Callable[[str, float], None]


@dataclass
class WindowResult:
    """One window's outputs: ``image`` ``(Z, Y, X)``; ``moments`` (sum, sum of squares) over ``count``
    stochastic images or None; ``weights`` ``(K, z, y, x)`` latent-resolution contributions or None."""

    image: np.ndarray
    moments: tuple[np.ndarray, np.ndarray] | None
    weights: np.ndarray | None
    count: int = 0


@dataclass(frozen=True)
class Window:
    """What a kind needs about the current window: the inputs ``(K, Z, Y, X)``, its latent slices
    inside the padded latent volume, and that volume's latent shape ``(z, y, x)``."""

    inputs: np.ndarray
    latent_where: tuple[slice, slice, slice]
    latent_shape: tuple[int, int, int]
    report: Callable[[str, float], None]


def onehot(size: int, indices: list[int]) -> np.ndarray:
    """``(len(indices), size)`` float32 one-hot rows."""
    return np.eye(size, dtype=np.float32)[indices]


def encode_each(engine, inputs: np.ndarray) -> np.ndarray:
    """``(K, Z, Y, X)`` → ``(K, L, z, y, x)``, one input at a time (memory stays flat in K)."""
    return np.concatenate([engine.encode(np.ascontiguousarray(inputs[k:k + 1, None])) for k in range(len(inputs))])


def image_moments(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum and sum of squares over the first axis of ``(P, Z, Y, X)`` images (float64), for a running std."""
    images = images.astype(np.float64)
    return images.sum(0), (images**2).sum(0)


def add_moments(total, part):
    """Running (sum, sum of squares): ``total`` (or None at the start) plus ``part``."""
    return part if total is None else (total[0] + part[0], total[1] + part[1])


def precision_weights(logvars: np.ndarray) -> np.ndarray:
    """Inverse-variance weights ``(K, ...)`` from log-variances ``(K, ...)`` (softmax of ``-logvar`` over K)."""
    logits = -logvars.astype(np.float64)
    logits -= logits.max(axis=0, keepdims=True)
    weights = np.exp(logits)
    return (weights / weights.sum(axis=0, keepdims=True)).astype(np.float32)


__all__ = ["Report", "Window", "WindowResult", "add_moments", "encode_each", "image_moments", "onehot", "precision_weights"]
