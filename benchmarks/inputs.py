"""Benchmark input cases: seeded phantoms written as int16 NIfTI (as scanners deliver them), cached on disk.

A case is three input contrasts (t1, t2, flair) plus, for reference, nothing else: the target (t1ce) is
synthesized. Options model what clinical inputs look like:

- ``flair_slice_mm``: FLAIR resampled onto thick axial slices (its own grid), so the pipeline registers it
  rigidly to the T1 grid (the register/resample stage does real work);
- ``upsample``: the phantom is generated at ``spacing`` and resampled (linear) by this factor per axis,
  e.g. a 1 mm phantom of 256x256x200 → 512x512x400 at 0.5 mm (generating that directly needs far more memory).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

INPUTS = ("t1", "t2", "flair")
TARGET = "t1ce"


@dataclass(frozen=True)
class CaseSpec:
    """One input case. ``size``/``spacing`` are (x, y, z) of the generated phantom, before ``upsample``."""

    name: str
    size: tuple[int, int, int]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    seed: int = 11
    flair_slice_mm: float | None = None
    upsample: int = 1
    description: str = ""

    @property
    def final_size(self) -> tuple[int, int, int]:
        return tuple(s * self.upsample for s in self.size)

    @property
    def final_spacing(self) -> tuple[float, float, float]:
        return tuple(s / self.upsample for s in self.spacing)

    def key(self) -> str:
        """Short digest of everything that shapes the files (the cache folder name)."""
        fields = asdict(self)
        fields.pop("description")
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class ExistingCase:
    """A case already on disk (e.g. a real BraTS case), used as it is."""

    name: str
    folder: Path
    description: str = ""


def _to_int16(image):
    import SimpleITK as sitk

    return sitk.Cast(sitk.Round(sitk.Clamp(image, sitk.sitkFloat32, 0.0, 32767.0)), sitk.sitkInt16)


def _thick_slices(image, slice_mm: float):
    """``image`` resampled (linear, same physical extent and direction) onto slices ``slice_mm`` thick."""
    import numpy as np
    import SimpleITK as sitk

    spacing = np.asarray(image.GetSpacing(), dtype=float)
    size = np.asarray(image.GetSize(), dtype=float)
    new_spacing = np.array([spacing[0], spacing[1], slice_mm])
    new_size = [int(s) for s in np.maximum(1, np.round(size * spacing / new_spacing))]
    first_edge = np.asarray(image.GetOrigin()) - 0.5 * spacing  # identity direction (phantoms)
    origin = first_edge + 0.5 * new_spacing
    smoothed = sitk.SmoothingRecursiveGaussian(image, [1e-3, 1e-3, 0.4 * slice_mm])
    return sitk.Resample(smoothed, new_size, sitk.Transform(), sitk.sitkLinear, origin.tolist(),
                         new_spacing.tolist(), image.GetDirection(), 0.0, sitk.sitkFloat32)


def _upsampled(image, factor: int):
    import numpy as np
    import SimpleITK as sitk

    spacing = np.asarray(image.GetSpacing(), dtype=float)
    new_spacing = spacing / factor
    origin = np.asarray(image.GetOrigin()) - 0.5 * spacing + 0.5 * new_spacing
    size = [int(s) * factor for s in image.GetSize()]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), new_spacing.tolist(),
                         image.GetDirection(), 0.0, sitk.sitkFloat32)


def ensure_case(spec: CaseSpec, cache: Path) -> Path:
    """The folder holding ``t1.nii.gz``, ``t2.nii.gz``, ``flair.nii.gz`` for ``spec`` (generated once)."""
    import SimpleITK as sitk

    from MRSynthLib.phantom import PhantomConfig, generate_phantom

    folder = cache / f"{spec.name}-{spec.key()}"
    if all((folder / f"{c}.nii.gz").is_file() for c in INPUTS):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    phantom = generate_phantom(PhantomConfig(size=spec.size, spacing=spec.spacing, seed=spec.seed))
    for contrast in INPUTS:
        image = phantom.images[contrast]
        if spec.upsample > 1:
            image = _upsampled(image, spec.upsample)
        if contrast == "flair" and spec.flair_slice_mm:
            image = _thick_slices(image, spec.flair_slice_mm)
        partial = folder / f".{contrast}.partial.nii.gz"
        sitk.WriteImage(_to_int16(image), str(partial), True)
        os.replace(partial, folder / f"{contrast}.nii.gz")
        del image
    (folder / "case.json").write_text(json.dumps(asdict(spec), indent=2) + "\n", encoding="utf-8")
    return folder


def input_paths(folder: Path) -> dict[str, str]:
    return {c: str(folder / f"{c}.nii.gz") for c in INPUTS}
