"""One synthesis, end to end: validate → common grid → model space → model → back to the user's grid.

>>> result = synthesize({"t1": "t1.nii.gz", "t2": "t2.nii.gz"}, target="flair")  # doctest: +SKIP
>>> result.synthetic  # SimpleITK image on the grid of t1.nii.gz
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import MRSynthLib
from MRSynthLib.runtime.backends import effective_threads
from MRSynthLib.models.bundle import SYNTHETIC_NOTICE, Bundle
from MRSynthLib.contrasts import canonical_contrast
from MRSynthLib.errors import ContrastError, InputImageError
from MRSynthLib.files.imageio import DICOM_SERIES_KEY, grid_of, image_to_array, load_input
from MRSynthLib.files.input_digest import input_sha256
from MRSynthLib.preprocessing.normalization import AIR_HU, ct_to_hounsfield
from MRSynthLib.preprocessing.preprocess import to_model_space
from MRSynthLib.methods.method_families import family_of

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk


@dataclass
class SynthesisResult:
    """Outputs on the reference input's grid.

    Attributes:
        synthetic: float32 image of the target contrast (normalised units, background 0).
        uncertainty: voxel-wise std of stochastic passes (same units), or None with one sample.
        contributions: input contrast -> share of that input (0..1, summing to 1 inside the head).
        provenance: JSON-able record of how it was made.
    """

    synthetic: sitk.Image
    uncertainty: sitk.Image | None
    contributions: dict[str, sitk.Image]
    provenance: dict
    timings: dict[str, float] = field(default_factory=dict)


def _split_pair(pair: str, flag: str, value: str, example: str) -> tuple[str, str]:
    """``"T1w=x"`` → ``("t1", "x")`` (canonical contrast, stripped value), or one sentence naming ``flag``."""
    name, sep, rest = pair.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise ContrastError(f"{flag} {pair!r} must look like CONTRAST={value}, e.g. {flag} {example}.")
    return canonical_contrast(name.strip()), rest.strip()


def parse_input_pairs(pairs: list[str]) -> dict[str, Path]:
    """``["t1=a.nii.gz", "T2w=b.nii.gz"]`` → ``{"t1": Path("a.nii.gz"), "t2": Path("b.nii.gz")}``.

    Raises:
        ContrastError: malformed pair, unknown contrast or the same contrast twice.
    """
    inputs: dict[str, Path] = {}
    for pair in pairs:
        contrast, path = _split_pair(pair, "--input", "PATH", "t1=case/t1.nii.gz")
        if contrast in inputs:
            raise ContrastError(f"Contrast {contrast} is given twice (--input {pair!r}): give each contrast once.")
        inputs[contrast] = Path(path)
    return inputs


def parse_series_pairs(pairs: list[str], inputs: dict[str, Path]) -> dict[str, str]:
    """``["t1=1.2.840..."]`` → ``{"t1": "1.2.840..."}``: which DICOM series of an input folder to read.

    Raises:
        ContrastError: malformed pair, or a contrast that is not among ``inputs``.
    """
    chosen: dict[str, str] = {}
    for pair in pairs:
        contrast, uid = _split_pair(pair, "--series", "SERIES_UID", "t1=1.2.840.1")
        if contrast not in inputs:
            raise ContrastError(f"--series {pair!r} names {contrast}, which is not an --input: give the input first.")
        chosen[contrast] = uid
    return chosen


def check_contrasts(inputs: list[str], target: str, bundle: Bundle) -> str:
    """Validate the requested contrasts against each other and the model card; returns the canonical target."""
    card = bundle.card
    target = canonical_contrast(target)
    if not inputs:
        raise ContrastError("No input given: pass at least one --input CONTRAST=PATH.")
    if target in inputs:
        raise ContrastError(
            f"Target {target} is also given as an input: drop --input {target}=... or choose another --target."
        )
    if target not in card.output_contrasts:
        raise ContrastError(
            f"Model {card.name} cannot synthesize {target}: it produces {', '.join(card.output_contrasts)}; "
            f"choose another --target or --model."
        )
    unsupported = [c for c in inputs if c not in card.input_contrasts]
    if unsupported:
        raise ContrastError(
            f"Model {card.name} does not accept input {', '.join(unsupported)}: it accepts "
            f"{', '.join(card.input_contrasts)}; drop that input or choose another --model."
        )
    return target


def common_grid(images: dict[str, sitk.Image], paths: dict[str, Path], register: bool | None, progress) -> tuple[dict, dict]:
    """Put every image on the first one's grid; rigid registration when grids differ (unless disabled).

    Returns:
        (images on the reference grid, record of what was done to each input).
    """
    from MRSynthLib.preprocessing.registration import register_rigid, resample_onto, same_grid, transform_to_dict

    names = list(images)
    reference = images[names[0]]
    out = {names[0]: reference}
    record: dict[str, dict] = {names[0]: {"role": "reference"}}
    for name in names[1:]:
        image = images[name]
        if same_grid(image, reference):
            out[name] = image
            record[name] = {"role": "same grid"}
            continue
        transform = None
        apart = _separation_without_overlap(reference, image)
        if register is not False:
            progress(f"register {name}", 0.0)
            try:
                transform = register_rigid(reference, image)
            except (InputImageError, RuntimeError):
                raise InputImageError(
                    f"Input {name} ({paths[name]}) could not be registered to {names[0]} ({paths[names[0]]}): their "
                    f"fields of view do not overlap; check both are of the same patient, or pass --no-register."
                ) from None
        resampled = resample_onto(image, reference, transform)
        if not np.any(image_to_array(resampled) > 0.05 * float(np.percentile(image_to_array(image), 99))):
            raise InputImageError(
                f"Input {name} ({paths[name]}) does not overlap the field of view of {names[0]} ({paths[names[0]]}) "
                f"after {'registration' if transform else 'resampling'}: check that both images are of the same patient."
            )
        out[name] = resampled
        record[name] = {"role": "registered (rigid, mutual information)" if transform else "resampled (no registration)",
                        "transform": transform_to_dict(transform) if transform else None}
        if apart is not None and transform is not None:
            record[name]["note"] = (f"its field of view did not overlap {names[0]}'s before registration (centres "
                                    f"{apart:.0f} mm apart); the registration moved it into place: check that both "
                                    f"are of the same patient and session")
    return out, record


def _physical_box(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned physical bounding box ``(low, high)`` (mm) of the image's voxel corners."""
    size = image.GetSize()
    corners = [image.TransformContinuousIndexToPhysicalPoint([-0.5 + c * n for c, n in zip(bits, size)])
               for bits in np.ndindex(2, 2, 2)]
    points = np.asarray(corners)
    return points.min(axis=0), points.max(axis=0)


def _separation_without_overlap(a: sitk.Image, b: sitk.Image) -> float | None:
    """Distance (mm) between the two images' centres when their physical boxes do not overlap at all, else None."""
    (low_a, high_a), (low_b, high_b) = _physical_box(a), _physical_box(b)
    if np.all(np.minimum(high_a, high_b) > np.maximum(low_a, low_b)):
        return None
    return float(np.linalg.norm((low_a + high_a) / 2 - (low_b + high_b) / 2))


def refuse_repeated_files(paths: dict[str, Path]) -> None:
    """One scan given for two contrasts (same file through any path, symlink or hard link) is refused."""
    from MRSynthLib.files.path_guard import file_identity

    seen: dict[tuple, str] = {}
    for name, path in paths.items():
        key = file_identity(path)
        if key is None:
            continue  # a missing path is reported by the reader
        if key in seen:
            raise InputImageError(f"input {seen[key]} and input {name} are the same file ({path}): give each contrast "
                                  f"its own scan.")
        seen[key] = name


def _contributions_on_reference(space, weights: dict[str, np.ndarray], mask: np.ndarray) -> dict:
    """Map model-space gate weights back and renormalise so they sum to exactly 1 wherever the head is."""
    from MRSynthLib.files.imageio import array_to_image

    mapped = {name: space.to_reference(w * mask) for name, w in weights.items()}
    arrays = {name: image_to_array(img) for name, img in mapped.items()}
    total = sum(arrays.values())
    inside = total > 1e-3
    out = {}
    for name, array in arrays.items():
        normalised = np.where(inside, array / np.where(inside, total, 1.0), 0.0).astype(np.float32)
        out[name] = array_to_image(normalised, mapped[name])
    return out


class _StageClock:
    """Progress callback that also adds up wall time per model stage (encode, translate, decode, uncertainty)."""

    def __init__(self, report) -> None:
        self.report = report
        self.stage: str | None = None
        self.started = time.perf_counter()
        self.sums: dict[str, float] = {}

    def __call__(self, stage: str, fraction: float = 0.0) -> None:
        now = time.perf_counter()
        if self.stage is not None:
            self.sums[self.stage] = self.sums.get(self.stage, 0.0) + now - self.started
        self.stage, self.started = stage, now
        self.report(stage, fraction)

    def totals(self) -> dict[str, float]:
        if self.stage is not None:
            self.sums[self.stage] = self.sums.get(self.stage, 0.0) + time.perf_counter() - self.started
            self.stage = None
        return {stage: round(seconds, 4) for stage, seconds in self.sums.items()}


def _screening_record(prediction, mask: np.ndarray, downsampling: int, method: str) -> dict:
    """The sidecar's ``input_screening``: applied or why not, and per input the fraction of the brain
    (latent voxels at least half inside the mask) where it was excluded as unreadable."""
    from MRSynthLib.preprocessing.screening import summary

    record = getattr(prediction, "screening", None)
    if record is None:
        return {"applied": False, "reason": f"method {method} has no input screening"}
    record = dict(record)
    maps = record.pop("maps", None)
    if maps:
        d = downsampling
        z, y, x = (n // d for n in mask.shape)
        coarse = mask.astype(np.float32).reshape(z, d, y, d, x, d).mean(axis=(1, 3, 5)) >= 0.5
        record["excluded_fraction"] = summary(maps, coarse)
    return record


def synthesize(
    inputs: dict[str, str | os.PathLike],
    target: str,
    *,
    model: str | os.PathLike | Bundle | None = None,
    samples: int = 1,
    seed: int = 0,
    device: str = "auto",
    backend: str = "auto",
    threads: int = 0,
    window: int | None = None,
    register: bool | None = None,
    progress=None,
    contributions: bool = True,
    screen: bool = True,
    series: dict[str, str] | None = None,
) -> SynthesisResult:
    """Synthesize ``target`` from ``inputs`` (contrast -> file); the first input's grid is the reference.

    Args:
        samples: 1 for the deterministic synthesis only; N >= 2 also computes the uncertainty map.
        backend: ``auto`` (onnxruntime on the CPU when the bundle has ONNX graphs, else torch), ``torch``, ``onnx``.
        threads: CPU threads for the networks (0 = library default).
        window: sliding-window edge in model-space voxels (None = automatic, 0 = whole volume).
        register: None = register inputs whose grid differs from the reference; False = only resample.
        progress: optional ``progress(stage, fraction)`` callable (see :class:`MRSynthLib.progress.Progress`).
        contributions: False skips the contribution maps (they cost memory and time on large grids: 6 s and
            4 GB at 512x512x400); the result then has none. The CLI asks for them only with --contributions-dir.
        screen: input screening (:mod:`MRSynthLib.preprocessing.screening`) for bundles calibrated for it: input regions the
            autoencoder cannot reconstruct are down-weighted; the sidecar's ``input_screening`` says where.
        series: contrast -> SeriesInstanceUID for inputs that are DICOM folders holding several series.

    Raises:
        MRSynthError: any problem with the inputs, contrasts or bundle, as one clear sentence.
    """
    from MRSynthLib.models.registry import resolve_model

    report = progress or (lambda stage, fraction=0.0: None)
    if not isinstance(samples, int) or samples < 1 or samples > 64:
        raise InputImageError(f"--samples must be an integer from 1 to 64, not {samples!r}.")
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(timings.get(stage, 0.0) + now - clock, 4)
        clock = now

    bundle = model if isinstance(model, Bundle) else resolve_model(model)
    paths = {canonical_contrast(k): Path(v) for k, v in inputs.items()}
    target = check_contrasts(list(paths), target, bundle)
    refuse_repeated_files(paths)
    report("read", 0.0)
    chosen_series = {canonical_contrast(k): v for k, v in (series or {}).items()}
    images = {name: load_input(path, f"input {name}", chosen_series.get(name)) for name, path in paths.items()}
    lap("read")
    gridded, grid_record = common_grid(images, paths, register, report)
    lap("register_resample")
    report("preprocess", 0.0)
    space = to_model_space(gridded, bundle.card.preprocessing)
    lap("preprocess")

    family = family_of(bundle.card.method)  # regression / translator kinds / fusion (MRSynthLib.methods.method_families)
    load_engine = family.engine_loader()
    options = {"mask": space.mask, "contributions": contributions, "screen": screen}
    predict = partial(family.predictor(), **{name: options[name] for name in family.options})

    engine = load_engine(bundle, backend, device, threads)
    lap("load_model")
    stage_clock = _StageClock(report)
    prediction = predict(engine, space.arrays, target, samples=samples, seed=seed, window=window,
                         progress=stage_clock)
    lap("model")
    timings.pop("model")
    timings.update(stage_clock.totals())

    report("postprocess", 0.0)
    mask = space.mask.astype(np.float32)
    values = np.clip(prediction.synthetic, 0.0, None)
    norm = bundle.card.preprocessing.normalization
    unit = 1.0
    if target == "ct":  # Hounsfield units through the card's HU window (exact inverse); air outside the head
        unit = norm.ct_window[1] - norm.ct_window[0]
        synthetic = space.to_reference(np.where(mask > 0, ct_to_hounsfield(values, norm), AIR_HU), background=AIR_HU)
    else:
        synthetic = space.to_reference(values * mask)
    uncertainty = None
    if prediction.uncertainty is not None:
        uncertainty = space.to_reference(prediction.uncertainty * unit * mask)
    contributions = _contributions_on_reference(space, prediction.contributions, mask) if prediction.contributions else {}
    lap("postprocess")

    provenance = {
        "notice": SYNTHETIC_NOTICE,
        "target": target,
        "inputs": {name: str(path) for name, path in paths.items()},
        "input_sha256": {name: input_sha256(path) for name, path in paths.items()},
        "dicom_series": {name: image.GetMetaData(DICOM_SERIES_KEY) for name, image in images.items()
                         if image.HasMetaDataKey(DICOM_SERIES_KEY)},
        "reference_input": next(iter(paths)),
        "reference_grid": grid_of(images[next(iter(paths))]),
        "bundle": bundle.provenance(),
        "method": bundle.card.method,
        "device": engine.device,
        "backend": engine.backend,
        "threads": effective_threads(threads) or None,
        "windows": prediction.windows,
        "seed": seed,
        "samples": samples,
        "uncertainty": bundle.card.uncertainty if samples > 1 else None,
        "output_intensity": bundle.card.output_intensity,
        "alignment": grid_record,
        "model_space": space.record(),
        "mrsynth_version": MRSynthLib.__version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    provenance["input_screening"] = _screening_record(prediction, space.mask, getattr(engine, "downsampling", 1),
                                                      bundle.card.method)
    provenance["timings_s"] = timings
    return SynthesisResult(synthetic, uncertainty, contributions, provenance, timings)
