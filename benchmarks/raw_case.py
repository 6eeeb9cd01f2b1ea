"""End to end on a raw, not co-registered clinical case: register → synthesize → back to the reference grid.

    python -m benchmarks.raw_case --model mrsynth-default --output-dir outputs/raw-case \
        --montage docs/images/raw-case-montage.png

Uses ``../shared/data/raw/tcga-fg-6692-native`` (axial 2D series, 0.9×0.9×5.5 mm, different in-plane
grids): t1 (the reference grid), t2 and flair → t1ce. The real native t1ce, rigidly registered onto the t1
grid by the same registration code, is shown beside the synthetic one. The metrics against it are only
indicative: the native scans are not skull-stripped and the real t1ce went through its own registration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RAW_CASE = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw" / "tcga-fg-6692-native"
INPUTS = ("t1", "t2", "flair")
TARGET = "t1ce"


def run(model: str | None, case: Path, output_dir: Path, montage: Path | None, backend: str = "auto") -> dict:
    """Synthesize, write outputs and (optionally) the montage; returns the report."""
    from MRSynthLib.files.imageio import load_input
    from MRSynthLib.quality.metrics import evaluate_images
    from MRSynthLib.quality.montage import save_montage
    from MRSynthLib.commands.outputs import plan_outputs, write_result
    from MRSynthLib.preprocessing.registration import register_rigid, resample_onto
    from MRSynthLib.synthesis import synthesize

    inputs = {c: case / f"{c}.nii.gz" for c in INPUTS}
    missing = [str(p) for p in [*inputs.values(), case / f"{TARGET}.nii.gz"] if not p.exists()]
    if missing:
        raise SystemExit(f"raw case incomplete, missing {', '.join(missing)}: is ../shared/data present?")
    output_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_outputs(output_dir / f"{TARGET}_synthetic.nii.gz", output_dir / f"{TARGET}_uncertainty.nii.gz", None,
                        list(inputs), overwrite=True)
    started = time.perf_counter()
    result = synthesize(inputs, TARGET, model=model, samples=8, backend=backend)
    write_result(result, plan, overwrite=True)
    seconds = time.perf_counter() - started

    reference = load_input(inputs["t1"], "t1")
    real = load_input(case / f"{TARGET}.nii.gz", f"real {TARGET}")
    real_on_grid = resample_onto(real, reference, register_rigid(reference, real))
    report = evaluate_images(real_on_grid, result.synthetic)
    report["seconds_end_to_end_with_8_samples"] = round(seconds, 1)
    report["alignment"] = {k: v.get("role") for k, v in result.provenance["alignment"].items()}
    report["bundle"] = result.provenance["bundle"]
    report["note"] = ("indicative only: native scans are not skull-stripped; the real t1ce was rigidly registered "
                      "onto the t1 grid for this comparison")
    if montage is not None:
        gridded = {c: (reference if c == "t1" else resample_onto(load_input(p, c), reference,
                                                                  register_rigid(reference, load_input(p, c))))
                   for c, p in inputs.items()}
        row = [(f"{c} (input)", img, None) for c, img in gridded.items()]
        row += [(f"{TARGET} synthetic", result.synthetic, None), (f"{TARGET} real (registered)", real_on_grid, None),
                ("uncertainty", result.uncertainty, None)]
        montage.parent.mkdir(parents=True, exist_ok=True)
        save_montage([row], montage, overwrite=True)
        report["montage"] = str(montage)
    (output_dir / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--case", type=Path, default=RAW_CASE)
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/raw-case"))
    parser.add_argument("--montage", type=Path, default=None)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args(argv)
    report = run(args.model, args.case, args.output_dir, args.montage, args.backend)
    brain = report["brain"]
    print(f"{TARGET} from {', '.join(INPUTS)} on {args.case.name}: {report['seconds_end_to_end_with_8_samples']} s; "
          f"vs registered real {TARGET}: PSNR {brain['psnr']:.2f} dB, SSIM {brain['ssim']:.3f} (indicative)")
    print(f"alignment: {report['alignment']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
