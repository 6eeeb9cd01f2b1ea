"""Calibrate a fusion bundle's input screening (``networks.screening`` in its card, :mod:`MRSynthLib.preprocessing.screening`).

``python -m training.experiments.calibrate_screening BUNDLE [--cases 4] [--first-seed 800]`` generates clean phantoms
(the built-in models' training distribution), brings them to the bundle's model space exactly as
synthesis does, and measures per contrast the autoencoder's box-smoothed block reconstruction error in
the brain. The error scale of a contrast is its 99.9th percentile; an input is excluded where its error
exceeds ``cut`` (1.2) times that scale. The card is rewritten atomically with the numbers and how they were made (weights unchanged).
For real-data bundles pass ``--case-dir`` folders of clean ``<contrast>.nii.gz`` cases instead of phantoms.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from pathlib import Path

import numpy as np

from MRSynthLib.files.atomic import staged_folder
from MRSynthLib.models.bundle import load_bundle, write_card
from MRSynthLib.errors import MRSynthError
from MRSynthLib.preprocessing.screening import ScreeningConfig, block_errors

PERCENTILE = 99.9
#: Phantom geometries, alternated over the calibration cases: resampled to the model grid (1.5 mm, as the
#: held-out evaluation phantoms) and native on it (2 mm, whose noise is not smoothed by resampling).
CASE_GEOMETRIES = (((128, 150, 128), (1.5, 1.5, 1.5)), ((96, 112, 96), (2.0, 2.0, 2.0)))


def _phantom_cases(contrasts: tuple[str, ...], count: int, first_seed: int):
    from MRSynthLib.phantom import PhantomConfig, generate_phantom

    for index, seed in enumerate(range(first_seed, first_seed + count)):
        size, spacing = CASE_GEOMETRIES[index % len(CASE_GEOMETRIES)]
        phantom = generate_phantom(PhantomConfig(seed=seed, size=size, spacing=spacing, ms_lesions=3))
        yield f"phantom seed {seed} ({spacing[0]} mm)", {c: phantom.images[c] for c in contrasts if c in phantom.images}


def _folder_cases(folders: list[Path], contrasts: tuple[str, ...]):
    from MRSynthLib.files.imageio import load_input

    for folder in folders:
        images = {c: load_input(folder / f"{c}.nii.gz", f"--case-dir {c}") for c in contrasts if (folder / f"{c}.nii.gz").exists()}
        if not images:
            raise MRSynthError(f"--case-dir {folder} has none of {', '.join(c + '.nii.gz' for c in contrasts)}.")
        yield str(folder), images


def measure_error_scales(bundle, cases) -> tuple[dict[str, float], list[str]]:
    """Per-contrast 99.9th percentile of the brain's block errors over ``cases`` (name, {contrast: image})."""
    from MRSynthLib.preprocessing.preprocess import to_model_space
    from MRSynthLib.runtime.torch_backend import TorchEngine

    engine = TorchEngine(bundle, "cpu")
    d = engine.downsampling
    smoothing = ScreeningConfig(error_scale={}).smoothing
    pooled: dict[str, list[np.ndarray]] = {}
    names = []
    for name, images in cases:
        space = to_model_space(images, bundle.card.preprocessing)
        z, y, x = (n // d for n in space.mask.shape)
        brain = space.mask.astype(np.float32).reshape(z, d, y, d, x, d).mean(axis=(1, 3, 5)) >= 0.5
        for contrast, array in space.arrays.items():
            latents = engine.encode(array[None, None])
            reconstruction = engine.decode(latents)[:, 0]
            errors = block_errors(array[None], reconstruction, d, smoothing)[0]
            pooled.setdefault(contrast, []).append(errors[brain])
        names.append(name)
    return {c: float(np.percentile(np.concatenate(v), PERCENTILE)) for c, v in pooled.items()}, names


def calibrate(bundle_dir: str | Path, cases: int = 4, first_seed: int = 800, case_dirs: list[Path] | None = None) -> Path:
    """Measure the error scales and rewrite ``bundle_dir``'s card with ``networks.screening`` (atomic swap)."""
    import MRSynthLib

    folder = Path(bundle_dir)
    bundle = load_bundle(folder)
    if bundle.card.method.split("-")[-1] != "fusion":
        raise MRSynthError(f"{folder} is a {bundle.card.method} bundle: input screening is calibrated for fusion bundles only.")
    contrasts = tuple(bundle.card.input_contrasts)
    source = _folder_cases(case_dirs, contrasts) if case_dirs else _phantom_cases(contrasts, cases, first_seed)
    scales, names = measure_error_scales(bundle, source)
    config = ScreeningConfig(
        error_scale={c: round(v, 6) for c, v in scales.items()},
        calibration={"cases": names, "statistic": f"{PERCENTILE}th percentile of the brain's block errors",
                     "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "by": "python -m training.experiments.calibrate_screening", "mrsynth_version": MRSynthLib.__version__},
    )
    card = dataclasses.replace(bundle.card, networks={**bundle.card.networks, "screening": config.to_dict()})
    with staged_folder(folder, copy_existing=True) as staging:
        write_card(card, staging)
        load_bundle(staging)  # verifies the hashes and that the card parses
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.experiments.calibrate_screening", description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path, help="fusion bundle folder (its card is rewritten in place)")
    parser.add_argument("--cases", type=int, default=4, help="number of clean phantoms (default 4)")
    parser.add_argument("--first-seed", type=int, default=800, help="seed of the first phantom (default 800)")
    parser.add_argument("--case-dir", type=Path, action="append", default=None,
                        help="a clean case folder of <contrast>.nii.gz files instead of phantoms (repeat)")
    args = parser.parse_args(argv)
    if args.cases < 1:
        print("calibrate_screening: --cases must be at least 1.", file=sys.stderr)
        return 2
    try:
        folder = calibrate(args.bundle, args.cases, args.first_seed, args.case_dir)
    except MRSynthError as error:
        print(f"calibrate_screening: {error}", file=sys.stderr)
        return 2
    scales = load_bundle(folder).card.networks["screening"]["error_scale"]
    print(f"screening calibrated for {folder}: " + ", ".join(f"{c} {v:.4f}" for c, v in scales.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
