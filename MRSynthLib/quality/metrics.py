"""Image-quality metrics for evaluating a synthesized volume against the acquired one (3D).

All arrays are in SimpleITK index order (z, y, x). Metrics are computed on intensities that
an :class:`EvaluationProtocol` has normalised, inside a brain mask and optional label regions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from MRSynthLib.errors import InputImageError
from MRSynthLib.preprocessing.registration import grid_differences

DEFAULT_LABEL_REGIONS: dict[str, list[int]] = {"tumour": [4, 5, 6], "enhancing": [5], "lesion": [7]}
"""Regions of the phantom label map: 4 necrosis, 5 enhancing tumour, 6 oedema, 7 MS lesion."""

NORMALISATIONS: tuple[str, ...] = ("percentile", "minmax", "zscore", "none")
MASK_SOURCES: tuple[str, ...] = ("auto", "provided", "foreground", "all")


# ---------------------------------------------------------------------------------------------
# Plain metrics


def _pair(reference: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference = np.asarray(reference, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    if reference.shape != prediction.shape:
        raise InputImageError(
            f"`prediction` must have the reference's shape {reference.shape}, not {prediction.shape}; "
            "resample it onto the reference grid first."
        )
    return reference, prediction


def _selection(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean voxel selection of ``shape`` from an optional mask (nonzero = selected)."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise InputImageError(
            f"`mask` must have the image shape {shape}, not {mask.shape}; resample it onto the "
            "reference grid with nearest-neighbour interpolation."
        )
    selected = mask != 0
    if not selected.any():
        raise InputImageError("`mask` must select at least one voxel, not be empty.")
    return selected


def _data_range(reference: np.ndarray, selected: np.ndarray, data_range: float | None) -> float:
    if data_range is None:
        values = reference[selected]
        data_range = float(values.max() - values.min())
    if not data_range > 0:
        raise InputImageError(
            f"`data_range` must be positive, not {data_range!r}; the reference is constant inside "
            "the mask, so pass data_range explicitly."
        )
    return float(data_range)


def mae(reference: np.ndarray, prediction: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error over the mask (nonzero voxels) or the whole volume."""
    reference, prediction = _pair(reference, prediction)
    selected = _selection(mask, reference.shape)
    return float(np.mean(np.abs(reference[selected] - prediction[selected])))


def psnr(
    reference: np.ndarray,
    prediction: np.ndarray,
    mask: np.ndarray | None = None,
    data_range: float | None = None,
) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``, over the mask.

    ``data_range`` defaults to max - min of the reference inside the mask. Identical inputs give
    ``inf``.
    """
    reference, prediction = _pair(reference, prediction)
    selected = _selection(mask, reference.shape)
    data_range = _data_range(reference, selected, data_range)
    mse = float(np.mean((reference[selected] - prediction[selected]) ** 2))
    if mse == 0.0:
        return math.inf
    return float(10.0 * np.log10(data_range**2 / mse))


def ssim_map(
    reference: np.ndarray,
    prediction: np.ndarray,
    data_range: float,
    *,
    sigma: float = 1.5,
    truncate: float = 3.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> np.ndarray:
    """Voxel-wise SSIM (Wang et al. 2004) with an isotropic Gaussian window in voxel units.

    Local means, variances (population, not sample) and covariance are Gaussian-weighted
    (``sigma`` 1.5, window radius ``int(truncate * sigma + 0.5)`` = 5, i.e. 11 taps per axis),
    borders are mirror-reflected; as :func:`skimage.metrics.structural_similarity` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``.

    Returns:
        float64 array of the inputs' shape, e.g. (z, y, x).
    """
    reference, prediction = _pair(reference, prediction)
    if not data_range > 0:
        raise InputImageError(f"`data_range` must be positive, not {data_range!r}.")

    def smooth(volume: np.ndarray) -> np.ndarray:
        return gaussian_filter(volume, sigma=sigma, truncate=truncate, mode="reflect")

    mu_x, mu_y = smooth(reference), smooth(prediction)
    var_x = smooth(reference * reference) - mu_x * mu_x
    var_y = smooth(prediction * prediction) - mu_y * mu_y
    cov_xy = smooth(reference * prediction) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    numerator = (2.0 * mu_x * mu_y + c1) * (2.0 * cov_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return numerator / denominator


def ssim3d(
    reference: np.ndarray,
    prediction: np.ndarray,
    mask: np.ndarray | None = None,
    data_range: float | None = None,
    *,
    sigma: float = 1.5,
    truncate: float = 3.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Mean structural similarity: the :func:`ssim_map` of the whole volume, averaged.

    Without a mask the map is averaged after cropping a border as wide as the window radius on
    every side (as skimage does, to ignore edge effects; the volume must exceed 2 radii + 1 per
    axis). With a mask it is averaged over the mask's voxels, uncropped (each voxel's window
    still sees its neighbours outside the mask). ``data_range`` defaults to max - min of the
    reference inside the mask.
    """
    reference, prediction = _pair(reference, prediction)
    selected = _selection(mask, reference.shape)
    data_range = _data_range(reference, selected, data_range)
    ssim = ssim_map(reference, prediction, data_range, sigma=sigma, truncate=truncate, k1=k1, k2=k2)
    if mask is not None:
        return float(ssim[selected].mean())
    radius = int(truncate * sigma + 0.5)
    if any(n <= 2 * radius for n in ssim.shape):
        raise InputImageError(
            f"The volume must be larger than {2 * radius + 1} voxels per axis for unmasked SSIM, "
            f"not {ssim.shape}; pass a mask to average over chosen voxels instead."
        )
    inner = tuple(slice(radius, n - radius) for n in ssim.shape)
    return float(ssim[inner].mean(dtype=np.float64))


# ---------------------------------------------------------------------------------------------
# Evaluation protocol


@dataclass(frozen=True)
class EvaluationProtocol:
    """How both volumes are normalised and where metrics are taken; stored with every result.

    Attributes:
        normalisation: ``"percentile"`` (default): each volume is mapped by its OWN
            ``percentiles`` inside the brain mask to 0..1 and clipped to [0, 1]; ``"minmax"``:
            the same with its own min and max; ``"zscore"``: own mean 0, standard deviation 1;
            ``"none"``: raw intensities.
        percentiles: lower and upper percentile for ``"percentile"``.
        data_range: PSNR/SSIM data range; ``None`` means 1.0 for ``"percentile"`` and
            ``"minmax"``, and max - min of the normalised reference inside the brain otherwise.
        mask_source: brain mask used: ``"auto"`` (the given mask, else the reference
            foreground), ``"provided"`` (a mask must be given), ``"foreground"`` (always the
            reference foreground) or ``"all"`` (every voxel).
        foreground_fraction: reference foreground = voxels above ``p0.5 + fraction * (p99.5 -
            p0.5)``, with the reference's 0.5th and 99.5th percentiles over the whole volume
            (percentiles, not min and max: resampled scans often have negative ringing).
        zero_outside_mask: set both normalised volumes to 0 outside the brain mask, so that
            background content cannot change SSIM near the brain edge.
    """

    normalisation: str = "percentile"
    percentiles: tuple[float, float] = (0.5, 99.5)
    data_range: float | None = None
    mask_source: str = "auto"
    foreground_fraction: float = 0.01
    zero_outside_mask: bool = True

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise InputImageError(
                f"`normalisation` must be one of {', '.join(NORMALISATIONS)}, "
                f"not {self.normalisation!r}."
            )
        if self.mask_source not in MASK_SOURCES:
            raise InputImageError(
                f"`mask_source` must be one of {', '.join(MASK_SOURCES)}, not {self.mask_source!r}."
            )
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0:
            raise InputImageError(
                f"`percentiles` must be two increasing values in [0, 100], not {self.percentiles!r}."
            )
        if self.data_range is not None and not self.data_range > 0:
            raise InputImageError(f"`data_range` must be positive or None, not {self.data_range!r}.")

    def describe(self) -> str:
        """One sentence stating the normalisation, mask and data range, for reports."""
        foreground = (
            f"voxels above {100 * self.foreground_fraction:g}% of the way from its 0.5th to its "
            "99.5th percentile"
        )
        mask = {
            "auto": f"the brain mask (the given one, else the reference foreground: {foreground})",
            "provided": "the given brain mask",
            "foreground": f"the reference foreground ({foreground})",
            "all": "the whole volume",
        }[self.mask_source]
        low, high = self.percentiles
        scaling = {
            "percentile": f"Reference and prediction are each scaled linearly so that their OWN "
            f"{low:g}th..{high:g}th percentiles inside {mask} map to 0..1, then clipped to [0, 1]",
            "minmax": f"Reference and prediction are each scaled linearly so that their OWN "
            f"minimum..maximum inside {mask} maps to 0..1",
            "zscore": f"Reference and prediction are each standardised to zero mean and unit "
            f"standard deviation inside {mask}",
            "none": f"Raw intensities are compared inside {mask}",
        }[self.normalisation]
        outside = "; voxels outside the mask are set to 0 in both" if self.zero_outside_mask else ""
        if self.data_range is not None:
            data_range = f"{self.data_range:g}"
        elif self.normalisation in ("percentile", "minmax"):
            data_range = "1"
        else:
            data_range = "the normalised reference's max - min inside the mask"
        return (
            f"{scaling}{outside}; PSNR, MAE and SSIM (3D Gaussian window sigma 1.5 voxels, "
            f"K1 0.01, K2 0.03, averaged over the region's voxels) use data range {data_range}."
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields plus ``description``."""
        record = asdict(self)
        record["percentiles"] = list(self.percentiles)
        record["description"] = self.describe()
        return record


def foreground_mask(reference: np.ndarray, fraction: float = 0.01) -> np.ndarray:
    """Voxels of ``reference`` above ``p0.5 + fraction * (p99.5 - p0.5)``: bool, same shape."""
    reference = np.asarray(reference, dtype=np.float64)
    low, high = (float(v) for v in np.percentile(reference, (0.5, 99.5)))
    return reference > low + fraction * (high - low)


def normalise(volume: np.ndarray, brain: np.ndarray, protocol: EvaluationProtocol) -> np.ndarray:
    """Apply ``protocol.normalisation`` with statistics of ``volume`` inside ``brain`` (bool).

    Returns:
        float64 array of ``volume``'s shape (not yet zeroed outside the mask).
    """
    volume = np.asarray(volume, dtype=np.float64)
    values = volume[brain]
    if protocol.normalisation == "none":
        return volume.copy()
    if protocol.normalisation == "zscore":
        std = float(values.std())
        return (volume - float(values.mean())) / (std if std > 0 else 1.0)
    if protocol.normalisation == "percentile":
        low, high = (float(v) for v in np.percentile(values, protocol.percentiles))
    else:
        low, high = float(values.min()), float(values.max())
    scaled = (volume - low) / (high - low if high > low else 1.0)
    return np.clip(scaled, 0.0, 1.0)


def _brain(
    reference: np.ndarray, brain_mask: np.ndarray | None, protocol: EvaluationProtocol
) -> tuple[np.ndarray, str]:
    """Brain selection and a word for where it came from."""
    source = protocol.mask_source
    if source == "provided" and brain_mask is None:
        raise InputImageError(
            "`brain_mask` must be given when the protocol's mask_source is 'provided', not None; "
            "pass a mask or use mask_source='auto'."
        )
    if source == "all":
        return np.ones(reference.shape, dtype=bool), "all"
    if brain_mask is not None and source in ("auto", "provided"):
        return _selection(brain_mask, reference.shape), "provided"
    brain = foreground_mask(reference, protocol.foreground_fraction)
    if not brain.any():
        raise InputImageError(
            "The reference must have foreground voxels to evaluate in, not be constant; "
            "pass a brain mask."
        )
    return brain, "foreground"


def brain_selection(reference: np.ndarray, brain_mask: np.ndarray | None = None,
                    protocol: EvaluationProtocol | None = None) -> np.ndarray:
    """The protocol's brain (bool, ``reference``'s shape): ``brain_mask`` (nonzero) or the reference foreground."""
    return _brain(np.asarray(reference), brain_mask, protocol or EvaluationProtocol())[0]


def normalised_error(reference: np.ndarray, prediction: np.ndarray, brain: np.ndarray,
                     protocol: EvaluationProtocol | None = None) -> np.ndarray:
    """``|normalise(reference) - normalise(prediction)|`` inside ``brain``, 0 outside (float64, the metrics' scale)."""
    protocol = protocol or EvaluationProtocol()
    error = np.abs(normalise(reference, brain, protocol) - normalise(prediction, brain, protocol))
    error[~brain] = 0.0
    return error


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equal-length 1-D samples (average ranks for ties); NaN when either is
    constant."""
    from scipy.stats import spearmanr

    a, b = np.ravel(a), np.ravel(b)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    value = spearmanr(a, b).statistic
    return float(value) if np.isfinite(value) else float("nan")


def uncertainty_error_correlation(reference: np.ndarray, prediction: np.ndarray, sigma: np.ndarray, brain: np.ndarray,
                                  protocol: EvaluationProtocol | None = None) -> float:
    """Does the uncertainty point at the errors? Spearman's correlation of ``sigma`` with the protocol's
    :func:`normalised_error` over the ``brain`` voxels (all arrays one shape)."""
    error = normalised_error(reference, prediction, brain, protocol)
    return rank_correlation(np.asarray(sigma)[brain], error[brain])


def _finite(value: float) -> float | None:
    """JSON has no infinity: report an infinite PSNR (identical volumes) as None."""
    return float(value) if math.isfinite(value) else None


def evaluate_volumes(
    reference: np.ndarray,
    prediction: np.ndarray,
    brain_mask: np.ndarray | None = None,
    regions: dict[str, np.ndarray] | None = None,
    protocol: EvaluationProtocol = EvaluationProtocol(),
    hounsfield: bool = False,
) -> dict[str, Any]:
    """PSNR, SSIM and MAE of ``prediction`` against ``reference`` in the brain and in regions.

    Args:
        reference, prediction: volumes of one shape, e.g. (z, y, x), any real dtype.
        brain_mask: nonzero = brain; ``None`` uses the reference foreground (see
            :class:`EvaluationProtocol`, ``mask_source``).
        regions: name -> mask of the same shape (nonzero = in region), e.g. tumour; regions with
            no voxels are omitted from the result.
        protocol: normalisation and mask rules, recorded in the result.
        hounsfield: both volumes are CT in Hounsfield units: every region also gets ``mae_hu``, the mean
            absolute difference of the raw (not normalised) values, in HU.

    Returns:
        JSON-able ``{"protocol": {..., "description"}, "brain": {"psnr", "ssim", "mae",
        "voxels", "mask"}, "regions": {name: {"psnr", "ssim", "mae", "voxels"}}}``; ``psnr`` is
        ``None`` when the normalised volumes are identical there (infinite PSNR).
    """
    reference, prediction = _pair(reference, prediction)
    raw_error = np.abs(reference.astype(np.float64) - prediction.astype(np.float64)) if hounsfield else None
    if not (np.isfinite(reference).all() and np.isfinite(prediction).all()):
        raise InputImageError("Both volumes must be finite everywhere, not contain NaN or infinity.")
    brain, mask_used = _brain(reference, brain_mask, protocol)
    ref = normalise(reference, brain, protocol)
    pred = normalise(prediction, brain, protocol)
    if protocol.zero_outside_mask:
        ref[~brain] = 0.0
        pred[~brain] = 0.0
    if protocol.data_range is not None:
        data_range = protocol.data_range
    elif protocol.normalisation in ("percentile", "minmax"):
        data_range = 1.0
    else:
        data_range = _data_range(ref, brain, None)
    ssim = ssim_map(ref, pred, data_range)

    def scores(selected: np.ndarray) -> dict[str, Any]:
        diff = ref[selected] - pred[selected]
        mse = float(np.mean(diff * diff))
        out = {
            "psnr": _finite(10.0 * math.log10(data_range**2 / mse)) if mse > 0 else None,
            "ssim": float(ssim[selected].mean()),
            "mae": float(np.mean(np.abs(diff))),
            "voxels": int(selected.sum()),
        }
        if raw_error is not None:
            out["mae_hu"] = float(raw_error[selected].mean())
        return out

    result_regions: dict[str, Any] = {}
    for name, region in (regions or {}).items():
        region = np.asarray(region)
        if region.shape != reference.shape:
            raise InputImageError(
                f"Region `{name}` must have the image shape {reference.shape}, not {region.shape}."
            )
        selected = region != 0
        if selected.any():
            result_regions[name] = scores(selected)
    protocol_record = protocol.to_dict()
    protocol_record["data_range_used"] = float(data_range)
    return {
        "protocol": protocol_record,
        "brain": {**scores(brain), "mask": mask_used},
        "regions": result_regions,
    }


def sharpness_ratio(
    reference: np.ndarray,
    prediction: np.ndarray,
    brain_mask: np.ndarray | None = None,
    protocol: EvaluationProtocol = EvaluationProtocol(),
) -> float:
    """Mean gradient magnitude of ``prediction`` over that of ``reference`` inside the brain, both first
    normalised by ``protocol`` (own statistics inside the brain) as for PSNR/SSIM.

    1 = as sharp as the reference; a blurred prediction scores below 1 (a 2 mm down-and-up resampling of
    a 1 mm brain scan keeps about 0.8). Central differences along every axis, in voxel units, averaged
    over the brain eroded by one voxel (the brain's own edge is not counted).
    """
    from scipy.ndimage import binary_erosion

    reference, prediction = _pair(reference, prediction)
    brain, _ = _brain(reference, brain_mask, protocol)
    inner = binary_erosion(brain)
    inner = inner if inner.any() else brain

    def mean_gradient(volume: np.ndarray) -> float:
        normalised = normalise(volume, brain, protocol)
        squared = sum(g * g for g in np.gradient(normalised))
        return float(np.sqrt(squared)[inner].mean())

    denominator = mean_gradient(reference)
    return mean_gradient(prediction) / denominator if denominator > 0 else float("nan")


def _check_image(image: sitk.Image, name: str) -> None:
    if not isinstance(image, sitk.Image):
        raise InputImageError(f"`{name}` must be a SimpleITK image, not {type(image).__name__}.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputImageError(
            f"`{name}` must have one value per voxel, not {image.GetNumberOfComponentsPerPixel()} "
            "components."
        )


def _check_grid(image: sitk.Image, reference: sitk.Image, name: str) -> None:
    differences = grid_differences(image, reference, tol=1e-4)
    if differences:
        raise InputImageError(
            f"`{name}` must be on the reference grid, not differ in {'; '.join(differences)}; "
            "resample it with MRSynthLib.preprocessing.registration.resample_onto (nearest for masks and labels)."
        )


def evaluate_images(
    reference: sitk.Image,
    prediction: sitk.Image,
    brain_mask: sitk.Image | None = None,
    label_map: sitk.Image | None = None,
    label_regions: dict[str, list[int]] | None = None,
    protocol: EvaluationProtocol = EvaluationProtocol(),
    hounsfield: bool = False,
) -> dict[str, Any]:
    """:func:`evaluate_volumes` for images on one grid, with regions taken from a label map
    (``hounsfield``: CT in HU, also ``mae_hu`` per region).

    Args:
        reference, prediction: scalar images on the same grid (size, spacing, origin and
            direction equal within 1e-4).
        brain_mask: optional mask image on that grid (nonzero = brain).
        label_map: optional integer label image on that grid.
        label_regions: region name -> labels; defaults to :data:`DEFAULT_LABEL_REGIONS`
            (tumour 4/5/6, enhancing 5, lesion 7). Regions absent from the label map are omitted.

    Raises:
        InputImageError: if a grid differs (the message lists how) or an image is multi-channel.
    """
    _check_image(reference, "reference")
    for name, image in (("prediction", prediction), ("brain_mask", brain_mask), ("label_map", label_map)):
        if image is not None:
            _check_image(image, name)
            _check_grid(image, reference, name)
    from MRSynthLib.files.imageio import voxel_view

    ref = voxel_view(reference)
    pred = voxel_view(prediction)
    mask = voxel_view(brain_mask) if brain_mask is not None else None
    regions: dict[str, np.ndarray] = {}
    if label_map is not None:
        labels = voxel_view(label_map)
        for name, values in (label_regions or DEFAULT_LABEL_REGIONS).items():
            regions[name] = np.isin(labels, list(values))
    return evaluate_volumes(ref, pred, mask, regions, protocol, hounsfield)
