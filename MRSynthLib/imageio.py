"""Geometry-safe image I/O: the one module that touches files, axis order and orientation.

Conventions used everywhere in MRSynthLib:

* images are ``SimpleITK.Image`` objects, physical space is ITK's LPS;
* arrays are ``numpy`` in SimpleITK index order ``(z, y, x)``, float32 unless stated;
* outputs are written atomically and never replace an existing file unless ``overwrite``.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from MRSynthLib.atomic import atomic_path
from MRSynthLib.errors import InputImageError, OutputError

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

WRITABLE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")
READABLE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
HEADER_DESCRIPTION_LIMIT = 80  # NIfTI-1 ``descrip`` holds 80 bytes


def _sitk():
    import SimpleITK as sitk

    return sitk


def image_suffix(path: str | os.PathLike) -> str:
    """``.nii.gz`` for ``a/b.nii.gz``, else the last suffix, lower-cased."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def read_image(path: str | os.PathLike, role: str = "input") -> sitk.Image:
    """Read a NIfTI/NRRD/MetaImage file or a DICOM series folder.

    Args:
        path: file, or folder holding exactly one DICOM series (the largest series is taken
            when there are several).
        role: how the image is named in error messages (e.g. ``"input t1"``).

    Raises:
        InputImageError: one sentence naming the file and the fix.
    """
    sitk = _sitk()
    p = Path(path)
    if not p.exists():
        raise InputImageError(f"{role} file {p} does not exist: check the path.")
    if p.is_dir():
        return _read_dicom_series(p, role)
    if p.stat().st_size == 0:
        raise InputImageError(f"{role} file {p} is empty (0 bytes): re-export or re-copy it.")
    if p.name.lower().endswith(".gz"):
        # Decompress once up front: ITK reads a truncated .nii.gz without error (missing voxels silently
        # become zeros), so the archive's integrity has to be checked here, at the cost of a second read.
        try:
            with gzip.open(p, "rb") as stream:
                while stream.read(1 << 20):
                    pass
        except (OSError, EOFError) as error:
            raise InputImageError(
                f"{role} file {p} is a damaged gzip archive ({error}): re-export or re-copy it."
            ) from None
    try:
        return sitk.ReadImage(str(p))
    except RuntimeError:
        raise InputImageError(
            f"{role} file {p} could not be read as an image: use NIfTI (.nii/.nii.gz), NRRD, MetaImage (.mha) "
            f"or a DICOM series folder."
        ) from None


def _read_dicom_series(folder: Path, role: str) -> sitk.Image:
    sitk = _sitk()
    try:
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ()
    except RuntimeError:
        series_ids = ()
    if not series_ids:
        raise InputImageError(
            f"{role} path {folder} is a folder without a DICOM series: give an image file or a DICOM series folder."
        )
    files = max(
        (sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids), key=len
    )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError:
        raise InputImageError(f"DICOM series in {folder} ({role}) could not be read: check it is complete.") from None


def validate_image(image: sitk.Image, path: str | os.PathLike, role: str = "input") -> sitk.Image:
    """Check that ``image`` is usable for synthesis and return it as float32.

    Accepts 3D scalar images of any integer/float pixel type with finite values, positive sane spacing
    and an orthonormal direction. A 4D image whose last axis has length 1 is squeezed to 3D.

    Raises:
        InputImageError: naming ``role`` and ``path`` and how to fix it.
    """
    sitk = _sitk()
    where = f"{role} ({path})"
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputImageError(
            f"{where} has {image.GetNumberOfComponentsPerPixel()} components per voxel (a colour or vector image): "
            f"give a scalar (grayscale) MRI volume."
        )
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise InputImageError(
            f"{where} is {image.GetDimension()}D with size {image.GetSize()}: give a single 3D volume "
            f"(split 4D series into 3D volumes first)."
        )
    size = image.GetSize()
    if min(size) < 2:
        raise InputImageError(f"{where} has size {size}, a single slice: give a 3D volume with at least 2 voxels along each axis.")
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0) or np.any(spacing > 100) or np.any(spacing < 1e-3):
        raise InputImageError(
            f"{where} has voxel spacing {tuple(spacing)} mm: spacing must be positive and between 0.001 and 100 mm; "
            f"fix the header."
        )
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    if not np.allclose(direction @ direction.T, np.eye(3), atol=1e-3):
        raise InputImageError(f"{where} has a non-orthogonal direction matrix: resample it to an orthogonal grid first.")
    image = sitk.Cast(image, sitk.sitkFloat32)
    array = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - finite.sum())
        raise InputImageError(
            f"{where} contains {bad} NaN or infinite voxels: fix or replace them (e.g. set them to 0) and retry."
        )
    if float(array.max()) == float(array.min()):
        raise InputImageError(f"{where} is constant (every voxel = {float(array.max()):g}): it holds no image.")
    return image


def load_input(path: str | os.PathLike, role: str = "input") -> sitk.Image:
    """:func:`read_image` then :func:`validate_image`: a float32 3D volume or one clear error."""
    return validate_image(read_image(path, role), path, role)


def image_to_array(image: sitk.Image) -> np.ndarray:
    """Copy of the voxels as float32, shape ``(z, y, x)``."""
    sitk = _sitk()
    return sitk.GetArrayFromImage(image).astype(np.float32, copy=False)


def array_to_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Wrap a ``(z, y, x)`` array on the grid of ``reference`` (size, spacing, origin, direction)."""
    sitk = _sitk()
    expected = tuple(reversed(reference.GetSize()))
    if tuple(array.shape) != expected:
        raise ValueError(f"array shape must be {expected} (z, y, x) to match the reference grid, not {array.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.CopyInformation(reference)
    return image


def grid_of(image: sitk.Image) -> dict:
    """JSON-able description of an image grid."""
    return {
        "size": list(image.GetSize()),
        "spacing": [float(s) for s in image.GetSpacing()],
        "origin": [float(o) for o in image.GetOrigin()],
        "direction": [float(d) for d in image.GetDirection()],
    }


def check_output_path(path: str | os.PathLike, role: str = "output") -> Path:
    """Raise :class:`OutputError` unless ``path`` has a writable image suffix."""
    p = Path(path)
    if image_suffix(p) not in WRITABLE_SUFFIXES:
        raise OutputError(
            f"{role} {p} has an unsupported extension: use one of {', '.join(WRITABLE_SUFFIXES)}."
        )
    return p


def write_image(
    image: sitk.Image,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
    compress: bool = True,
) -> Path:
    """Write ``image`` atomically; ``description`` goes into the header (NIfTI ``descrip``, NRRD/MHA key).

    Raises:
        OutputError: when the file exists and ``overwrite`` is False, or the suffix/folder is unusable.
    """
    sitk = _sitk()
    target = check_output_path(path)
    image = sitk.Image(image)  # metadata below must not leak into the caller's image
    if description:
        text = description[:HEADER_DESCRIPTION_LIMIT - 1]
        image.SetMetaData("ITK_FileNotes", text)
        image.SetMetaData("descrip", text)
    for key, value in (metadata or {}).items():
        image.SetMetaData(key, str(value))
    with atomic_path(target, overwrite) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), useCompression=compress and image_suffix(target) != ".nii")
        except RuntimeError as error:
            raise OutputError(f"Could not write {target}: {str(error).strip().splitlines()[-1]}") from None
    return target
