"""Compare the translator kinds on held-out phantoms and write the table of ``docs/METHODS.md``.

    python -m training.methods_table --train    # trains the missing models first (each <= 10 min), then compares

Models: the built-in fusion bundle ``mrsynth-phantom-fsq`` and the bundles of the ``phantom-methods-*``
configs (run folders ``runs/methods/<kind>``, bundles ``runs/methods/bundles/<kind>``), all on the same
frozen autoencoder.
Each held-out phantom (seeds never used in training, generated at 1.5 mm so resampling and its inverse
are exercised) is synthesized through :func:`MRSynthLib.synthesis.synthesize` exactly as ``mrsynth
synthesize`` does, on both backends, for every task a model supports, and scored with
:mod:`MRSynthLib.metrics` (brain and tumour region). Uncertainty calibration: Spearman correlation
between the voxel-wise std of ``samples`` passes and the absolute error (brain voxels), and the mean
absolute error per quintile of the std (pooled over cases and tasks). The Markdown table replaces the
text between the markers in the output file.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEEDS = (910, 911, 912)  # disjoint from training (phantom seeds >= 1000) and validate.py's (900-902)
CASE_SIZE = (128, 150, 128)
CASE_SPACING = (1.5, 1.5, 1.5)
TASKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("t1ce", ("t1",)),
    ("t1ce", ("t1", "t2", "flair")),
    ("flair", ("t2",)),
    ("flair", ("t1", "t2")),
)
ROOT = Path("runs/methods")
MODELS = (  # (label, built-in bundle name, or the suffix of a phantom-methods-<suffix> config)
    ("fusion", "mrsynth-phantom-fsq"),
    ("ldm", "ldm"),
    ("targetcode", "targetcode"),
    ("cyclegan t1->t1ce", "cyclegan-t1-t1ce"),
    ("cyclegan t2->flair", "cyclegan-t2-flair"),
)
BACKENDS = ("onnx", "torch")
RESPONSE_TASK = ("flair", ("t1", "t2"))  # contribution check: t2 replaced by noise

BINS = 5
START, END = "<!-- methods-table:start -->", "<!-- methods-table:end -->"


@dataclass
class Score:
    """One (model, task, case) on one backend."""

    model: str
    task: str
    seed: int
    backend: str
    brain_psnr: float
    brain_ssim: float
    tumour_psnr: float | None
    tumour_ssim: float | None
    spearman: float | None
    wall_s: float
    cpu_s: float | None


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties) of two 1-D arrays."""
    def ranks(values: np.ndarray) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        sorted_values = values[order]
        out = np.empty(len(values), np.float64)
        starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
        ends = np.r_[starts[1:], len(values)]
        for s, e in zip(starts, ends):
            out[order[s:e]] = (s + e - 1) / 2.0
        return out

    ra, rb = ranks(np.asarray(a, np.float64)), ranks(np.asarray(b, np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def error_by_uncertainty(std: np.ndarray, error: np.ndarray, bins: int = BINS) -> list[tuple[float, float]]:
    """``(mean std, mean |error|)`` per quantile bin of ``std`` (equal voxel counts, lowest std first)."""
    order = np.argsort(std, kind="stable")
    return [(float(std[idx].mean()), float(error[idx].mean())) for idx in np.array_split(order, bins)]


def is_builtin(source: str) -> bool:
    return source.startswith("mrsynth-")


def train_missing(models=MODELS, root: Path = ROOT) -> None:
    """Train (stage 2 only, on the built-in bundle's frozen autoencoder) and export every missing model."""
    from training.cli import main as train_main

    for _, source in models:
        if is_builtin(source) or (root / "bundles" / source).is_dir():
            continue
        arguments = ["--config", f"phantom-methods-{source}", "--run-dir", str(root / source), "--quiet"]
        if train_main(["stage2", *arguments]) != 0:
            raise SystemExit(f"methods_table: training phantom-methods-{source} failed")
        if train_main(["export", *arguments, "--output", str(root / "bundles" / source), "--overwrite"]) != 0:
            raise SystemExit(f"methods_table: exporting phantom-methods-{source} failed")


def _load(bundle, backend: str, threads: int) -> None:
    """Load the bundle's engine into the per-process cache exactly as ``synthesize`` will ask for it."""
    from MRSynthLib.translator_engines import is_translator_method

    if is_translator_method(bundle.card.method):
        from MRSynthLib.translator_engines import load_engine
    else:
        from MRSynthLib.backends import load_engine
    load_engine(bundle, backend, "auto", threads)


def training_record(run_dir: Path, card) -> dict:
    """Steps trained, wall minutes of the training loop (its validations included) and the exported
    checkpoint's step, from the run's logs and the bundle's card."""
    folder = next(run_dir.glob("stage2_*"), None)
    if folder is None or not (folder / "metrics.csv").exists():
        return {}
    with open(folder / "metrics.csv", newline="") as stream:
        last = list(csv.DictReader(stream))[-1]
    with open(folder / "validation.csv", newline="") as stream:
        final = list(csv.DictReader(stream))[-1]
    return {"steps": int(last["step"]), "minutes": round(float(final["seconds"]) / 60, 1),
            "best_step": card.provenance.get("stage2_best_step")}


def training_records(models=MODELS, root: Path = ROOT) -> dict:
    from MRSynthLib.bundle import load_bundle

    return {label: training_record(root / source, load_bundle(root / "bundles" / source).card)
            for label, source in models if not is_builtin(source)}


def evaluate(models=MODELS, tasks=TASKS, seeds=SEEDS, samples: int = 4, threads: int = 2, backends=BACKENDS,
             root: Path = ROOT, other_backend_cases: int = 1, progress=print) -> dict:
    """Run every (model, task, case) on the first backend and the first ``other_backend_cases`` cases of
    each task on the others (timing and agreement); returns per-run scores, the calibration curve data and
    the largest difference between the backends' synthetic images."""
    from MRSynthLib.bundle import load_bundle
    from MRSynthLib.evaluation import absolute_error_image
    from MRSynthLib.imageio import image_to_array, read_image
    from MRSynthLib.metrics import evaluate_images
    from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case
    from MRSynthLib.registry import resolve_model
    from MRSynthLib.synthesis import synthesize

    scores: list[Score] = []
    curves: dict[str, tuple[list, list]] = {}
    parity: dict[str, float] = {}
    trained: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases = {}
        for seed in seeds:
            config = PhantomConfig(size=CASE_SIZE, spacing=CASE_SPACING, seed=seed, tumour=True, ms_lesions=3,
                                   field_strength=1.5 if seed % 2 else 3.0)
            cases[seed] = write_phantom_case(generate_phantom(config), Path(tmp) / f"case{seed}")
        for label, source in models:
            bundle = resolve_model(source) if is_builtin(source) else load_bundle(root / "bundles" / source)
            trained[label] = {} if is_builtin(source) else training_record(root / source, bundle.card)
            card = bundle.card
            usable = [(t, i) for t, i in tasks if t in card.output_contrasts and set(i) <= set(card.input_contrasts)]
            synthetic: dict[tuple, np.ndarray] = {}
            for backend in backends:
                _load(bundle, backend, threads)  # model loading stays out of the timings
                for target, inputs in usable:
                    task = f"{target} <- {'+'.join(inputs)}"
                    for seed, folder in list(cases.items())[:None if backend == backends[0] else other_backend_cases]:
                        progress(f"{label} {backend} {task} seed {seed}")
                        files = {c: folder / f"{c}.nii.gz" for c in inputs}
                        wall, cpu = time.perf_counter(), time.process_time()
                        result = synthesize(files, target, model=bundle, samples=samples, seed=0, backend=backend,
                                            threads=threads, contributions=False)
                        cpu = time.process_time() - cpu
                        wall = sum(v for k, v in result.timings.items() if k != "load_model")
                        truth = read_image(folder / f"{target}.nii.gz")
                        mask = read_image(folder / "brainmask.nii.gz")
                        report = evaluate_images(truth, result.synthetic, brain_mask=mask,
                                                 label_map=read_image(folder / "labels.nii.gz"))
                        tumour = report.get("regions", {}).get("tumour", {})
                        rho = None
                        if result.uncertainty is not None:
                            brain = image_to_array(mask) > 0
                            error = image_to_array(absolute_error_image(truth, result.synthetic, mask))[brain]
                            std = image_to_array(result.uncertainty)[brain]
                            rho = spearman(std, error)
                            if backend == backends[0]:
                                curve = curves.setdefault(label, ([], []))
                                curve[0].append(std)
                                curve[1].append(error)
                        scores.append(Score(label, task, seed, backend, report["brain"]["psnr"], report["brain"]["ssim"],
                                            tumour.get("psnr"), tumour.get("ssim"), rho, wall, cpu))
                        array = image_to_array(result.synthetic)
                        key = (task, seed)
                        if key in synthetic:
                            difference = np.abs(array - synthetic[key]).max() / max(np.abs(synthetic[key]).max(), 1e-6)
                            parity[label] = max(parity.get(label, 0.0), float(difference))
                        else:
                            synthetic[key] = array
        response = contribution_response(models, cases[seeds[0]], Path(tmp), root, threads, progress)
    binned = {label: error_by_uncertainty(np.concatenate(s), np.concatenate(e)) for label, (s, e) in curves.items()}
    return {"scores": [s.__dict__ for s in scores], "calibration_curve": binned, "backend_parity": parity,
            "training": trained, "samples": samples, "threads": threads, "seeds": list(seeds),
            "case": {"size": list(CASE_SIZE), "spacing": list(CASE_SPACING)}, "contribution_response": response}


def contribution_response(models, folder: Path, tmp: Path, root: Path, threads: int, progress) -> dict:
    """Mean contribution of t2 in the brain for flair <- t1+t2, with the true t2 and with t2 replaced by
    uniform noise of the same intensity range (onnx backend, one sample), per model that takes the task."""
    import SimpleITK as sitk

    from MRSynthLib.bundle import load_bundle
    from MRSynthLib.imageio import image_to_array, read_image
    from MRSynthLib.registry import resolve_model
    from MRSynthLib.synthesis import synthesize

    target, inputs = RESPONSE_TASK
    t2 = read_image(folder / "t2.nii.gz")
    brain = image_to_array(read_image(folder / "brainmask.nii.gz")) > 0
    values = image_to_array(t2)
    noise = np.random.default_rng(0).uniform(0, np.percentile(values[brain], 99), values.shape).astype(np.float32)
    noisy = sitk.GetImageFromArray(noise)
    noisy.CopyInformation(t2)
    sitk.WriteImage(noisy, str(tmp / "t2_noise.nii.gz"))
    out = {}
    for label, source in models:
        bundle = resolve_model(source) if is_builtin(source) else load_bundle(root / "bundles" / source)
        if target not in bundle.card.output_contrasts or not set(inputs) <= set(bundle.card.input_contrasts):
            continue
        shares = []
        for t2_file in (folder / "t2.nii.gz", tmp / "t2_noise.nii.gz"):
            progress(f"{label} contributions, t2 = {t2_file.name}")
            result = synthesize({"t1": folder / "t1.nii.gz", "t2": t2_file}, target, model=bundle, backend="onnx",
                                threads=threads)
            shares.append(float(image_to_array(result.contributions["t2"])[brain].mean()))
        out[label] = {"t2_true": shares[0], "t2_noise": shares[1]}
    return out


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def _cell(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def markdown(summary: dict) -> str:
    """The tables: quality and calibration per (task, model); time per backend; the binned curve."""
    scores = summary["scores"]
    first = scores[0]["backend"]  # quality is scored on the first backend (the other agrees within its parity)
    lines = ["| task (target <- inputs) | model | brain PSNR dB | brain SSIM | tumour PSNR dB | tumour SSIM | "
             "Spearman(std, \\|err\\|) |", "|---|---|---|---|---|---|---|"]
    tasks = list(dict.fromkeys(s["task"] for s in scores))
    models = list(dict.fromkeys(s["model"] for s in scores))
    for task in tasks:
        for model in models:
            rows = [s for s in scores if s["task"] == task and s["model"] == model and s["backend"] == first]
            if not rows:
                continue
            lines.append(f"| {task} | {model} | {_cell(_mean(r['brain_psnr'] for r in rows), '{:.2f}')} | "
                         f"{_cell(_mean(r['brain_ssim'] for r in rows), '{:.3f}')} | "
                         f"{_cell(_mean(r['tumour_psnr'] for r in rows), '{:.2f}')} | "
                         f"{_cell(_mean(r['tumour_ssim'] for r in rows), '{:.3f}')} | "
                         f"{_cell(_mean(r['spearman'] for r in rows), '{:+.3f}')} |")
    backends = list(dict.fromkeys(s["backend"] for s in scores))
    lines += ["", "| model | training (steps, loop minutes, exported step) | "
              + " | ".join(f"{b}: s/volume (wall, CPU)" for b in backends) + " | torch vs onnx max rel. diff |",
              "|---|---|" + "---|" * len(backends) + "---|"]
    for model in models:
        record = summary["training"].get(model) or {}
        training = (f"{record['steps']} steps, {record['minutes']} min, exported step {record['best_step']}"
                    if record else "built-in, see docs/MODELS.md")
        cells = []
        for backend in backends:
            rows = [s for s in scores if s["model"] == model and s["backend"] == backend]
            cells.append(f"{_cell(_mean(r['wall_s'] for r in rows), '{:.1f}')}, "
                         f"{_cell(_mean(r['cpu_s'] for r in rows), '{:.1f}')}")
        parity = summary["backend_parity"].get(model)
        lines.append(f"| {model} | {training} | " + " | ".join(cells) + f" | {_cell(parity, '{:.1e}')} |")
    lines += ["", "Mean absolute error per quintile of the uncertainty (brain voxels of every case and task; "
              "each cell: mean std / mean \\|error\\|, lowest std first):", "",
              "| model | " + " | ".join(f"q{i + 1}" for i in range(BINS)) + " |", "|---|" + "---|" * BINS]
    for model, curve in summary["calibration_curve"].items():
        lines.append(f"| {model} | " + " | ".join(f"{s:.3f} / {e:.3f}" for s, e in curve) + " |")
    response = summary.get("contribution_response") or {}
    if response:
        target, inputs = RESPONSE_TASK
        lines += ["", f"Mean contribution of t2 in the brain for {target} <- {'+'.join(inputs)} (first case), with the "
                  "true t2 and with t2 replaced by uniform noise:", "",
                  "| model | t2 true | t2 = noise |", "|---|---|---|"]
        for model, shares in response.items():
            lines.append(f"| {model} | {shares['t2_true']:.3f} | {shares['t2_noise']:.3f} |")
    return "\n".join(lines)


def replace_between_markers(text: str, table: str) -> str:
    """Put ``table`` between :data:`START` and :data:`END` in ``text`` (appended when they are absent)."""
    block = f"{START}\n{table}\n{END}"
    if START in text and END in text:
        return text[:text.index(START)] + block + text[text.index(END) + len(END):]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.methods_table", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("docs/METHODS.md"), help="Markdown file to update")
    parser.add_argument("--json", type=Path, default=Path("runs/methods/table.json"), help="raw results")
    parser.add_argument("--samples", type=int, default=4, help="stochastic passes / diffusion samples per synthesis")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train", action="store_true", help="first train and export the models that are missing")
    parser.add_argument("--render-only", action="store_true", help="rewrite the table from --json (no synthesis)")
    args = parser.parse_args(argv)
    if args.render_only:
        summary = json.loads(args.json.read_text())
        summary["training"] = training_records()
        return _write(summary, args)
    if args.train:
        train_missing()
    missing = [source for _, source in MODELS if not is_builtin(source) and not (ROOT / "bundles" / source).is_dir()]
    if missing:
        print(f"methods_table: missing bundles {missing} under {ROOT / 'bundles'}: add --train.", file=sys.stderr)
        return 2
    summary = evaluate(samples=args.samples, threads=args.threads, progress=lambda m: print(m, file=sys.stderr))
    return _write(summary, args)


def _write(summary: dict, args) -> int:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=1, default=float) + "\n")
    table = markdown(summary)
    text = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    args.output.write_text(replace_between_markers(text, table), encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
