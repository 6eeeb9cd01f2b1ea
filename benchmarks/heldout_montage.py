"""What a clinician sees on held-out real cases: ``python -m benchmarks.heldout_montage --model BUNDLE``.

For each listed case of a co-registered case folder and each task it can answer, the bundle synthesizes the
target from the case's own files at the bundle's native resolution, with ``--samples`` stochastic passes
(uncertainty) and contribution maps. One montage row per (case, task): the inputs, the synthetic image,
the real one, |error| (both scaled by their own 0.5-99.5th brain percentiles, the evaluation protocol),
the uncertainty and the first input's contribution map. The report adds, per case and task, brain PSNR /
SSIM, the sharpness ratio (:func:`MRSynthLib.quality.metrics.sharpness_ratio`) and Spearman's rank correlation of
the uncertainty with |error| in the brain (does σ point at the errors?).

    python -m benchmarks.heldout_montage --model runs/mrsynth-default/bundle \
        --cases-only brats-gli-00001,ms-ljubljana-p26 --montage docs/images/heldout-montage.png \
        --json docs/measurements/heldout-montage.json

``--model runs/real-eval/folds/{case}`` shows each case with the regression fold that never saw it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.real_eval import DEFAULT_CASES, DEFAULT_TASKS, parse_tasks


def case_rows(model: str, case_dir: Path, tasks, samples: int, seed: int = 0) -> list[dict]:
    """Synthesize every task the case answers; returns rows with images (SimpleITK) and scores."""
    from MRSynthLib.files.imageio import image_to_array, load_input
    from MRSynthLib.quality.metrics import brain_selection, evaluate_images, normalised_error, rank_correlation, sharpness_ratio
    from MRSynthLib.synthesis import synthesize

    files = {p.name.split(".")[0]: p for p in case_dir.iterdir() if p.name.endswith((".nii.gz", ".nii"))}
    mask_path = files.get("brainmask")
    rows = []
    for task in tasks:
        if task.target not in files or not all(c in files for c in task.inputs):
            continue
        started = time.perf_counter()
        result = synthesize({c: files[c] for c in task.inputs}, task.target, model=model, samples=samples, seed=seed)
        seconds = time.perf_counter() - started
        real = load_input(files[task.target], task.target)
        mask_image = load_input(mask_path, "brainmask") if mask_path else None
        scores = evaluate_images(real, result.synthetic, brain_mask=mask_image)
        real_array, synthetic_array = image_to_array(real), image_to_array(result.synthetic)
        brain = brain_selection(real_array, image_to_array(mask_image) if mask_image is not None else None)
        error = normalised_error(real_array, synthetic_array, brain)
        row = {"case": case_dir.name, "task": task.label, "target": task.target, "inputs": list(task.inputs),
               "psnr": scores["brain"]["psnr"], "ssim": scores["brain"]["ssim"],
               "sharpness": sharpness_ratio(real_array, synthetic_array, brain),
               "seconds": round(seconds, 1), "samples": samples}
        if result.uncertainty is not None:
            sigma = image_to_array(result.uncertainty)
            row["spearman_sigma_error"] = rank_correlation(sigma[brain], error[brain])
        row["_images"] = {"inputs": {c: load_input(files[c], c) for c in task.inputs}, "synthetic": result.synthetic,
                          "real": real, "error": _like(error.astype(np.float32), real),
                          "uncertainty": result.uncertainty,
                          "contribution": result.contributions.get(task.inputs[0])}
        rows.append(row)
    return rows


def _like(array: np.ndarray, reference):
    from MRSynthLib.files.imageio import array_to_image

    return array_to_image(array, reference)


def montage_rows(rows: list[dict]) -> list[list[tuple]]:
    """Montage rows: inputs | synthetic | real | |error| | uncertainty | contribution of the first input."""
    out = []
    width = max(len(r["inputs"]) for r in rows)
    for row in rows:
        images = row["_images"]
        tiles = [(f"{row['case'][:18]} {c}", img, None) for c, img in images["inputs"].items()]
        tiles += [("", None, None)] * (width - len(tiles))
        tiles += [(f"{row['target']} synthetic", images["synthetic"], None), (f"{row['target']} real", images["real"], None),
                  ("|error| (0-0.5)", images["error"], (0.0, 0.5)),
                  ("uncertainty", images["uncertainty"], None) if images["uncertainty"] is not None else ("", None, None),
                  (f"{row['inputs'][0]} contribution", images["contribution"], (0.0, 1.0))
                  if images["contribution"] is not None else ("", None, None)]
        out.append(tiles)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.heldout_montage", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True,
                        help="bundle name or folder; `{case}` in it is replaced by each case id (e.g. the leave-one-"
                             "case-out folds of benchmarks.real_eval: runs/real-eval/folds/{case})")
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    parser.add_argument("--cases-only", required=True, help="comma-separated held-out case ids")
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--montage", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from MRSynthLib.quality.montage import save_montage

    rows = []
    for case in filter(None, args.cases_only.split(",")):
        case_dir = args.cases / case
        if not case_dir.is_dir():
            print(f"heldout_montage: case folder {case_dir} does not exist: check --cases and --cases-only", file=sys.stderr)
            return 2
        model = args.model.replace("{case}", case)
        for row in case_rows(model, case_dir, parse_tasks(args.tasks), args.samples):
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}), flush=True)
    if not rows:
        print("heldout_montage: no listed case answers any task", file=sys.stderr)
        return 2
    if args.montage:
        args.montage.parent.mkdir(parents=True, exist_ok=True)
        save_montage(montage_rows(rows), args.montage, overwrite=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], indent=1)
                             + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
