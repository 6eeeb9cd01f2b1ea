"""Real-data evaluation of model bundles, leave-one-case-out: ``python -m benchmarks.real_eval``.

For every case of a co-registered case folder (default ``../shared/data/cases``, plain layout) and
every task it can answer (default: t1ce from {t1, t2, flair}, flair from {t1, t2}, t2 from {t1},
pd from {t2}), each model synthesizes the target from the case's own files through
:func:`MRSynthLib.synthesis.synthesize` (the first input is the reference grid), and the result is
scored against the acquired target with :func:`MRSynthLib.quality.metrics.evaluate_images` (default
:class:`~MRSynthLib.quality.metrics.EvaluationProtocol`) in the brain mask (the case's ``brainmask`` file,
else the reference foreground) and in the lesion region (every nonzero label) where the case has labels.

Models: bundle names or folders, evaluated as they are, and the word ``regression``: the classical
baseline retrained for every held-out case on all the other cases of ``--regression-config`` (leave-one-
case-out; the held-out case is removed from its training set and never seen).

    python -m benchmarks.real_eval --models regression,mrsynth-phantom-fsq --output docs/MODEL_CARD_EVAL.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REGRESSION = "regression"
DEFAULT_TASKS = "t1ce<-t1,t2,flair;flair<-t1,t2;t2<-t1;pd<-t2"
DEFAULT_CASES = Path(__file__).resolve().parents[2] / "shared" / "data" / "cases"
SECONDARY = {"zscore": {"normalisation": "zscore"}}
"""Protocols reported beside the default one (EvaluationProtocol keyword arguments): z-scores do not depend on
the few brightest voxels, which set the default's 99.5th percentile in post-contrast T1 (vessels, enhancement)."""


@dataclass(frozen=True)
class Task:
    """Synthesize ``target`` from exactly ``inputs`` (the first input is the reference grid)."""

    target: str
    inputs: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.target} ← {{{', '.join(self.inputs)}}}"


def case_task_from_dict(item: dict) -> CaseTask:
    """Inverse of :meth:`CaseTask.to_dict`."""
    return CaseTask(item["model"], item["case"], Task(item["target"], tuple(item["inputs"])), item["brain"],
                    item["regions"], item["seconds"], item.get("secondary", {}), item.get("uncertainty"))


def parse_tasks(text: str) -> list[Task]:
    """``"t1ce<-t1,t2,flair;t2<-t1"`` → tasks (contrast aliases allowed)."""
    from MRSynthLib.contrasts import canonical_contrast

    tasks = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        target, sep, inputs = item.partition("<-")
        if not sep or not inputs.strip():
            raise SystemExit(f"--tasks item {item!r} must look like TARGET<-IN1,IN2 (e.g. t1ce<-t1,t2,flair).")
        tasks.append(Task(canonical_contrast(target.strip()),
                          tuple(canonical_contrast(c.strip()) for c in inputs.split(","))))
    return tasks


@dataclass
class CaseTask:
    """One scored synthesis."""

    model: str
    case: str
    task: Task
    brain: dict
    regions: dict
    seconds: float
    secondary: dict = dataclasses.field(default_factory=dict)  # protocol name -> {"brain", "regions"}
    uncertainty: dict | None = None  # {"samples", "spearman", "mean_sigma"} when an uncertainty map was asked for

    def __post_init__(self) -> None:
        # kept as stored in the results JSON, so a report rendered now and one re-rendered from the JSON agree
        # (0.5049 s printed "1" live but "0" from the stored 0.5: the harness test failed on a loaded machine)
        self.seconds = round(float(self.seconds), 2)

    def to_dict(self) -> dict:
        out = {"model": self.model, "case": self.case, "target": self.task.target, "inputs": list(self.task.inputs),
               "brain": self.brain, "regions": self.regions, "seconds": round(self.seconds, 2),
               "secondary": self.secondary}
        if self.uncertainty is not None:
            out["uncertainty"] = self.uncertainty
        return out


class LeaveOneOutRegression:
    """The regression baseline trained once per held-out case on every other case of its config.

    Sources of the config whose ``root`` is the evaluated case folder are the ones the held-out case is
    removed from; their split is reset so that every other case trains (phantoms keep their own split).
    Model-space volumes are cached under ``work_dir/cache`` and each case's voxel samples are computed
    once for all folds.
    """

    def __init__(self, config_name: str, cases_dir: Path, work_dir: Path, log=print, min_cases: int | None = None
                 ) -> None:
        from training.config import SplitConfig

        config = load_regression_config(config_name, min_cases)
        resolved = cases_dir.resolve()
        self.labels = [s.label for s in config.data.sources
                       if s.kind != "phantom" and Path(s.root).expanduser().resolve() == resolved]
        if not self.labels:
            raise SystemExit(f"--regression-config {config_name} has no source with root {cases_dir}: the leave-one-out "
                             f"would hold nothing out; point a plain source's root at the evaluated case folder.")
        data = dataclasses.replace(config.data, split=SplitConfig(val_fraction=0.0, test_fraction=0.0))
        self.config = dataclasses.replace(config, data=data)
        self.work_dir = work_dir
        self.log = log
        self._volumes = None
        self._samples: dict = {}

    def _training_volumes(self):
        if self._volumes is None:
            from training.inputs.data import prepare_data

            data = prepare_data(self.config.data, self.config.preprocessing, self.config.seed,
                                cache_dir=self.work_dir / "cache")
            self._volumes, self._split = data.train, data.split
        return self._volumes

    def bundle_for(self, case: str, tasks: list[Task]) -> Path | None:
        """Train the tasks without ``case`` and export them; returns the bundle folder, or None when the other
        cases support none of the tasks (too few cases have the target: ``regression.min_cases``)."""
        from training.inputs.data import training_data_record
        from training.regression import collect_samples, export_regression_bundle, fit_regressors
        from training.regression_config import RegressionTask

        held_out = {f"{label}/{case}" for label in self.labels}
        volumes = self._training_volumes()
        if not held_out & {v.case_id for v in volumes}:
            raise SystemExit(f"Case {case} is not among the regression training cases {[v.case_id for v in volumes]}: "
                             f"check --cases and the config's source roots.")
        training = [v for v in volumes if v.case_id not in held_out]
        samples = collect_samples(training, self.config, self._samples)
        fitted = fit_regressors(samples, self.config, [RegressionTask(t.target, t.inputs) for t in tasks],
                                log=lambda message: self.log(f"  [{case}] {message}"))
        if not fitted:  # e.g. the only real case with the target is the held-out one
            return None
        record = training_data_record(self.config, self._split)
        record.update(train_cases=len(training), held_out=sorted(held_out),
                      cases=[v.case_id for v in training])
        return export_regression_bundle(self.config, fitted, self.work_dir / "folds" / case, overwrite=True,
                                        training_data=record, validation={})


def load_regression_config(config_name: str, min_cases: int | None = None):
    """The baseline's training config; ``min_cases`` replaces ``regression.min_cases`` (e.g. 4 lets a fold train
    pd from the 4 phantoms alone when the only real pd case is held out)."""
    from training.config import load_config

    config = load_config(config_name)
    if min_cases is not None:
        config = dataclasses.replace(config, regression=dataclasses.replace(config.regression, min_cases=min_cases))
    return config


def describe_regression(config_name: str, min_cases: int | None = None) -> dict:
    """What the leave-one-case-out folds of ``config_name`` are trained on and how (for the report)."""
    from training.inputs.data import describe_source

    config = load_regression_config(config_name, min_cases)
    settings = dataclasses.asdict(config.regression)
    settings.pop("tasks")
    return {"name": REGRESSION, "config": str(config_name), "protocol": "leave-one-case-out",
            "spacing_mm": list(config.preprocessing.spacing), "regression": settings,
            "sources": [describe_source(s, config.preprocessing.spacing)
                        + (f" (source weight {s.weight:g})" if s.kind == "phantom" else "") for s in config.data.sources]}


def supports(bundle, task: Task) -> bool:
    """Whether the bundle's card offers ``task`` (a regression bundle may still lack that exact input set)."""
    card = bundle.card
    return task.target in card.output_contrasts and set(task.inputs) <= set(card.input_contrasts)


def score(case, task: Task, model, model_label: str, keep: Path | None = None, uncertainty_samples: int = 0) -> CaseTask:
    """Synthesize ``task`` for ``case`` (a :class:`MRSynthLib.files.cases.Case`) with ``model`` and score it under the
    default protocol and each of :data:`SECONDARY`; ``keep``: also write the synthetic volume there.

    ``uncertainty_samples`` >= 2: synthesize with that many samples instead of one deterministic pass and also
    score the uncertainty map (Spearman's correlation of sigma with |error| in the brain, default protocol);
    the image scores are then those of that synthesis. Models without an uncertainty map are scored without it.
    """
    import numpy as np
    import SimpleITK as sitk

    from MRSynthLib.errors import NoUncertaintyError
    from MRSynthLib.files.imageio import image_to_array, load_input, read_image, voxel_view
    from MRSynthLib.quality.metrics import EvaluationProtocol, brain_selection, evaluate_images, uncertainty_error_correlation
    from MRSynthLib.preprocessing.registration import resample_onto, same_grid
    from MRSynthLib.synthesis import synthesize

    inputs = {c: case.images[c] for c in task.inputs}
    started = time.perf_counter()
    result = None
    if uncertainty_samples >= 2:
        try:
            result = synthesize(inputs, task.target, model=model, samples=uncertainty_samples)
        except NoUncertaintyError:
            pass  # scored on one deterministic pass, without an uncertainty map
    if result is None:
        result = synthesize(inputs, task.target, model=model, samples=1)
    seconds = time.perf_counter() - started
    reference = load_input(case.images[task.target], f"{case.case_id} {task.target}")
    synthetic = result.synthetic
    if not same_grid(synthetic, reference):  # the target was acquired on another grid than the first input
        synthetic = resample_onto(synthetic, reference, None)
    if keep is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(synthetic, str(keep), True)
    brain = None
    if case.brain_mask is not None:
        brain = resample_onto(sitk.Cast(read_image(case.brain_mask, "brain mask"), sitk.sitkFloat32), reference,
                              None, interpolator="nearest")
    labels, regions = None, None
    if case.labels is not None:
        labels = sitk.Cast(read_image(case.labels, "labels"), sitk.sitkUInt16)
        labels = resample_onto(labels, reference, None, interpolator="nearest")
        values = [int(v) for v in np.unique(voxel_view(labels)) if v != 0]
        regions = {"lesion": values} if values else None
    uncertainty = None
    if result.uncertainty is not None:
        sigma = result.uncertainty
        if not same_grid(sigma, reference):
            sigma = resample_onto(sigma, reference, None)
        reference_array = image_to_array(reference)
        brain_array = brain_selection(reference_array, image_to_array(brain) if brain is not None else None)
        sigma_array = image_to_array(sigma)
        uncertainty = {"samples": uncertainty_samples,
                       "spearman": uncertainty_error_correlation(reference_array, image_to_array(synthetic), sigma_array,
                                                                 brain_array),
                       "mean_sigma": float(sigma_array[brain_array].mean())}
    scores = {}
    for name, settings in {"default": {}, **SECONDARY}.items():
        report = evaluate_images(reference, synthetic, brain_mask=brain, label_map=labels if regions else None,
                                 label_regions=regions, protocol=EvaluationProtocol(**settings))
        scores[name] = {"brain": report["brain"], "regions": report["regions"]}
    primary = scores.pop("default")
    return CaseTask(model_label, case.case_id, task, primary["brain"], primary["regions"], seconds, scores, uncertainty)


def run(models: list[str], cases_dir: Path, tasks: list[Task], work_dir: Path, regression_config: str,
        only: list[str] | None = None, keep_outputs: bool = False, log=print, uncertainty_samples: int = 0,
        regression_min_cases: int | None = None) -> tuple[list[CaseTask], dict]:
    """Every model on every (case, task) the case supports; returns the scores and a run record.

    ``keep_outputs``: write every synthetic volume under ``work_dir/outputs/<model>/<case>/``.
    ``uncertainty_samples``: see :func:`score`.
    """
    from MRSynthLib.files.cases import discover_cases
    from MRSynthLib.quality.metrics import EvaluationProtocol
    from MRSynthLib.models.registry import resolve_model

    cases = [c for c in discover_cases(cases_dir, "plain") if not only or c.case_id in only]
    if not cases:
        raise SystemExit(f"No case found in {cases_dir} (plain layout: <case>/<contrast>.nii.gz).")
    folds = (LeaveOneOutRegression(regression_config, cases_dir, work_dir, log, regression_min_cases)
             if REGRESSION in models else None)
    bundles = {m: resolve_model(m) for m in models if m != REGRESSION}
    described = {m: bundles[m].provenance() if m in bundles else describe_regression(regression_config, regression_min_cases)
                 for m in models}
    results, skipped = [], []
    for case in cases:
        case_tasks = [t for t in tasks if set(t.inputs) | {t.target} <= set(case.images)]
        if not case_tasks:
            log(f"{case.case_id}: no task (contrasts {', '.join(case.images)})")
            continue
        for model in models:
            if model == REGRESSION:
                started = time.perf_counter()
                fold = folds.bundle_for(case.case_id, case_tasks)
                log(f"{case.case_id}: regression fold trained in {time.perf_counter() - started:.0f} s")
                bundle = resolve_model(fold) if fold is not None else None
            else:
                bundle = bundles[model]
            for task in case_tasks:
                if bundle is None or not supports(bundle, task):
                    skipped.append({"model": model, "case": case.case_id, "task": task.label})
                    log(f"{case.case_id} {task.label} {model}: not supported by the model, skipped")
                    continue
                keep = None
                if keep_outputs:
                    keep = (work_dir / "outputs" / Path(model).name / case.case_id
                            / f"{task.target}_from_{'_'.join(task.inputs)}.nii.gz")
                item = score(case, task, bundle, model, keep, uncertainty_samples)
                results.append(item)
                lesion = item.regions.get("lesion")
                log(f"{case.case_id} {task.label} {model}: PSNR {item.brain['psnr']:.2f} SSIM {item.brain['ssim']:.3f} "
                    f"MAE {item.brain['mae']:.4f}" + (f" | lesion PSNR {lesion['psnr']:.2f}" if lesion else "")
                    + (f" | Spearman(sigma, |error|) {item.uncertainty['spearman']:+.3f}" if item.uncertainty else "")
                    + f" ({item.seconds:.0f} s)")
    record = {
        "cases_dir": str(cases_dir), "cases": [c.case_id for c in cases], "tasks": [t.label for t in tasks],
        "models": described,
        "protocol": EvaluationProtocol().to_dict(),
        "secondary_protocols": {name: EvaluationProtocol(**settings).to_dict() for name, settings in SECONDARY.items()},
        "skipped": skipped,
        "uncertainty_samples": uncertainty_samples,
    }
    return results, record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="",
                        help="comma-separated bundle names/folders; `regression` = the leave-one-case-out baseline")
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES, help="co-registered cases, plain layout")
    parser.add_argument("--tasks", default=DEFAULT_TASKS, help=f"TARGET<-IN1,IN2;... (default {DEFAULT_TASKS})")
    parser.add_argument("--only", default="", help="comma-separated case ids to evaluate (default: all)")
    parser.add_argument("--regression-config", default="regression-real", help="training config of the baseline")
    parser.add_argument("--regression-min-cases", type=int, metavar="N",
                        help="replace the config's regression.min_cases in the folds (e.g. 4: pd from the phantoms "
                             "alone when the only real pd case is held out)")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/real-eval"), help="fold bundles and caches")
    parser.add_argument("--output", type=Path, default=Path("docs/MODEL_CARD_EVAL.md"), help="Markdown report")
    parser.add_argument("--json", type=Path, help="per-case results as JSON (default: <work-dir>/results.json)")
    parser.add_argument("--keep-outputs", action="store_true", help="write the synthetic volumes under <work-dir>/outputs")
    parser.add_argument("--uncertainty-samples", type=int, default=0, metavar="N",
                        help="N >= 2: synthesize with N samples and score the uncertainty map too (Spearman of sigma "
                             "with |error|); default 0 = one deterministic pass")
    parser.add_argument("--render-only", type=Path, metavar="JSON",
                        help="only rewrite --output from the results JSON of an earlier run (no synthesis)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmarks.real_eval_report import git_revision, render_report

    args = build_parser().parse_args(argv)
    if args.render_only:
        data = json.loads(args.render_only.read_text(encoding="utf-8"))
        results = [case_task_from_dict(item) for item in data["results"]]
        data["record"]["rendered_at"] = git_revision()
        regression = data["record"]["models"].get(REGRESSION)
        if regression is not None and "regression" not in regression:  # results of an older harness version
            data["record"]["models"][REGRESSION] = describe_regression(regression["config"])
        args.output.write_text(render_report(results, data["record"]), encoding="utf-8")
        print(f"report written to {args.output} from {args.render_only}")
        return 0
    if not args.cases.is_dir():
        print(f"real_eval: case folder {args.cases} does not exist: pass --cases DIR.", file=sys.stderr)
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        print("real_eval: pass --models A,B,... (bundle names/folders, or `regression`).", file=sys.stderr)
        return 2
    started = time.perf_counter()
    results, record = run(models, args.cases, parse_tasks(args.tasks), args.work_dir, args.regression_config,
                          [c for c in args.only.split(",") if c] or None, keep_outputs=args.keep_outputs,
                          uncertainty_samples=args.uncertainty_samples, regression_min_cases=args.regression_min_cases)
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["command"] = "python -m benchmarks.real_eval " + " ".join(argv if argv is not None else sys.argv[1:])
    record["git"], record["date"] = git_revision(), time.strftime("%Y-%m-%d")
    json_path = args.json or args.work_dir / "results.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"record": record, "results": [r.to_dict() for r in results]}, indent=1) + "\n")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render_report(results, record), encoding="utf-8")
    print(f"report written to {args.output}; per-case JSON {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
