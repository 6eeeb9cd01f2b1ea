"""Per-voxel features of the classical ``regression`` baseline (in the spirit of REPLICA, Jog et al. 2017).

For every input contrast, in model space (normalised intensities, zero outside the foreground mask):

- its intensity;
- its Gaussian-smoothed intensity at each of ``smoothing_mm`` (mask-normalised: the average over the
  foreground voxels under the Gaussian, so the dark background does not bleed into the brain edge);
- the magnitude of its gradient (mm⁻¹) after smoothing at ``gradient_mm``;

plus, once, the distance of the voxel to the edge of the foreground mask in mm (``mask_distance``).
Only foreground voxels get features; rows are in C order of ``np.argwhere(mask)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

INTENSITY, SMOOTH, GRADIENT, DISTANCE = "intensity", "smooth", "gradient", "mask_distance"


@dataclass(frozen=True)
class FeatureSpec:
    """Which features each input contrast contributes (stored in the bundle card)."""

    smoothing_mm: tuple[float, ...] = (2.0, 4.0, 8.0)
    gradient_mm: float = 2.0
    mask_distance: bool = True

    def __post_init__(self) -> None:
        if any(not s > 0 for s in self.smoothing_mm) or not self.gradient_mm > 0:
            raise ValueError(f"smoothing_mm and gradient_mm must be positive, not {self.smoothing_mm} and {self.gradient_mm}")

    @property
    def per_contrast(self) -> int:
        """Number of features of one input contrast."""
        return 2 + len(self.smoothing_mm)

    def names(self, inputs: tuple[str, ...]) -> list[str]:
        """Feature names in column order, e.g. ``["t1:intensity", "t1:smooth2mm", ..., "mask_distance"]``."""
        names = []
        for contrast in inputs:
            names.append(f"{contrast}:{INTENSITY}")
            names += [f"{contrast}:{SMOOTH}{s:g}mm" for s in self.smoothing_mm]
            names.append(f"{contrast}:{GRADIENT}{self.gradient_mm:g}mm")
        return names + ([DISTANCE] if self.mask_distance else [])

    def groups(self, inputs: tuple[str, ...]) -> np.ndarray:
        """``(F,)`` int: the input index each feature column belongs to; ``len(inputs)`` for mask_distance."""
        groups = np.repeat(np.arange(len(inputs)), self.per_contrast)
        return np.concatenate([groups, [len(inputs)]]) if self.mask_distance else groups

    def to_dict(self) -> dict:
        out = asdict(self)
        out["smoothing_mm"] = list(self.smoothing_mm)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        data = dict(data)
        if "smoothing_mm" in data:
            data["smoothing_mm"] = tuple(float(s) for s in data["smoothing_mm"])
        return cls(**data)


def _ndimage():
    """``scipy.ndimage``, or one clear error (scipy is needed by regression bundles only)."""
    try:
        from scipy import ndimage
    except ImportError:
        from MRSynthLib.errors import MRSynthError

        raise MRSynthError("Regression bundles compute their features with scipy: pip install scipy.") from None
    return ndimage


def _sigmas(mm: float, spacing_zyx: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in mm / spacing_zyx)


def masked_smooth(array: np.ndarray, mask: np.ndarray, weight: np.ndarray | None, mm: float,
                  spacing_zyx: np.ndarray) -> np.ndarray:
    """Gaussian average of ``array`` over the foreground only: ``G(array * mask) / G(mask)``; ``(z, y, x)``."""
    gaussian_filter = _ndimage().gaussian_filter
    sigma = _sigmas(mm, spacing_zyx)
    if weight is None:
        weight = gaussian_filter(mask.astype(np.float32), sigma, mode="constant")
    smoothed = gaussian_filter(np.where(mask, array, 0).astype(np.float32), sigma, mode="constant")
    return smoothed / np.maximum(weight, 1e-6)


def contrast_features(array: np.ndarray, mask: np.ndarray, spec: FeatureSpec,
                      spacing_zyx: np.ndarray) -> np.ndarray:
    """The ``spec.per_contrast`` features of one contrast at the foreground voxels: ``(V, per_contrast)`` float32.

    Args:
        array: model-space ``(z, y, x)`` normalised intensities.
        mask: ``(z, y, x)`` bool foreground.
        spacing_zyx: voxel size in mm along the array axes.
    """
    gaussian_filter = _ndimage().gaussian_filter
    columns = [array[mask]]
    for mm in spec.smoothing_mm:
        columns.append(masked_smooth(array, mask, None, mm, spacing_zyx)[mask])
    weight = gaussian_filter(mask.astype(np.float32), _sigmas(spec.gradient_mm, spacing_zyx), mode="constant")
    smoothed = masked_smooth(array, mask, weight, spec.gradient_mm, spacing_zyx)
    gradients = np.gradient(smoothed, *[float(s) for s in spacing_zyx])
    columns.append(np.sqrt(sum(g * g for g in gradients))[mask])
    return np.stack(columns, axis=1).astype(np.float32)


def mask_distance(mask: np.ndarray, spacing_zyx: np.ndarray) -> np.ndarray:
    """``(V,)`` float32: distance in mm from each foreground voxel to the nearest background voxel."""
    distance_transform_edt = _ndimage().distance_transform_edt
    padded = np.pad(mask, 1)  # the volume border counts as background
    distance = distance_transform_edt(padded, sampling=[float(s) for s in spacing_zyx])[1:-1, 1:-1, 1:-1]
    return distance[mask].astype(np.float32)


def voxel_features(arrays: dict[str, np.ndarray], mask: np.ndarray, inputs: tuple[str, ...], spec: FeatureSpec,
                   spacing_xyz: tuple[float, float, float]) -> np.ndarray:
    """Feature matrix ``(V, F)`` float32 of the foreground voxels, columns as :meth:`FeatureSpec.names`.

    Args:
        arrays: contrast -> model-space ``(z, y, x)`` array (must hold every name in ``inputs``).
        spacing_xyz: model spacing in SimpleITK order (x, y, z), as in ``PreprocessSpec.spacing``.
    """
    spacing_zyx = np.asarray(list(reversed(spacing_xyz)), dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    blocks = [contrast_features(np.asarray(arrays[c], dtype=np.float32), mask, spec, spacing_zyx) for c in inputs]
    if spec.mask_distance:
        blocks.append(mask_distance(mask, spacing_zyx)[:, None])
    return np.concatenate(blocks, axis=1)


__all__ = ["FeatureSpec", "contrast_features", "mask_distance", "masked_smooth", "voxel_features"]
