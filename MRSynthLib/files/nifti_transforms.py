"""A NIfTI-1 file whose sform and qform disagree is refused, not silently read through one of them.

NIfTI-1 headers carry two voxel-to-world transforms. ITK reads a file through its sform only when that is a
rotation with scaling and otherwise falls back to the qform without a word, so a sheared or edited sform
gave an output whose header disagreed with the input by tens of millimetres. Before ITK opens a NIfTI file,
both transforms (when both are set) are applied to the corners of its voxel grid; more than
:data:`TOLERANCE_MM` apart is one sentence naming the file, the distance and the fix.

A transform in use (``sform_code`` or ``qform_code`` > 0) with an infinite or NaN entry is refused before ITK
sees it: ITK's header reader never returns on an sform holding ``inf`` (found by the header fuzz test).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from MRSynthLib.errors import InputImageError

TOLERANCE_MM = 1.0
"""Largest distance between the sform's and the qform's position of a grid corner that is accepted."""


def _qform(values: dict) -> np.ndarray:
    """4x4 voxel-to-world matrix of the quaternion transform (NIfTI-1 method 2)."""
    b, c, d = values["quatern"]
    a = np.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d)))
    rotation = np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
    ])
    qfac = -1.0 if values["pixdim"][0] < 0 else 1.0
    scale = np.array([values["pixdim"][1], values["pixdim"][2], values["pixdim"][3] * qfac])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * scale
    matrix[:3, 3] = values["qoffset"]
    return matrix


def _header(path: Path) -> bytes:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as stream:
        return stream.read(348)


def header_fields(path: str | os.PathLike) -> dict | None:
    """The transform fields of a NIfTI-1 file's header (read once: 348 bytes), or None when it is not NIfTI-1."""
    header = _header(Path(path))
    for order in "<>":
        if len(header) == 348 and struct.unpack_from(order + "i", header)[0] == 348:
            break
    else:
        return None
    qform_code, sform_code = struct.unpack_from(order + "2h", header, 252)
    return {"qform_code": qform_code, "sform_code": sform_code,
                   "dims": struct.unpack_from(order + "8h", header, 40),
                   "pixdim": struct.unpack_from(order + "8f", header, 76),
                   "quatern": struct.unpack_from(order + "3f", header, 256),
                   "qoffset": struct.unpack_from(order + "3f", header, 268),
                   "srow": struct.unpack_from(order + "12f", header, 280)}


def non_finite_transform(values: dict) -> str | None:
    """``"sform"``, ``"qform"`` or ``"pixdim"`` when that part of a header (:func:`header_fields`) is in use and
    holds inf or NaN."""
    if values["sform_code"] > 0 and not np.all(np.isfinite(values["srow"])):
        return "sform"
    if values["qform_code"] > 0 and not np.all(np.isfinite(values["quatern"] + values["qoffset"])):
        return "qform"
    if not np.all(np.isfinite(values["pixdim"][:4])):
        return "pixdim"
    return None


def transform_disagreement_mm(values: dict) -> float | None:
    """Largest corner distance (mm) between sform and qform of a header (:func:`header_fields`); None when not both
    are set."""
    if values["qform_code"] <= 0 or values["sform_code"] <= 0:
        return None
    dims = values["dims"]
    sform = np.eye(4)
    sform[:3, :] = np.array(values["srow"]).reshape(3, 4)
    qform = _qform(values)
    if not (np.all(np.isfinite(sform)) and np.all(np.isfinite(qform))):
        return None
    size = [max(1, int(n)) for n in dims[1:4]]
    corners = np.array([[i * (n - 1) for i, n in zip(bits, size)] + [1.0] for bits in np.ndindex(2, 2, 2)]).T
    return float(np.max(np.linalg.norm((sform @ corners - qform @ corners)[:3], axis=0)))


def check_nifti_transforms(path: str | os.PathLike, role: str) -> None:
    """Raise :class:`InputImageError` when the file's sform and qform disagree by more than :data:`TOLERANCE_MM`."""
    p = Path(path)
    if not p.name.lower().endswith((".nii", ".nii.gz")):
        return
    try:
        values = header_fields(p)
    except (OSError, EOFError, struct.error, ValueError, zlib.error):
        return  # damaged files are reported by the reader in its own words
    if values is None:
        return
    broken = non_finite_transform(values)
    distance = transform_disagreement_mm(values) if broken is None else None
    if broken is not None:
        raise InputImageError(
            f"{role} file {p} has an infinite or undefined (NaN) value in its header's {broken}, so its voxel positions "
            f"are undefined: repair the header (e.g. re-export it) or set that transform's code to 0.")
    if distance is not None and distance > TOLERANCE_MM:
        raise InputImageError(
            f"{role} file {p} has an sform and a qform that place its voxels up to {distance:.1f} mm apart (a sheared "
            f"or edited sform), so its position is ambiguous: make them agree (e.g. `fslorient -copysform2qform` or "
            f"nibabel's set_qform(img.get_sform())) or resample it.")
