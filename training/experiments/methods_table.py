"""Compare the translator kinds, or the seed methods, on held-out phantoms and write a table of ``docs/METHODS.md``.

    python -m training.experiments.methods_table --train                # translator kinds (issue 4), each model <= 10 min
    python -m training.experiments.methods_table --set seed --train     # seed methods + regression baseline (issue 7), 6 min

Models (``--set kinds``): the built-in fusion bundle ``mrsynth-phantom-fsq`` and the bundles of the
``phantom-methods-*`` configs; (``--set seed``): the regression baseline (``regression-phantom-methods``), the
built-in fusion bundle and the ``<method>-phantom-methods`` configs of MSG-LDM, VQ-Seq2Seq, SSCF and 3D-WLDM.
Run folders ``runs/methods/<source>``, bundles ``runs/methods/bundles/<source>``; the networks all use the same
frozen autoencoder.
Each held-out phantom (seeds never used in training, generated at 1.5 mm so resampling and its inverse
are exercised) is synthesized through :func:`MRSynthLib.synthesis.synthesize` exactly as ``mrsynth
synthesize`` does, on both backends, for every task a model supports, and scored with
:mod:`MRSynthLib.quality.metrics` (brain and tumour region). Uncertainty calibration: Spearman correlation
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

from training.config import CONFIG_DIR
from training.kinds import TRAIN_KINDS

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
SEED_MODELS = (  # (label, built-in bundle name, or the <source> of a <source>-phantom-methods config)
    ("regression baseline", "regression"),
    ("RSF fusion (built-in)", "mrsynth-phantom-fsq"),
    # every registered kind that has a `<kind>-phantom-methods` config (a new kind joins by bringing one)
    *((kind.label or name, name) for name, kind in TRAIN_KINDS.items()
      if (CONFIG_DIR / f"{name}-phantom-methods.yaml").exists()),
)
BACKENDS = ("onnx", "torch")


@dataclass(frozen=True)
class ModelSet:
    """One comparison: its models, how their configs are named, the backends it runs, where its table goes."""

    name: str
    models: tuple[tuple[str, str], ...]
    config_pattern: str  # str.format pattern of the training config name, {source}
    backends: tuple[str, ...]
    markers: tuple[str, str]
    json: Path

    def config(self, source: str) -> str:
        return self.config_pattern.format(source=source)


MODEL_SETS = {
    "kinds": ModelSet("kinds", MODELS, "phantom-methods-{source}", BACKENDS,
                      ("<!-- methods-table:start -->", "<!-- methods-table:end -->"), Path("runs/methods/table.json")),
    # seed methods: "auto" = onnxruntime where the bundle has ONNX graphs (the CPU default), else torch
    "seed": ModelSet("seed", SEED_MODELS, "{source}-phantom-methods", ("auto",),
                     ("<!-- seed-methods-table:start -->", "<!-- seed-methods-table:end -->"),
                     Path("runs/methods/seed-table.json")),
}
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
    engine: str = ""  # the backend that ran (``backend`` may be "auto")


def error_by_uncertainty(std: np.ndarray, error: np.ndarray, bins: int = BINS) -> list[tuple[float, float]]:
    """``(mean std, mean |error|)`` per quantile bin of ``std`` (equal voxel counts, lowest std first)."""
    order = np.argsort(std, kind="stable")
    return [(float(std[idx].mean()), float(error[idx].mean())) for idx in np.array_split(order, bins)]


def is_builtin(source: str) -> bool:
    return source.startswith("mrsynth-")


def train_missing(model_set: ModelSet = MODEL_SETS["kinds"], root: Path = ROOT) -> None:
    """Train (stage 2 only, on the built-in bundle's frozen autoencoder) and export every missing model;
    the regression baseline trains and exports in one command."""
    from training.cli import main as train_main

    for _, source in model_set.models:
        if is_builtin(source) or (root / "bundles" / source).is_dir():
            continue
        config = model_set.config(source)
        arguments = ["--config", config, "--run-dir", str(root / source), "--quiet"]
        output = ["--output", str(root / "bundles" / source), "--overwrite"]
        if source == "regression":
            if train_main(["regression", *arguments, *output]) != 0:
                raise SystemExit(f"methods_table: training {config} failed")
            continue
        if train_main(["stage2", *arguments]) != 0:
            raise SystemExit(f"methods_table: training {config} failed")
        if train_main(["export", *arguments, *output]) != 0:
            raise SystemExit(f"methods_table: exporting {config} failed")


def _load(bundle, backend: str, threads: int) -> None:
    """Load the bundle's engine into the per-process cache exactly as ``synthesize`` will ask for it."""
    from MRSynthLib.methods.translators.engines import is_translator_method

    if bundle.card.method == "regression":
        from MRSynthLib.methods.regression import load_engine
    elif is_translator_method(bundle.card.method):
        from MRSynthLib.methods.translators.engines import load_engine
    else:
        from MRSynthLib.runtime.backends import load_engine
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
    """Training record per trained (non built-in) model label."""
    from MRSynthLib.models.bundle import load_bundle

    return {label: training_record(root / source, load_bundle(root / "bundles" / source).card)
            for label, source in models if not is_builtin(source)}


def evaluate(models=MODELS, tasks=TASKS, seeds=SEEDS, samples: int = 4, threads: int = 2, backends=BACKENDS,
             root: Path = ROOT, other_backend_cases: int = 1, progress=print) -> dict:
    """Run every (model, task, case) on the first backend and the first ``other_backend_cases`` cases of
    each task on the others (timing and agreement); returns per-run scores, the calibration curve data and
    the largest difference between the backends' synthetic images."""
    from MRSynthLib.models.bundle import load_bundle
    from MRSynthLib.quality.evaluation import absolute_error_image
    from MRSynthLib.files.imageio import image_to_array, read_image
    from MRSynthLib.quality.metrics import evaluate_images, rank_correlation
    from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case
    from MRSynthLib.models.registry import resolve_model
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
                        result = synthesize(files, target, model=bundle, seed=0, backend=backend,
                                            samples=1 if card.method == "regression" else samples,  # trees: no std
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
                            rho = rank_correlation(std, error)
                            if backend == backends[0]:
                                curve = curves.setdefault(label, ([], []))
                                curve[0].append(std)
                                curve[1].append(error)
                        scores.append(Score(label, task, seed, backend, report["brain"]["psnr"], report["brain"]["ssim"],
                                            tumour.get("psnr"), tumour.get("ssim"), rho, wall, cpu,
                                            result.provenance["backend"]))
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
            "case": {"size": list(CASE_SIZE), "spacing": list(CASE_SPACING)}, "contribution_response": response,
            "sources": {label: source for label, source in models}}


def contribution_response(models, folder: Path, tmp: Path, root: Path, threads: int, progress) -> dict:
    """Mean contribution of t2 in the brain for flair <- t1+t2, with the true t2 and with t2 replaced by
    uniform noise of the same intensity range (auto backend, one sample), per model that takes the task."""
    import SimpleITK as sitk

    from MRSynthLib.models.bundle import load_bundle
    from MRSynthLib.files.imageio import array_to_image, image_to_array, read_image
    from MRSynthLib.models.registry import resolve_model
    from MRSynthLib.synthesis import synthesize

    target, inputs = RESPONSE_TASK
    t2 = read_image(folder / "t2.nii.gz")
    brain = image_to_array(read_image(folder / "brainmask.nii.gz")) > 0
    values = image_to_array(t2)
    noise = np.random.default_rng(0).uniform(0, np.percentile(values[brain], 99), values.shape).astype(np.float32)
    noisy = array_to_image(noise, t2)
    sitk.WriteImage(noisy, str(tmp / "t2_noise.nii.gz"))
    out = {}
    for label, source in models:
        bundle = resolve_model(source) if is_builtin(source) else load_bundle(root / "bundles" / source)
        if target not in bundle.card.output_contrasts or not set(inputs) <= set(bundle.card.input_contrasts):
            continue
        shares = []
        for t2_file in (folder / "t2.nii.gz", tmp / "t2_noise.nii.gz"):
            progress(f"{label} contributions, t2 = {t2_file.name}")
            result = synthesize({"t1": folder / "t1.nii.gz", "t2": t2_file}, target, model=bundle, backend="auto",
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
              + " | ".join(f"{b}: s/volume (wall, CPU)" for b in backends) + (" | torch vs onnx max rel. diff |" if len(backends) > 1 else " | backend used |"),
              "|---|---|" + "---|" * len(backends) + "---|"]
    for model in models:
        record = summary["training"].get(model) or {}
        source = summary.get("sources", {}).get(model, "")
        training = (f"{record['steps']} steps, {record['minutes']} min, exported step {record['best_step']}" if record
                    else "trees, see its card (no step budget)" if source == "regression"
                    else "built-in, see docs/MODELS.md" if is_builtin(source) or not source else "not recorded")
        cells = []
        for backend in backends:
            rows = [s for s in scores if s["model"] == model and s["backend"] == backend]
            cells.append(f"{_cell(_mean(r['wall_s'] for r in rows), '{:.1f}')}, "
                         f"{_cell(_mean(r['cpu_s'] for r in rows), '{:.1f}')}")
        parity = summary["backend_parity"].get(model)
        engines = "+".join(sorted({s.get("engine") or s["backend"] for s in scores if s["model"] == model}))
        last = _cell(parity, '{:.1e}') if len(backends) > 1 else engines
        lines.append(f"| {model} | {training} | " + " | ".join(cells) + f" | {last} |")
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


def replace_between_markers(text: str, table: str, markers: tuple[str, str] = (START, END)) -> str:
    """Put ``table`` between the ``markers`` in ``text`` (appended when they are absent)."""
    start, end = markers
    block = f"{start}\n{table}\n{end}"
    if start in text and end in text:
        return text[:text.index(start)] + block + text[text.index(end) + len(end):]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.experiments.methods_table", description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="model_set", default="kinds", choices=tuple(MODEL_SETS),
                        help="kinds: the translator kinds (issue 4); seed: the seed methods + regression baseline")
    parser.add_argument("--output", type=Path, default=Path("docs/METHODS.md"), help="Markdown file to update")
    parser.add_argument("--json", type=Path, default=None, help="raw results (default: runs/methods/<set>-table.json)")
    parser.add_argument("--samples", type=int, default=4, help="stochastic passes / diffusion samples per synthesis")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train", action="store_true", help="first train and export the models that are missing")
    parser.add_argument("--render-only", action="store_true", help="rewrite the table from --json (no synthesis)")
    args = parser.parse_args(argv)
    model_set = MODEL_SETS[args.model_set]
    args.json = args.json or model_set.json
    args.markers = model_set.markers
    if args.render_only:
        summary = json.loads(args.json.read_text())
        summary["training"] = training_records(model_set.models)
        return _write(summary, args)
    if args.train:
        train_missing(model_set)
    missing = [source for _, source in model_set.models
               if not is_builtin(source) and not (ROOT / "bundles" / source).is_dir()]
    if missing:
        print(f"methods_table: missing bundles {missing} under {ROOT / 'bundles'}: add --train.", file=sys.stderr)
        return 2
    summary = evaluate(model_set.models, samples=args.samples, threads=args.threads, backends=model_set.backends,
                       progress=lambda m: print(m, file=sys.stderr))
    return _write(summary, args)


def _write(summary: dict, args) -> int:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=1, default=float) + "\n")
    table = markdown(summary)
    text = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    args.output.write_text(replace_between_markers(text, table, getattr(args, "markers", (START, END))), encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
