"""Geometry-safe image I/O: the one module that touches files, axis order and orientation.

Conventions used everywhere in MRSynthLib:

* images are ``SimpleITK.Image`` objects, physical space is ITK's LPS;
* arrays are ``numpy`` in SimpleITK index order ``(z, y, x)``, float32 unless stated;
* outputs are written atomically and never replace an existing file unless ``overwrite``.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import re
import shutil
import struct
import sys
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from MRSynthLib.files.atomic import atomic_path
from MRSynthLib.files.detached_headers import check_detached_data
from MRSynthLib.errors import InputImageError, OutputError
from MRSynthLib.files.nifti_transforms import check_nifti_transforms

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

WRITABLE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")
READABLE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
HEADER_DESCRIPTION_LIMIT = 80  # NIfTI-1 ``descrip`` holds 80 bytes
MAX_EXTENT_MM = 2000.0
MAX_VOLUME_LITRES = 500.0
MIN_EXTENT_MM = 5.0
"""Smallest field of view accepted along any axis: less cannot hold any anatomy the models know (a header
with spacings of a fraction of a millimetre gave a constant image before)."""
"""A field of view larger than a whole body means a wrong spacing in the header (and would exhaust memory)."""
_NIFTI_HEADER_BYTES = 540  # NIfTI-2 header; NIfTI-1 uses the first 348


def _sitk():
    import SimpleITK as sitk

    return sitk


@contextlib.contextmanager
def _quiet_itk() -> Iterator[None]:
    """Silence ITK's warnings (printed straight to stderr) while reading: failures become one sentence."""
    sitk = _sitk()
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


@contextlib.contextmanager
def _native_stderr_held() -> Iterator[None]:
    """Hold back what C libraries print straight to file descriptor 2 (NIfTI's "** ERROR: NWAD: wrote only ..."
    on a full disk) while a file is written; MRSynth reports the failure in its own sentence instead."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def image_suffix(path: str | os.PathLike) -> str:
    """``.nii.gz`` for ``a/b.nii.gz``, else the last suffix, lower-cased."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def read_image(path: str | os.PathLike, role: str = "input", series: str | None = None) -> sitk.Image:
    """Read a NIfTI/NRRD/MetaImage file or a DICOM series folder.

    Args:
        path: file, or folder of DICOM files: one series, or several and ``series`` says which (its
            SeriesInstanceUID; recorded in the image's metadata under :data:`DICOM_SERIES_KEY`).
        role: how the image is named in error messages (e.g. ``"input t1"``).

    Raises:
        InputImageError: one sentence naming the file and the fix.
    """
    sitk = _sitk()
    p = Path(path)
    if not p.exists():
        raise InputImageError(f"{role} file {p} does not exist: check the path.")
    if p.is_dir():
        return _read_dicom_series(p, role, series)
    if series is not None:
        raise InputImageError(f"{role} {p} is a file, not a DICOM folder: drop its series choice.")
    if p.stat().st_size == 0:
        raise InputImageError(f"{role} file {p} is empty (0 bytes): re-export or re-copy it.")
    check_detached_data(p, role)
    check_nifti_transforms(p, role)
    _check_declared_size(p, role)
    _check_file_bytes(p, role)
    try:
        with _quiet_itk():
            return sitk.ReadImage(str(p))
    except RuntimeError as error:
        if re.search(r"Zero-valued spacing|spacing \(0\) invalid", str(error)):
            raise InputImageError(
                f"{role} file {p} declares a voxel spacing of 0 mm in its header: fix the spacing in the header."
            ) from None
        raise InputImageError(
            f"{role} file {p} could not be read as an image (damaged, truncated or another format): use NIfTI "
            f"(.nii/.nii.gz), NRRD, MetaImage (.mha) or a DICOM series folder."
        ) from None


@dataclass(frozen=True)
class _NiftiLayout:
    """Where a single-file NIfTI-1/-2 image keeps its voxels (byte offsets) and, for float voxels, their dtype."""

    data_start: int
    data_end: int
    float_dtype: np.dtype | None


_NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 / float64


def _nifti_layout(header: bytes) -> _NiftiLayout | None:
    """Parse the voxel layout from a NIfTI-1/-2 header (None when ``header`` is not a single-file NIfTI)."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack_from(order + "i", header)[0] == 348 and header[344:347] == b"n+1":
            datatype, bitpix = struct.unpack_from(order + "2h", header, 70)
            dims = struct.unpack_from(order + "8h", header, 40)
            offset = struct.unpack_from(order + "f", header, 108)[0]
            break
        if len(header) >= 540 and struct.unpack_from(order + "i", header)[0] == 540 and header[4:7] == b"n+2":
            datatype, bitpix = struct.unpack_from(order + "2h", header, 12)
            dims = struct.unpack_from(order + "8q", header, 16)
            offset = struct.unpack_from(order + "q", header, 168)[0]
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0 or min(dims[1 : ndim + 1]) < 1 or not math.isfinite(offset) or offset < 0:
        return None
    start = int(offset)
    dtype = np.dtype(order + _NIFTI_FLOAT_TYPES[datatype]) if datatype in _NIFTI_FLOAT_TYPES else None
    return _NiftiLayout(start, start + math.prod(dims[1 : ndim + 1]) * bitpix // 8, dtype)


MAX_INPUT_VOXELS = 1 << 29
"""Largest voxel count accepted (about 810^3; a 0.5 mm whole head is ~512x512x400 = 1e8); a header declaring
more is refused before its voxels are read (a 1 MB .nii.gz may declare 1000^3 voxels and inflate to 2 GB)."""
WORKING_COPIES = 8
"""Float32 copies of the largest input that one synthesis may hold at once (inputs, resampled grids, outputs)."""


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _check_declared_size(p: Path, role: str) -> None:
    """Refuse a file whose header declares more voxels than :data:`MAX_INPUT_VOXELS` or than this machine's
    memory can process, reading only the header."""
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        with _quiet_itk():
            reader.ReadImageInformation()
    except RuntimeError:
        return  # unreadable header: the full read reports it in its own words
    size = reader.GetSize()
    voxels = math.prod(size) * max(1, reader.GetNumberOfComponents())
    needed = voxels * 4 * WORKING_COPIES
    memory = _physical_memory()
    if voxels > MAX_INPUT_VOXELS or (memory is not None and needed > memory):
        shape = "x".join(str(n) for n in size)
        raise InputImageError(
            f"{role} file {p} declares {shape} voxels ({voxels * 4 / 2**30:.1f} GiB as float32), more than MRSynth "
            f"processes ({MAX_INPUT_VOXELS:.2e} voxels, and about {WORKING_COPIES}x that in memory): crop or "
            f"downsample it first, or check its header.")


def _check_file_bytes(p: Path, role: str) -> None:
    """Checks ITK does not make, in one pass over the file's (decompressed) bytes.

    ITK reads a truncated .nii/.nii.gz without error (the missing voxels silently become zeros), and its
    NIfTI reader replaces NaN and infinite voxels by 0, so for NIfTI files the length and the float voxels
    are checked here; for .gz files of any format the whole archive is decompressed to check its integrity.
    """
    nifti = image_suffix(p) in (".nii", ".nii.gz")
    compressed = p.name.lower().endswith(".gz")
    if not nifti and not compressed:
        return
    try:
        with (gzip.open(p, "rb") if compressed else open(p, "rb")) as stream:
            head = stream.read(_NIFTI_HEADER_BYTES)
            layout = _nifti_layout(head) if nifti else None
            scan = layout is not None and layout.float_dtype is not None
            length, nonfinite, carry, block = 0, 0, b"", head
            if not compressed and not scan:  # nothing to decompress or scan: the size is enough
                length, block = p.stat().st_size, b""
            while block:
                if scan:
                    low, high = max(layout.data_start - length, 0), min(layout.data_end - length, len(block))
                    if low < high:
                        piece = carry + block[low:high]
                        usable = len(piece) - len(piece) % layout.float_dtype.itemsize
                        values = np.frombuffer(piece[:usable], layout.float_dtype)
                        nonfinite += values.size - int(np.count_nonzero(np.isfinite(values)))
                        carry = piece[usable:]
                length += len(block)
                block = stream.read(1 << 20)
    except (OSError, EOFError, zlib.error) as error:
        if not compressed or isinstance(error, PermissionError):
            raise InputImageError(f"{role} file {p} could not be read ({error}): check that it is readable.") from None
        raise InputImageError(
            f"{role} file {p} is a damaged gzip archive ({error}): re-export or re-copy it."
        ) from None
    if layout is not None and length < layout.data_end:
        raise InputImageError(
            f"{role} file {p} is truncated ({length} of the {layout.data_end} bytes its header declares): "
            f"re-export or re-copy it."
        )
    if nonfinite:
        raise InputImageError(
            f"{role} ({p}) contains {nonfinite} NaN or infinite voxels: fix or replace them (e.g. set them to 0) "
            f"and retry."
        )


DICOM_SERIES_KEY = "MRSynth.dicom_series"
"""Metadata key of an image read from a DICOM folder: the SeriesInstanceUID that was read."""


def _read_dicom_series(folder: Path, role: str, series: str | None = None) -> sitk.Image:
    sitk = _sitk()
    try:
        with _quiet_itk():
            series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ()
    except RuntimeError:
        series_ids = ()
    if not series_ids:
        raise InputImageError(
            f"{role} path {folder} is a folder without a DICOM series: give an image file or a DICOM series folder."
        )
    with _quiet_itk():
        files = {sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids}
    flag = f"--series {role.split()[-1]}=UID" if role.startswith("input ") else "a series UID"
    listing = "; ".join(f"{sid}: {len(names)} files" for sid, names in files.items())
    if series is not None and series not in files:
        raise InputImageError(f"{role} folder {folder} has no DICOM series {series} (it holds {listing}): pass one of "
                              f"those with {flag}.")
    if series is None and len(files) > 1:
        raise InputImageError(f"{role} folder {folder} holds {len(files)} DICOM series ({listing}): choose one with "
                              f"{flag}, or give each series its own folder.")
    chosen = series if series is not None else series_ids[0]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files[chosen])
    try:
        with _quiet_itk():
            image = reader.Execute()
    except RuntimeError:
        raise InputImageError(f"DICOM series in {folder} ({role}) could not be read: check it is complete.") from None
    image.SetMetaData(DICOM_SERIES_KEY, chosen)
    return image


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
            f"{where} has voxel spacing ({', '.join(f'{s:g}' for s in spacing)}) mm: spacing must be between "
            f"0.001 and 100 mm; fix the header."
        )
    extent = spacing * np.asarray(size, dtype=float)
    if np.any(extent > MAX_EXTENT_MM) or np.prod(extent) / 1e6 > MAX_VOLUME_LITRES:
        raise InputImageError(
            f"{where} covers {' x '.join(f'{e:g}' for e in extent)} mm, more than a whole body (at most "
            f"{MAX_EXTENT_MM:g} mm along an axis and {MAX_VOLUME_LITRES:g} litres): the voxel spacing in its header "
            f"is probably wrong; fix the header."
        )
    if np.any(extent < MIN_EXTENT_MM):
        raise InputImageError(
            f"{where} covers only {' x '.join(f'{e:g}' for e in extent)} mm (at least {MIN_EXTENT_MM:g} mm along every "
            f"axis is needed): the voxel spacing in its header is probably wrong; fix the header."
        )
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    if not np.allclose(direction @ direction.T, np.eye(3), atol=1e-3):
        raise InputImageError(f"{where} has a non-orthogonal direction matrix: resample it to an orthogonal grid first.")
    try:
        image = sitk.Cast(image, sitk.sitkFloat32)
    except RuntimeError:  # complex voxels (raw k-space reconstructions), label maps
        raise InputImageError(
            f"{where} has {image.GetPixelIDTypeAsString()} voxels, which are not a real-valued MRI volume: give the "
            f"magnitude image."
        ) from None
    array = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - finite.sum())
        raise InputImageError(
            f"{where} contains {bad} NaN or infinite voxels: fix or replace them (e.g. set them to 0) and retry."
        )
    if float(array.max()) == float(array.min()):
        raise InputImageError(
            f"{where} is constant (every voxel = {float(array.max()):g}): it holds no image; check that the right "
            f"file was exported."
        )
    return image


def load_input(path: str | os.PathLike, role: str = "input", series: str | None = None) -> sitk.Image:
    """:func:`read_image` then :func:`validate_image`: a float32 3D volume or one clear error."""
    image = read_image(path, role, series)
    chosen = image.GetMetaData(DICOM_SERIES_KEY) if image.HasMetaDataKey(DICOM_SERIES_KEY) else None
    image = validate_image(image, path, role)
    if chosen is not None:
        image.SetMetaData(DICOM_SERIES_KEY, chosen)
    return image


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


def voxel_view(image: sitk.Image) -> np.ndarray:
    """Read-only view of the voxels in their own pixel type, shape ``(z, y, x)``: no copy, valid while ``image``
    lives. This module owns the SimpleITK (x, y, z) ⇄ numpy (z, y, x) conversion; other modules call it."""
    return _sitk().GetArrayViewFromImage(image)


def voxel_copy(image: sitk.Image) -> np.ndarray:
    """Writable copy of the voxels in their own pixel type, shape ``(z, y, x)``."""
    return _sitk().GetArrayFromImage(image)


def image_from_voxels(array: np.ndarray, spacing: tuple[float, ...] | None = None,
                      origin: tuple[float, ...] | None = None, direction: tuple[float, ...] | None = None
                      ) -> sitk.Image:
    """A ``(z, y, x)`` array as an image in its own pixel type with ``spacing`` / ``origin`` / ``direction`` in
    SimpleITK's (x, y, z) order (defaults: 1 mm, 0, identity). On another image's grid: :func:`array_to_image`."""
    sitk = _sitk()
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    if spacing is not None:
        image.SetSpacing(tuple(float(s) for s in spacing))
    if origin is not None:
        image.SetOrigin(tuple(float(v) for v in origin))
    if direction is not None:
        image.SetDirection(tuple(float(v) for v in direction))
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
    if p.is_dir():
        raise OutputError(f"{role} {p} is a folder, not a file: give a file path such as {p / 'out.nii.gz'}.")
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
            with _native_stderr_held():
                sitk.WriteImage(image, str(tmp), useCompression=compress and image_suffix(target) != ".nii")
        except RuntimeError as error:
            raise OutputError(f"Output {target} could not be written ({str(error).strip().splitlines()[-1]}; "
                              f"{_free_kb(target.parent)} kB free in {target.parent}): free space there or choose "
                              f"another folder (nothing was written under that name).") from None
        _verify_written(tmp, target, image)
    return target


def _free_kb(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free // 1024
    except OSError:
        return 0


def _verify_written(tmp: Path, target: Path, image: sitk.Image) -> None:
    """Read the written file back and compare it with ``image`` (size, spacing, voxels), before it gets its name.

    ITK's writers report nothing when the disk fills up mid-write (the gzip stream is simply cut); the read-back
    catches a damaged or short file, so no truncated volume is ever renamed into place."""
    sitk = _sitk()
    try:
        if tmp.name.endswith(".gz"):
            with gzip.open(tmp, "rb") as stream:
                while stream.read(1 << 22):
                    pass
        with _quiet_itk():
            back = sitk.ReadImage(str(tmp))
        written, wanted = sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image)
        same = (back.GetSize() == image.GetSize() and np.allclose(back.GetSpacing(), image.GetSpacing())
                and np.array_equal(written, wanted, equal_nan=np.issubdtype(wanted.dtype, np.floating)))
    except (OSError, EOFError, zlib.error, RuntimeError):
        same = False
    if not same:
        raise OutputError(f"Output {target} came out damaged when read back ({_free_kb(target.parent)} kB free in {target.parent}: "
                          f"disk full?); free space there or choose another folder (nothing was written under that name).")
