"""From the user's images to the model's space and back, exactly.

Forward (``to_model_space``), for images already on one common grid (the reference's):

1. reorient to the canonical LPS axis order (a pure permutation/flip of voxels, no interpolation);
2. resample to the bundle's spacing (skipped when the spacing already matches);
3. foreground mask from all inputs; crop to its bounding box plus a margin;
4. zero-pad so every axis is a multiple of the network's downsampling factor;
5. optionally N4 bias-field correction inside the head (:mod:`MRSynthLib.preprocessing.bias`, ``bias_correction: n4``);
6. per-contrast intensity normalisation (:mod:`MRSynthLib.preprocessing.normalization`: robust percentiles; ``ct`` by a
   fixed Hounsfield window).

Inverse (``ModelSpace.to_reference``) undoes 4 → 1 and lands on the reference grid exactly
(same size, spacing, origin and direction); voxels outside the foreground are 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from MRSynthLib.files.imageio import array_to_image, image_to_array
from MRSynthLib.preprocessing.normalization import NormalizationSpec, normalize

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

CANONICAL_ORIENTATION = "LPS"
SPACING_RANGE_MM: tuple[float, float] = (0.1, 20.0)
"""Model-space voxel spacings a card may ask for (finer would make a head billions of voxels)."""


@dataclass(frozen=True)
class PreprocessSpec:
    """Model-space rules, read from the bundle card."""

    spacing: tuple[float, float, float] = (2.0, 2.0, 2.0)
    size_multiple: int = 4
    margin_mm: float = 6.0
    foreground_fraction: float = 0.05
    normalization: NormalizationSpec = field(default_factory=NormalizationSpec)
    bias_correction: str = "none"  # "n4": N4 bias-field correction of every input inside the head (MRSynthLib.preprocessing.bias)

    def __post_init__(self) -> None:
        if len(self.spacing) != 3 or not all(SPACING_RANGE_MM[0] <= float(s) <= SPACING_RANGE_MM[1] for s in self.spacing):
            raise ValueError(f"preprocessing spacing must be three values in {SPACING_RANGE_MM[0]}..{SPACING_RANGE_MM[1]} mm, "
                             f"not {list(self.spacing)}")
        if not isinstance(self.size_multiple, int) or self.size_multiple < 1 or not self.margin_mm >= 0:
            raise ValueError(f"preprocessing size_multiple must be >= 1 and margin_mm >= 0, not {self.size_multiple}, "
                             f"{self.margin_mm}")
        if self.bias_correction not in ("none", "n4"):
            raise ValueError(f"bias_correction must be 'none' or 'n4', not {self.bias_correction!r}")

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessSpec:
        data = dict(data)
        data["spacing"] = tuple(float(s) for s in data["spacing"])
        if "normalization" in data:
            data["normalization"] = NormalizationSpec.from_dict(data["normalization"])
        return cls(**data)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["spacing"] = list(self.spacing)
        out["normalization"] = self.normalization.to_dict()
        return out


@dataclass
class ModelSpace:
    """Inputs in model space plus everything needed to go back to the reference grid.

    Attributes:
        arrays: contrast -> normalised float32 array, shape ``(z, y, x)`` in model space.
        mask: bool array, same shape: the foreground.
        intensity_ranges: contrast -> (low, high) raw intensities mapped to 0..1.
    """

    arrays: dict[str, np.ndarray]
    mask: np.ndarray
    intensity_ranges: dict[str, tuple[float, float]]
    reference: sitk.Image  # 1-voxel-thin geometry holder is not enough: keep the real reference header
    oriented_grid: sitk.Image  # reference reoriented to LPS (voxels unused)
    model_grid: sitk.Image  # oriented grid resampled to the bundle spacing (voxels unused)
    crop_start: tuple[int, int, int]  # (z, y, x) in model grid
    crop_shape: tuple[int, int, int]  # (z, y, x) cropped extent before padding
    pad_before: tuple[int, int, int]
    resampled: bool

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.mask.shape)

    def to_reference(self, array: np.ndarray, interpolation: str = "linear", background: float = 0.0) -> sitk.Image:
        """Map a model-space ``(z, y, x)`` array back onto the reference grid exactly."""
        import SimpleITK as sitk

        if tuple(array.shape) != self.shape:
            raise ValueError(f"array shape must be the model-space shape {self.shape}, not {array.shape}")
        core = array[tuple(slice(p, p + s) for p, s in zip(self.pad_before, self.crop_shape))]
        model_shape = tuple(reversed(self.model_grid.GetSize()))
        full = np.full(model_shape, background, dtype=np.float32)
        full[tuple(slice(c, c + s) for c, s in zip(self.crop_start, self.crop_shape))] = core
        if self.resampled:
            image = self._resample_to_oriented(full, interpolation, background)
        else:
            image = array_to_image(full, self.model_grid)
        original = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(self.reference.GetDirection())
        if original != CANONICAL_ORIENTATION:
            image = sitk.DICOMOrient(image, original)
        image.CopyInformation(self.reference)  # removes float rounding of the origin by the reorientation
        return image

    def _resample_to_oriented(self, full: np.ndarray, interpolation: str, background: float) -> sitk.Image:
        """Resample a full model-grid array ``(z, y, x)`` onto the oriented reference grid.

        Both grids share their direction, so linear interpolation is separable: it is done axis by axis in
        numpy, only over the box the crop can reach (the rest is ``background``), with ITK's rules (a voxel
        whose centre lies outside the model grid's buffer is ``background``; neighbours are clamped to it).
        Same values as ``sitk.Resample`` up to float32 rounding, several times faster on large grids.
        """
        import SimpleITK as sitk

        grid, model = self.oriented_grid, self.model_grid
        if interpolation == "nearest" or not np.allclose(grid.GetDirection(), model.GetDirection(), atol=1e-9):
            interpolator = sitk.sitkNearestNeighbor if interpolation == "nearest" else sitk.sitkLinear
            return sitk.Resample(array_to_image(full, model), grid, sitk.Transform(), interpolator, background,
                                 sitk.sitkFloat32)
        direction = np.asarray(grid.GetDirection(), dtype=float).reshape(3, 3)
        offset = direction.T @ (np.asarray(grid.GetOrigin()) - np.asarray(model.GetOrigin()))
        first = (offset / np.asarray(model.GetSpacing()))[::-1]  # model continuous index of output index 0, (z, y, x)
        step = (np.asarray(grid.GetSpacing()) / np.asarray(model.GetSpacing()))[::-1]
        out_shape = tuple(reversed(grid.GetSize()))
        out = np.full(out_shape, background, dtype=np.float32)
        values, box = full, []
        for axis in range(3):
            n_in = full.shape[axis]
            position = first[axis] + step[axis] * np.arange(out_shape[axis])
            reach = np.nonzero((position >= self.crop_start[axis] - 1)
                               & (position <= self.crop_start[axis] + self.crop_shape[axis]))[0]
            if reach.size == 0:
                return array_to_image(out, grid)
            box.append(slice(int(reach[0]), int(reach[-1]) + 1))
            position = position[box[-1]]
            base = np.floor(position)
            view = [1, 1, 1]
            view[axis] = position.size
            weight = (position - base).astype(np.float32).reshape(view)
            low = np.clip(base, 0, n_in - 1).astype(np.intp)
            high = np.clip(base + 1, 0, n_in - 1).astype(np.intp)
            values = np.take(values, low, axis=axis) * (1 - weight) + np.take(values, high, axis=axis) * weight
            outside = (position < -0.5) | (position > n_in - 0.5)
            if outside.any():
                index = [slice(None)] * 3
                index[axis] = outside
                values[tuple(index)] = background
        out[tuple(box)] = values
        return array_to_image(out, grid)

    def record(self) -> dict:
        """JSON-able summary of the forward transform (for provenance)."""
        return {
            "canonical_orientation": CANONICAL_ORIENTATION,
            "model_spacing": [float(s) for s in self.model_grid.GetSpacing()],
            "resampled": self.resampled,
            "crop_start_zyx": list(self.crop_start),
            "crop_shape_zyx": list(self.crop_shape),
            "pad_before_zyx": list(self.pad_before),
            "model_shape_zyx": list(self.shape),
            "intensity_ranges": {k: list(v) for k, v in self.intensity_ranges.items()},
        }


def _reorient(image: sitk.Image) -> sitk.Image:
    import SimpleITK as sitk

    if sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection()) == CANONICAL_ORIENTATION:
        return image  # already LPS: skip the copy (images are never modified in place here)
    return sitk.DICOMOrient(image, CANONICAL_ORIENTATION)


def _model_grid(oriented: sitk.Image, spacing: tuple[float, float, float]) -> tuple[sitk.Image, bool]:
    import SimpleITK as sitk

    if np.allclose(oriented.GetSpacing(), spacing, rtol=1e-3, atol=1e-4):
        return oriented, False
    extent = np.asarray(oriented.GetSize()) * np.asarray(oriented.GetSpacing())
    size = [max(2, int(np.ceil(e / s - 1e-6))) for e, s in zip(extent, spacing)]
    # keep the physical centre of the field of view; origin is the centre of the first voxel
    old_first_edge = np.asarray(oriented.GetOrigin()) - 0.5 * np.asarray(oriented.GetSpacing())
    direction = np.asarray(oriented.GetDirection()).reshape(3, 3)
    origin = old_first_edge + direction @ (0.5 * np.asarray(spacing))
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing(spacing)
    grid.SetDirection(oriented.GetDirection())
    grid.SetOrigin(tuple(float(v) for v in origin))
    return grid, True


STANDARDISED_BACKGROUND_SHARE = 0.2
"""Share of voxels at the (negative) minimum above which a volume counts as standardised with a constant background."""


NEGATIVE_TISSUE_SHARE = 0.2
"""Share of the non-background voxels below a zero background above which a volume counts as standardised
(z-scored brains: 40-60 %; interpolation ringing of magnitude images in the development data: at most 1 %)."""


def shift_constant_background(image: sitk.Image) -> sitk.Image:
    """Volumes that were z-scored inside the brain (BraTS-style preprocessing) carry a constant background and
    negative tissue values; map them to a magnitude-like image whose background is 0 and whose tissue starts
    at 0, which the foreground mask and the percentile normalisation expect. Other images are returned unchanged.

    Two forms are recognised, each with at least :data:`STANDARDISED_BACKGROUND_SHARE` of the voxels in the
    background: the background is the (negative) minimum (the whole image is shifted up by it), or the
    background is exactly 0 while at least :data:`NEGATIVE_TISSUE_SHARE` of the other voxels are negative
    (tissue is shifted up by its minimum, the background stays 0; before, the foreground step dropped the
    negative ~30 % of the brain).
    """
    import SimpleITK as sitk

    from MRSynthLib.files.imageio import array_to_image, voxel_view

    array = voxel_view(image)
    minimum = float(array.min())
    if minimum >= 0:
        return image
    if np.count_nonzero(array == minimum) >= STANDARDISED_BACKGROUND_SHARE * array.size:
        return sitk.ShiftScale(image, -minimum, 1.0)
    background = array == 0
    zeros = int(np.count_nonzero(background))
    if zeros < STANDARDISED_BACKGROUND_SHARE * array.size:
        return image
    if np.count_nonzero(array < 0) < NEGATIVE_TISSUE_SHARE * (array.size - zeros):
        return image
    shifted = np.where(background, 0.0, np.asarray(array, dtype=np.float32) - minimum).astype(np.float32)
    return array_to_image(shifted, image)


def foreground_mask(arrays: list[np.ndarray], fraction: float) -> np.ndarray:
    """Voxels brighter than ``fraction`` of the robust maximum in any input: largest connected
    component, holes filled.

    Args:
        arrays: raw ``(z, y, x)`` arrays on one grid.
    Returns:
        bool array, same shape.
    """
    import SimpleITK as sitk

    from MRSynthLib.files.imageio import image_from_voxels, voxel_copy

    mask = np.zeros(arrays[0].shape, dtype=bool)
    for array in arrays:
        positive = array[array > 0]
        if positive.size == 0:
            continue
        mask |= array > fraction * np.percentile(positive, 99.0)
    if not mask.any():
        return np.ones_like(mask)
    image = image_from_voxels(mask.astype(np.uint8))
    image = sitk.BinaryMorphologicalClosing(image, [1, 1, 1])
    largest = sitk.RelabelComponent(sitk.ConnectedComponent(image), sortByObjectSize=True) == 1  # drop noise specks
    image = sitk.BinaryFillhole(sitk.Cast(largest, sitk.sitkUInt8))
    return voxel_copy(image).astype(bool)


def to_model_space(images: dict[str, sitk.Image], spec: PreprocessSpec) -> ModelSpace:
    """Bring co-gridded float32 images (contrast -> image) into model space.

    All images must already share the reference grid (see :mod:`MRSynthLib.preprocessing.registration`);
    the first one is the reference.
    """
    import SimpleITK as sitk

    if not images:
        raise ValueError("images must hold at least one contrast")
    reference = next(iter(images.values()))
    oriented = {name: _reorient(image) for name, image in images.items()}
    oriented_grid = next(iter(oriented.values()))
    model_grid, resampled = _model_grid(oriented_grid, spec.spacing)
    raw: dict[str, np.ndarray] = {}
    for name, image in oriented.items():
        image = shift_constant_background(image)
        if resampled:
            image = sitk.Resample(image, model_grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        raw[name] = image_to_array(image)
    mask = foreground_mask(list(raw.values()), spec.foreground_fraction)

    coords = np.argwhere(mask)
    margin = np.ceil(spec.margin_mm / np.asarray(list(reversed(spec.spacing)))).astype(int)
    start = np.maximum(coords.min(axis=0) - margin, 0)
    stop = np.minimum(coords.max(axis=0) + 1 + margin, mask.shape)
    crop = tuple(slice(a, b) for a, b in zip(start, stop))
    crop_shape = tuple(int(b - a) for a, b in zip(start, stop))
    m = spec.size_multiple
    padded = tuple(max(m, int(np.ceil(s / m)) * m) for s in crop_shape)
    pad_before = tuple((p - s) // 2 for p, s in zip(padded, crop_shape))
    pad = [(b, p - s - b) for b, p, s in zip(pad_before, padded, crop_shape)]

    cropped_mask = np.pad(mask[crop], pad)
    arrays, ranges = {}, {}
    for name, array in raw.items():
        region = array[crop]
        if spec.bias_correction == "n4":
            from MRSynthLib.preprocessing.bias import n4_correct

            region = n4_correct(region, mask[crop], spec.spacing)
        scaled, ranges[name] = normalize(region, mask[crop], spec.normalization, contrast=name)
        scaled = np.pad(scaled, pad)
        scaled[~cropped_mask] = 0.0
        arrays[name] = scaled
    return ModelSpace(
        arrays=arrays,
        mask=cropped_mask,
        intensity_ranges=ranges,
        reference=reference,
        oriented_grid=oriented_grid,
        model_grid=model_grid,
        crop_start=tuple(int(s) for s in start),
        crop_shape=crop_shape,
        pad_before=tuple(int(p) for p in pad_before),
        resampled=resampled,
    )
