"""Tiny synthetic volumes for tests: a smooth head-like array and a SimpleITK image of it."""

from __future__ import annotations

import numpy as np


def blob_array(shape=(20, 24, 28), seed=0) -> np.ndarray:
    """Smooth positive ``(z, y, x)`` volume with a bright ellipsoid 'head' and some structure."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    head = ((zz / 0.8) ** 2 + (yy / 0.85) ** 2 + (xx / 0.9) ** 2) < 1
    texture = np.sin(3 * xx + rng.uniform(0, 3)) * np.cos(2 * yy) + 0.5 * zz
    return (head * (100 + 40 * texture)).astype(np.float32)


def make_image(array: np.ndarray, spacing=(1.0, 1.2, 1.5), origin=(-10.0, 5.0, 3.0), direction=None):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image
