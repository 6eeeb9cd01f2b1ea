"""Preprocessing cache: every case is read and brought into model space once, then memory-mapped.

Layout under the cache folder::

    <spec hash>/<source>/<case>/   key.json, <contrast>.npy, mask.npy, foreground.npy[, labels.npy]
    registration/<hash>.json       rigid transforms of moving contrasts onto a case's reference

``<spec hash>`` is the sha256 (12 hex) of the :class:`~MRSynthLib.preprocessing.preprocess.PreprocessSpec`, so a
different spacing/normalisation never reads another spec's arrays. ``key.json`` holds the case's
fingerprint: path, size and modification time (ns) of every source file, the contrasts, the
registration switch and the full spec; a case whose fingerprint changed is rebuilt. Phantoms list
the generator's source file and their generator settings instead of image files. Registrations are
keyed by both files' fingerprints only, so a new spec reuses them (IXI's T2/PD are registered to T1
once). A case is assembled in a temporary folder and renamed into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import zlib
from pathlib import Path

import numpy as np

from MRSynthLib.files.atomic import staged_folder
from MRSynthLib.preprocessing.preprocess import PreprocessSpec
from training.inputs.data_sources import SourceCase

CACHE_FORMAT = 1
FOREGROUND_SAMPLES = 32768
"""Patch centres are drawn from at most this many foreground voxels per case (a seeded subsample)."""
_REGISTRATION_SETTINGS = {"method": "MRSynthLib.preprocessing.registration.register_rigid", "seed": 0, "version": 1}


def spec_digest(spec: PreprocessSpec) -> str:
    """12-hex sha256 of the preprocessing spec (the cache subfolder name)."""
    text = json.dumps(spec.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def file_stamp(path: Path) -> dict:
    """``{"path", "size", "mtime_ns"}`` of ``path`` (absolute): changes when the file is replaced or edited."""
    path = Path(path).resolve()
    stat = path.stat()
    return {"path": str(path), "size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}


def reference_contrast(contrasts) -> str:
    """The contrast whose grid the case is brought onto: t1 when present, else the first in canonical order."""
    from MRSynthLib.contrasts import CANONICAL_CONTRASTS

    order = [c for c in CANONICAL_CONTRASTS if c in contrasts] + sorted(c for c in contrasts if c not in CANONICAL_CONTRASTS)
    return order[0]


def case_fingerprint(case: SourceCase, spec: PreprocessSpec, register: bool) -> dict:
    """Everything the cached arrays of ``case`` depend on."""
    key = {"format": CACHE_FORMAT, "case_id": case.case_id, "spec": spec.to_dict()}
    if case.phantom is not None:
        import MRSynthLib.phantom as phantom_module

        key["phantom"] = json.loads(json.dumps(dataclasses.asdict(case.phantom)))
        key["files"] = {"generator": file_stamp(Path(phantom_module.__file__))}
        if case.phantom_contrasts:
            key["contrasts"] = list(case.phantom_contrasts)
    else:
        key["files"] = {c: file_stamp(p) for c, p in sorted(case.images.items())}
        if case.labels is not None:
            key["files"]["labels"] = file_stamp(case.labels)
        key["register"] = bool(register)
    return key


class PreprocessCache:
    """Model-space arrays of cases under ``root`` (``None``: nothing is stored, cases are built in memory)."""

    def __init__(self, root: Path | None, spec: PreprocessSpec) -> None:
        self.root = Path(root).expanduser() if root is not None else None
        self.spec = spec

    def case_dir(self, case: SourceCase) -> Path:
        source, name = case.case_id.split("/", 1)
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        return self.root / spec_digest(self.spec) / source / safe

    def is_fresh(self, case: SourceCase, register: bool) -> bool:
        """True when the cached arrays exist and were built from the same files and spec."""
        if self.root is None:
            return False
        path = self.case_dir(case) / "key.json"
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return stored.get("fingerprint") == _jsonable(case_fingerprint(case, self.spec, register))

    def build(self, case: SourceCase, register: bool) -> dict:
        """Preprocess ``case`` and store it; returns the arrays (see :func:`preprocess_case`)."""
        started = time.perf_counter()
        arrays, record = preprocess_case(case, self.spec, register, self.registration_dir())
        if self.root is None:
            return arrays
        with staged_folder(self.case_dir(case)) as staging:  # a cache entry is complete or absent
            for name, array in arrays.items():
                np.save(staging / f"{name}.npy", array)
            key = {
                "fingerprint": _jsonable(case_fingerprint(case, self.spec, register)),
                "record": {**record, "seconds": round(time.perf_counter() - started, 3)},
            }
            (staging / "key.json").write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")
        return arrays

    def load(self, case: SourceCase) -> dict[str, np.ndarray]:
        """The cached arrays, memory-mapped copy-on-write (pages are shared between ranks and workers)."""
        folder = self.case_dir(case)
        return {p.stem: np.load(p, mmap_mode="c") for p in sorted(folder.glob("*.npy"))}

    def registration_dir(self) -> Path | None:
        return None if self.root is None else self.root / "registration"


def _jsonable(value):
    return json.loads(json.dumps(value))


def preprocess_case(case: SourceCase, spec: PreprocessSpec, register: bool,
                    registration_dir: Path | None) -> tuple[dict[str, np.ndarray], dict]:
    """Read ``case`` (or generate the phantom) and run the inference preprocessing on it.

    Contrasts on another grid than the reference contrast (:func:`reference_contrast`) are rigidly
    registered to it when ``register`` (transforms cached in ``registration_dir``), else resampled.

    Returns:
        arrays: ``<contrast>`` float32 ``(z, y, x)``, ``mask`` bool, ``foreground`` int32 ``(K, 3)``
        voxel indices (seeded subsample of the mask), ``labels`` uint8 when the case has labels;
        record: JSON-able provenance (reference, registrations, model-space record).
    """
    from MRSynthLib.preprocessing.preprocess import to_model_space

    if case.phantom is not None:
        from MRSynthLib.phantom import generate_phantom

        phantom = generate_phantom(case.phantom)
        images, labels_image, record = dict(phantom.images), phantom.labels, {"reference": None, "registrations": {}}
        if case.phantom_contrasts:  # partially paired data: the case keeps only these
            images = {c: images[c] for c in case.phantom_contrasts}
    else:
        images, labels_image, record = _read_on_reference_grid(case, register, registration_dir)
    space = to_model_space(images, spec)
    arrays: dict[str, np.ndarray] = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in space.arrays.items()}
    arrays["mask"] = space.mask.astype(bool)
    arrays["foreground"] = foreground_sample(space.mask, case.case_id)
    if labels_image is not None:
        arrays["labels"] = labels_to_model_space(space, labels_image)
    record["model_space"] = space.record()
    return arrays, record


def _read_on_reference_grid(case: SourceCase, register: bool, registration_dir: Path | None):
    import SimpleITK as sitk

    from MRSynthLib.files.imageio import load_input, read_image
    from MRSynthLib.preprocessing.registration import resample_onto, same_grid, transform_to_dict

    reference_name = reference_contrast(case.images)
    order = [reference_name] + [c for c in case.images if c != reference_name]
    reference = load_input(case.images[reference_name], role=f"{case.case_id} {reference_name}")
    images, registrations = {reference_name: reference}, {}
    for name in order[1:]:
        image = load_input(case.images[name], role=f"{case.case_id} {name}")
        if not same_grid(reference, image):
            transform = None
            if register:
                transform = registered_transform(case.images[reference_name], case.images[name], reference, image,
                                                 registration_dir)
                registrations[name] = transform_to_dict(transform)
            image = resample_onto(image, reference, transform)
        images[name] = image
    labels = None
    if case.labels is not None:
        labels = read_image(case.labels, role=f"{case.case_id} labels")
        if labels.GetDimension() == 4 and labels.GetSize()[3] == 1:
            labels = labels[:, :, :, 0]
        labels = sitk.Cast(labels, sitk.sitkUInt8)
        if not same_grid(reference, labels):
            labels = resample_onto(labels, reference, None, interpolator="nearest")
    return images, labels, {"reference": reference_name, "registrations": registrations}


def registered_transform(fixed_path: Path, moving_path: Path, fixed, moving, cache: Path | None):
    """Rigid transform mapping ``fixed`` points to ``moving`` points, computed once per file pair."""
    import SimpleITK as sitk

    from MRSynthLib.preprocessing.registration import register_rigid

    key = {"fixed": file_stamp(fixed_path), "moving": file_stamp(moving_path), "settings": _REGISTRATION_SETTINGS}
    path = None
    if cache is not None:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        path = cache / f"{digest}.json"
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored["key"] == _jsonable(key):
                transform = sitk.Euler3DTransform()
                transform.SetFixedParameters(stored["fixed_parameters"])
                transform.SetParameters(stored["parameters"])
                return transform
        except (OSError, ValueError, KeyError):
            pass
    transform = register_rigid(fixed, moving, seed=_REGISTRATION_SETTINGS["seed"])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"key": key, "parameters": list(transform.GetParameters()),
                  "fixed_parameters": list(transform.GetFixedParameters())}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
    return transform


def labels_to_model_space(space, labels_image) -> np.ndarray:
    """A label image on the reference grid, reoriented, resampled (nearest) to the model grid when the
    model space was resampled, then cropped and padded exactly as the model space: uint8 ``(z, y, x)``."""
    import SimpleITK as sitk

    from MRSynthLib.files.imageio import voxel_copy
    from MRSynthLib.preprocessing.preprocess import CANONICAL_ORIENTATION

    labels = sitk.DICOMOrient(labels_image, CANONICAL_ORIENTATION)
    if space.resampled:
        labels = sitk.Resample(labels, space.model_grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID())
    array = voxel_copy(labels)
    crop = tuple(slice(c, c + s) for c, s in zip(space.crop_start, space.crop_shape))
    pad = [(b, total - s - b) for b, total, s in zip(space.pad_before, space.shape, space.crop_shape)]
    return np.pad(array[crop], pad).astype(np.uint8)


def foreground_sample(mask: np.ndarray, case_id: str, limit: int = FOREGROUND_SAMPLES) -> np.ndarray:
    """Up to ``limit`` foreground voxel indices ``(K, 3)`` int32, chosen with a seed derived from ``case_id``."""
    indices = np.argwhere(mask)
    if len(indices) > limit:
        rng = np.random.default_rng(zlib.crc32(case_id.encode()))
        indices = indices[np.sort(rng.choice(len(indices), limit, replace=False))]
    return indices.astype(np.int32)


__all__ = ["PreprocessCache", "case_fingerprint", "file_stamp", "foreground_sample", "labels_to_model_space",
           "preprocess_case", "reference_contrast", "registered_transform", "spec_digest"]
