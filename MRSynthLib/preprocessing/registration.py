"""Rigid registration and resampling of one scan onto another scan's grid (SimpleITK).

Conventions (ITK/SimpleITK): physical points are in millimetres, LPS. A registration transform
maps points of the *fixed* (reference) image to points of the *moving* image, so resampling the
moving image onto the fixed grid with that transform overlays the two.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import SimpleITK as sitk

from MRSynthLib.errors import InputImageError

_INTERPOLATORS: dict[str, int] = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
}

_INITIALISATIONS: dict[str, int] = {
    "geometry": sitk.CenteredTransformInitializerFilter.GEOMETRY,
    "moments": sitk.CenteredTransformInitializerFilter.MOMENTS,
}

_MAX_WORKING_VOXELS = 1_500_000
"""Registration runs on isotropic copies with at most about this many voxels (speed)."""

_MIN_SAMPLES_PER_LEVEL = 20_000
_MAX_SAMPLES_PER_LEVEL = 50_000
"""Random metric samples per pyramid level are kept in this range (as far as voxels allow):
enough for a stable 32-bin joint histogram on coarse levels, bounded for speed on fine ones."""


def grid_differences(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> list[str]:
    """Describe how the grids of ``a`` and ``b`` differ (empty list when they are the same).

    Compares dimension, size, spacing, origin and direction; real-valued properties are compared
    with absolute tolerance ``tol`` (mm for spacing and origin, cosine for direction).
    """
    if a.GetDimension() != b.GetDimension():
        return [f"dimension {a.GetDimension()} vs {b.GetDimension()}"]
    differences = []
    if a.GetSize() != b.GetSize():
        differences.append(f"size {a.GetSize()} vs {b.GetSize()}")
    for name, getter in (("spacing", "GetSpacing"), ("origin", "GetOrigin"), ("direction", "GetDirection")):
        va, vb = np.asarray(getattr(a, getter)()), np.asarray(getattr(b, getter)())
        if not np.allclose(va, vb, rtol=0.0, atol=tol):
            differences.append(f"{name} {_fmt(va)} vs {_fmt(vb)}")
    return differences


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    """True when ``a`` and ``b`` share size, spacing, origin and direction (within ``tol``)."""
    return not grid_differences(a, b, tol)


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def _check_3d_scalar(image: sitk.Image, name: str) -> None:
    if not isinstance(image, sitk.Image):
        raise InputImageError(f"`{name}` must be a SimpleITK image, not {type(image).__name__}.")
    if image.GetDimension() != 3:
        raise InputImageError(
            f"`{name}` must be a 3D image, not {image.GetDimension()}D; pass one volume per contrast."
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputImageError(
            f"`{name}` must have one value per voxel, not {image.GetNumberOfComponentsPerPixel()} "
            "components; split multi-channel images into one file per contrast."
        )


def _working_copy(image: sitk.Image, max_voxels: int) -> sitk.Image:
    """Float32 copy on an isotropic grid (same origin and direction) of at most ~``max_voxels``.

    The spacing is the finest input spacing, coarsened until the voxel budget is met; the image is
    Gaussian-smoothed before being downsampled so that thin-slice or large scans do not alias.
    """
    image = sitk.Cast(image, sitk.sitkFloat32)
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    extent = spacing * np.asarray(image.GetSize(), dtype=float)
    target = max(float(spacing.min()), float(np.prod(extent) / max_voxels) ** (1.0 / 3.0))
    if np.allclose(spacing, target, rtol=1e-3):
        return image
    blur = [0.5 * math.sqrt(max(target**2 - s**2, 0.0)) for s in spacing]
    if max(blur) > 0:
        image = sitk.SmoothingRecursiveGaussian(image, [max(b, 1e-3) for b in blur])
    size = [max(1, int(math.ceil(e / target))) for e in extent]
    # Keep the physical centre of the first voxel's corner: origin moves by half a voxel change.
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    shift = direction @ ((target - spacing) / 2.0)
    origin = np.asarray(image.GetOrigin(), dtype=float) + shift
    return sitk.Resample(
        image, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), [target] * 3,
        image.GetDirection(), 0.0, sitk.sitkFloat32,
    )


def register_rigid(
    fixed: sitk.Image,
    moving: sitk.Image,
    *,
    max_iterations: int = 200,
    sampling: float = 0.05,
    seed: int = 0,
    initialisation: str = "geometry",
    shrink_factors: tuple[int, ...] = (4, 2, 1),
    smoothing_sigmas_mm: tuple[float, ...] = (2.0, 1.0, 0.0),
    max_working_voxels: int = _MAX_WORKING_VOXELS,
) -> sitk.Euler3DTransform:
    """Rigidly register ``moving`` to ``fixed`` with Mattes mutual information.

    Both images are converted to float32 and, when large or anisotropic, resampled to isotropic
    working copies (at most ``max_working_voxels``); the grids may differ arbitrarily. The
    transform is initialised by aligning image centres (``"geometry"``) or intensity centres of
    mass (``"moments"``), then optimised by regular-step gradient descent over a
    ``shrink_factors`` / ``smoothing_sigmas_mm`` pyramid with physical-shift parameter scales,
    using a random ``sampling`` fraction of the fixed voxels (raised to at least 20,000 and capped
    at 50,000 samples per level: coarse levels need enough samples to capture large initial
    misalignments, fine levels are bounded for speed). With a
    fixed ``seed`` results are bit-reproducible: the registration runs single-threaded (the
    process-wide SimpleITK default thread count is set to 1 meanwhile and then restored, so do
    not run other SimpleITK filters concurrently from other Python threads). A 240x240x155 1 mm
    pair takes a few seconds.

    Returns:
        Euler3DTransform mapping fixed physical points to moving physical points (rotation about
        its centre, angles in radians, translation in mm): pass it to :func:`resample_onto`.

    Raises:
        InputImageError: if an image is not 3D scalar or the images do not overlap.
    """
    _check_3d_scalar(fixed, "fixed")
    _check_3d_scalar(moving, "moving")
    if initialisation not in _INITIALISATIONS:
        raise InputImageError(
            f"`initialisation` must be one of {', '.join(_INITIALISATIONS)}, not {initialisation!r}."
        )
    if len(shrink_factors) != len(smoothing_sigmas_mm):
        raise InputImageError(
            "`shrink_factors` and `smoothing_sigmas_mm` must have the same length, not "
            f"{len(shrink_factors)} and {len(smoothing_sigmas_mm)}."
        )
    if not (isinstance(seed, int) and 0 <= seed < 2**31 - 1):
        raise InputImageError(f"`seed` must be an integer in [0, 2**31 - 1), not {seed!r}.")
    if not 0.0 < sampling <= 1.0:
        raise InputImageError(f"`sampling` must be a fraction in (0, 1], not {sampling!r}.")

    fixed_work = _working_copy(fixed, max_working_voxels)
    moving_work = _working_copy(moving, max_working_voxels)

    transform = sitk.Euler3DTransform(
        sitk.CenteredTransformInitializer(
            fixed_work, moving_work, sitk.Euler3DTransform(), _INITIALISATIONS[initialisation]
        )
    )

    # ITK's multi-threaded metric sums are not bit-reproducible; one thread is also no slower here
    # (the per-iteration work is small), so run the registration single-threaded.
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        method = _registration_method(fixed_work, max_iterations, sampling, seed,
                                      shrink_factors, smoothing_sigmas_mm)
        method.SetInitialTransform(transform, inPlace=True)
        method.Execute(fixed_work, moving_work)
    except RuntimeError as error:
        if "outside" in str(error).lower() or "samples" in str(error).lower():
            raise InputImageError(
                "`moving` must overlap `fixed` in physical space, not lie outside it; check that "
                "both scans are of the same subject and their origins/orientations are sane."
            ) from None
        raise
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    return transform


def _registration_method(
    fixed_work: sitk.Image,
    max_iterations: int,
    sampling: float,
    seed: int,
    shrink_factors: tuple[int, ...],
    smoothing_sigmas_mm: tuple[float, ...],
) -> sitk.ImageRegistrationMethod:
    """Mattes MI + regular-step gradient descent over a pyramid, with bounded samples per level."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    voxels = float(np.prod(fixed_work.GetSize()))
    per_level = []
    for factor in shrink_factors:
        level_voxels = voxels / factor**3
        samples = min(max(sampling * level_voxels, _MIN_SAMPLES_PER_LEVEL), _MAX_SAMPLES_PER_LEVEL)
        per_level.append(min(1.0, samples / level_voxels))
    # SimpleITK treats seed 0 as "use the wall clock": shift so every seed is deterministic.
    method.SetMetricSamplingPercentagePerLevel(per_level, seed + 1)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0,  # mm (parameter scales are set from physical shifts)
        minStep=1e-3,
        numberOfIterations=max_iterations,
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(smoothing_sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def resample_onto(
    moving: sitk.Image,
    reference: sitk.Image,
    transform: sitk.Transform | None = None,
    interpolator: str = "linear",
    default_value: float = 0.0,
) -> sitk.Image:
    """Resample ``moving`` onto exactly the grid (size, spacing, origin, direction) of ``reference``.

    ``transform`` maps reference physical points to moving physical points (as returned by
    :func:`register_rigid`); ``None`` means identity (the scans are already aligned in physical
    space). Voxels that map outside ``moving`` get ``default_value``.

    Returns:
        float32 image for ``"linear"`` and ``"bspline"``; ``moving``'s pixel type for
        ``"nearest"`` (use it for label maps and masks).
    """
    if interpolator not in _INTERPOLATORS:
        raise InputImageError(
            f"`interpolator` must be one of {', '.join(_INTERPOLATORS)}, not {interpolator!r}; "
            "use nearest for label maps."
        )
    for name, image in (("moving", moving), ("reference", reference)):
        if not isinstance(image, sitk.Image):
            raise InputImageError(f"`{name}` must be a SimpleITK image, not {type(image).__name__}.")
    if moving.GetDimension() != reference.GetDimension():
        raise InputImageError(
            f"`moving` must have the reference's dimension {reference.GetDimension()}D, "
            f"not {moving.GetDimension()}D."
        )
    if moving.GetNumberOfComponentsPerPixel() != 1:
        raise InputImageError(
            "`moving` must have one value per voxel, not "
            f"{moving.GetNumberOfComponentsPerPixel()} components."
        )
    if transform is None:
        transform = sitk.Transform(reference.GetDimension(), sitk.sitkIdentity)
    if interpolator == "nearest":
        pixel_type = moving.GetPixelID()
    else:
        pixel_type = sitk.sitkFloat32
        moving = sitk.Cast(moving, sitk.sitkFloat32)
    return sitk.Resample(
        moving, reference, transform, _INTERPOLATORS[interpolator], float(default_value), pixel_type
    )


def transform_to_dict(transform: sitk.Transform) -> dict[str, Any]:
    """JSON-able record of a transform for provenance.

    Returns:
        ``{"type", "dimension", "parameters", "fixed_parameters", "convention"}``; composite
        transforms list their parts, applied last-added first, under ``"transforms"``.
    """
    if not isinstance(transform, sitk.Transform):
        raise InputImageError(
            f"`transform` must be a SimpleITK transform, not {type(transform).__name__}."
        )
    record: dict[str, Any] = {
        "type": transform.GetName(),
        "dimension": int(transform.GetDimension()),
    }
    if isinstance(transform, sitk.CompositeTransform):
        record["transforms"] = [
            transform_to_dict(transform.GetNthTransform(i).Downcast())
            for i in range(transform.GetNumberOfTransforms())
        ]
    else:
        record["parameters"] = [float(p) for p in transform.GetParameters()]
        record["fixed_parameters"] = [float(p) for p in transform.GetFixedParameters()]
    record["convention"] = (
        "ITK: maps fixed/reference physical points (mm, LPS) to moving physical points"
    )
    return record
