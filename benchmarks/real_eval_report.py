"""Markdown report of :mod:`benchmarks.real_eval`: protocol, summary per task and model, every case."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

METRICS = ("psnr", "ssim", "mae")
SECONDARY_WHY = ("Why a second protocol: the default one maps each volume's own 99.5th brain percentile to 1. In a "
                 "post-contrast T1 that percentile is set by the brightest few voxels (vessels, enhancement), so a "
                 "prediction that renders them less bright is scaled differently from the reference and loses PSNR "
                 "and MAE even where its tissue contrast is right. Z-scores use the mean and standard deviation instead.")
DIGITS = {"psnr": 2, "ssim": 3, "mae": 4}
HEADER_SUMMARY = ("| task | model | cases | brain PSNR (dB) | brain SSIM | brain MAE | lesion cases | lesion PSNR (dB) "
                  "| lesion SSIM | lesion MAE |\n|---|---|---|---|---|---|---|---|---|---|")


def git_revision() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def rerendered(record: dict) -> str:
    """A note when the report was rewritten from the JSON of an earlier run."""
    return f"; this text re-rendered from its results JSON at git `{record['rendered_at']}`" if "rendered_at" in record else ""


def mean_sd(values: list[float | None], digits: int) -> str:
    """``"m ± sd"`` over the finite values (``"m"`` for one value, ``"–"`` for none)."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return "–"
    if len(finite) == 1:
        return f"{finite[0]:.{digits}f}"
    return f"{np.mean(finite):.{digits}f} ± {np.std(finite, ddof=1):.{digits}f}"


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def summary_rows(results, protocol: str | None = None) -> list[str]:
    """One row per (task, model): mean ± sd over cases in the brain and in lesions (default protocol, or the
    secondary ``protocol``)."""
    rows = []
    keys = []
    for item in results:
        key = (item.task.label, item.model)
        if key not in keys:
            keys.append(key)
    for label, model in keys:
        items = [r for r in results if r.task.label == label and r.model == model]
        scores = [r.secondary[protocol] if protocol else {"brain": r.brain, "regions": r.regions} for r in items]
        lesions = [s["regions"]["lesion"] for s in scores if "lesion" in s["regions"]]
        cells = [label, f"`{model}`", str(len(items))]
        cells += [mean_sd([s["brain"][m] for s in scores], DIGITS[m]) for m in METRICS]
        cells.append(str(len(lesions)))
        cells += [mean_sd([x[m] for x in lesions], DIGITS[m]) for m in METRICS]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def case_rows(results) -> list[str]:
    rows = []
    for item in sorted(results, key=lambda r: (r.task.label, r.case, r.model)):
        lesion = item.regions.get("lesion", {})
        cells = [item.task.label, item.case, f"`{item.model}`"]
        cells += [_fmt(item.brain[m], DIGITS[m]) for m in METRICS]
        cells += [_fmt(lesion.get(m), DIGITS[m]) for m in METRICS]
        cells.append(f"{item.seconds:.0f}")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def regression_details(info: dict) -> str:
    """One paragraph on the baseline's features, learner and training sources (when the record has them)."""
    if "regression" not in info:
        return ""
    settings, features = info["regression"], info["regression"]["features"]
    smoothing = ", ".join(f"{s:g}" for s in features["smoothing_mm"])
    edge = "; plus the distance to the brain edge" if features["mask_distance"] else ""
    return (f" Features of each input, at {info['spacing_mm'][0]:g} mm: intensity, Gaussian-smoothed intensity at "
            f"{smoothing} mm (mask-normalised) and gradient magnitude at {features['gradient_mm']:g} mm{edge}. "
            f"Learner: scikit-learn HistGradientBoostingRegressor (loss {settings['loss']}, at most "
            f"{settings['max_iter']} trees of {settings['max_leaf_nodes']} leaves, learning rate "
            f"{settings['learning_rate']:g}, early stopping {settings['early_stopping']}), "
            f"{settings['samples_per_case']} foreground voxels per case (times the source weight), one regressor per "
            f"evaluated task, trained when at least {settings.get('min_cases', 1)} training cases have it"
            + _error_model(settings) + ". Training sources: "
            + "; ".join(f"({i}) {text}" for i, text in enumerate(info["sources"], start=1)) + ".")


def _error_model(settings: dict) -> str:
    error = settings.get("error_model") or {}
    if not error.get("folds"):
        return ""
    return (f"; uncertainty: an error model per regressor ({error['max_iter']} trees of {error['max_leaf_nodes']} "
            f"leaves on the {error['folds']}-fold out-of-fold absolute residuals of the fold's training cases)")


def skipped_lines(skipped: list[dict]) -> list[str]:
    """A note on (model, task) pairs a model's card does not offer, if any."""
    pairs = sorted({(s["model"], s["task"]) for s in skipped})
    if not pairs:
        return []
    return ["Not evaluated (the model does not offer the task): "
            + "; ".join(f"`{model}` {task}" for model, task in pairs) + ".", ""]


def secondary_lines(results, record: dict) -> list[str]:
    """A summary table per secondary protocol, with its exact description."""
    lines = []
    for name, protocol in record.get("secondary_protocols", {}).items():
        lines += [f"### Secondary protocol: {name}", "", SECONDARY_WHY, "", f"Exact protocol: {protocol['description']}", "",
                  HEADER_SUMMARY, *summary_rows(results, name), ""]
    return lines


def _passes(results) -> str:
    """How the syntheses ran: one deterministic pass, or N samples with an uncertainty map for some models."""
    sampled = {}
    for item in results:
        if getattr(item, "uncertainty", None):
            sampled.setdefault(item.model, set()).add(item.uncertainty["samples"])
    if not sampled:
        return "one deterministic pass"
    listed = ", ".join(f"`{m}` with {'/'.join(map(str, sorted(n)))} samples" for m, n in sampled.items())
    return f"one deterministic pass, except {listed} and its uncertainty map"


def uncertainty_lines(results) -> list[str]:
    """Spearman(sigma, |error|) per (task, model) and per case, when the run scored uncertainty maps."""
    scored = [r for r in results if getattr(r, "uncertainty", None)]
    if not scored:
        return []
    lines = ["## Uncertainty: does sigma point at the errors?", "",
             "For the models below, synthesized with their uncertainty map (the image scores above are of that "
             "synthesis): Spearman's rank correlation of sigma with "
             "|error| (default protocol) over the brain voxels of each case. Goal (issue 13): >= 0.3.", "",
             "| task | model | cases | Spearman(sigma, abs error) mean | per case |", "|---|---|---|---|---|"]
    keys = []
    for item in scored:
        if (item.task.label, item.model) not in keys:
            keys.append((item.task.label, item.model))
    for label, model in keys:
        items = [r for r in scored if r.task.label == label and r.model == model]
        values = [r.uncertainty["spearman"] for r in items]
        per_case = ", ".join(f"{r.case} {r.uncertainty['spearman']:+.3f}" for r in items)
        lines.append(f"| {label} | `{model}` | {len(items)} | {mean_sd(values, 3)} | {per_case} |")
    return lines + [""]


def render_report(results, record: dict) -> str:
    """The whole Markdown document."""
    models = record["models"]
    model_lines = []
    for name, info in models.items():
        if name == "regression":
            model_lines.append(
                f"- `regression`: the classical baseline (per-voxel gradient-boosted trees, `MRSynthLib.methods.regression`), "
                f"**retrained for every held-out case** from config `{info['config']}` on all other cases of that "
                f"config (real cases of the folder plus its phantoms); the held-out case is never in its training set."
                + regression_details(info))
        else:
            model_lines.append(f"- `{name}` {info.get('version', '')} ({info.get('method', '')}), sha256 "
                               f"{info.get('sha256', '')[:12]}: evaluated as shipped.")
    header_cases = ("| task | case | model | brain PSNR | brain SSIM | brain MAE | lesion PSNR | lesion SSIM "
                    "| lesion MAE | seconds |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [
        "# Real-data evaluation (leave-one-case-out)",
        "",
        f"Produced by `{record['command']}` at git `{record.get('git', 'unrecorded')}` on "
        f"{record.get('date', 'an unrecorded date')} "
        f"({record['seconds']:.0f} s on this machine){rerendered(record)}. Cases: `{record['cases_dir']}` "
        f"({len(record['cases'])}: {', '.join(record['cases'])}); each is used only for the tasks whose contrasts it "
        "has. Development data only, under their own terms (see the data folder's README); nothing of them is in "
        "the repository.",
        "",
        "## Protocol",
        "",
        "Each model synthesizes the target from the case's own files through `MRSynthLib.synthesis.synthesize` "
        "(the first input listed is the reference grid; the bundle's own model-space preprocessing; "
        + _passes(results) + ") and the output, on the target's grid, is compared with the acquired target by "
        "`MRSynthLib.quality.metrics.evaluate_images`. Brain: the case's `brainmask` file when it has one, else the "
        "reference foreground. Lesion: every nonzero voxel of the case's label file (MS lesion masks), only for "
        "cases that have one.",
        "",
        f"Normalisation and metrics (exact protocol): {record['protocol']['description']}",
        "",
        "Models:",
        "",
        *model_lines,
        "",
        "## Summary, default protocol (mean ± sample standard deviation over cases)",
        "",
        HEADER_SUMMARY,
        *summary_rows(results),
        "",
        *skipped_lines(record.get("skipped", [])),
        *secondary_lines(results, record),
        *uncertainty_lines(results),
        "## Every case (default protocol)",
        "",
        header_cases,
        *case_rows(results),
        "",
    ]
    return "\n".join(lines)


__all__ = ["case_rows", "mean_sd", "render_report", "summary_rows", "uncertainty_lines"]
