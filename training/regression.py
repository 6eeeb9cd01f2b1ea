"""``mrsynth-train regression``: the classical baseline bundle (gradient-boosted trees per voxel).

1. The cases of ``data.sources`` are split (``data.split``) and brought into model space by the
   inference preprocessing, through the run's preprocessing cache (:mod:`training.inputs.data`).
2. Each training case contributes a seeded sample of its foreground voxels (``samples_per_case`` times
   its source's ``weight``) with the features (:mod:`MRSynthLib.methods.regression_features`) of every contrast it has.
3. One scikit-learn ``HistGradientBoostingRegressor`` per task (target from exactly these inputs),
   trained on the cases that have all of them.
3b. With ``regression.error_model.folds`` >= 2, an error model per task (the uncertainty map): the task is
   refit without each fold of cases, the held-out cases' absolute residuals become the targets of a
   smaller ensemble on the same features (:class:`training.regression_config.ErrorModelConfig`).
4. The trees are exported as flat arrays (:mod:`MRSynthLib.methods.tree_ensemble`) into
   ``regressors.safetensors`` + ``bundle.json``; validation metrics come from the numpy predictor on
   the validation cases, so they measure exactly what inference runs.
"""

from __future__ import annotations

import itertools
import platform
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from MRSynthLib.files.atomic import staged_folder
from MRSynthLib.contrasts import CANONICAL_CONTRASTS
from MRSynthLib.methods.regression import METHOD, UNCERTAINTY, UNCERTAINTY_ERROR_MODEL, WEIGHTS_FILE, error_key, regressor_key
from MRSynthLib.methods.regression_features import FeatureSpec, contrast_features, mask_distance, voxel_features
from MRSynthLib.methods.tree_ensemble import TreeEnsemble, expected_values
from training.config import TrainConfig
from training.regression_config import RegressionConfig, RegressionTask

CITATION = ("Classical baseline after REPLICA (Jog et al., 'Random forest regression for magnetic resonance image "
            "synthesis', Medical Image Analysis 2017): per-voxel regression on multi-scale intensity features; here "
            "gradient-boosted trees (scikit-learn HistGradientBoostingRegressor) in MRSynth's model space.")


def canonical_order(contrasts) -> tuple[str, ...]:
    contrasts = set(contrasts)
    return tuple(c for c in CANONICAL_CONTRASTS if c in contrasts) + tuple(sorted(contrasts - set(CANONICAL_CONTRASTS)))


@dataclass
class CaseSamples:
    """A seeded sample of one case's foreground voxels with the features of every contrast it has.

    Attributes:
        columns: contrast -> ``(n, FeatureSpec.per_contrast)`` float32 (column 0 is the intensity,
            which is also the regression target when that contrast is the target).
        distance: ``(n,)`` float32 distance to the mask edge in mm.
    """

    case_id: str
    source: str
    columns: dict[str, np.ndarray]
    distance: np.ndarray

    @property
    def contrasts(self) -> tuple[str, ...]:
        return tuple(self.columns)


def sample_case(volume, spec: FeatureSpec, spacing: tuple[float, float, float], count: int, seed: int) -> CaseSamples:
    """Features of ``count`` foreground voxels of ``volume`` (a :class:`training.inputs.data.Volume`), drawn with a
    generator seeded by ``seed`` and the case id (the same voxels for every task)."""
    mask = np.asarray(volume.mask, dtype=bool)
    spacing_zyx = np.asarray(list(reversed(spacing)), dtype=np.float64)
    total = int(mask.sum())
    rng = np.random.default_rng([seed, zlib.crc32(volume.case_id.encode())])
    rows = np.sort(rng.choice(total, size=min(count, total), replace=False))
    columns = {c: contrast_features(np.asarray(a, dtype=np.float32), mask, spec, spacing_zyx)[rows]
               for c, a in volume.images.items()}
    return CaseSamples(volume.case_id, volume.source, columns, mask_distance(mask, spacing_zyx)[rows])


def supported_tasks(contrast_sets: list[tuple[str, ...]], min_cases: int) -> list[RegressionTask]:
    """Every (non-empty input subset → target) that at least ``min_cases`` of the cases have entirely."""
    found = canonical_order({c for s in contrast_sets for c in s})
    tasks = []
    for target in found:
        others = [c for c in found if c != target]
        for size in range(len(others), 0, -1):
            for inputs in itertools.combinations(others, size):
                needed = set(inputs) | {target}
                if sum(needed <= set(s) for s in contrast_sets) >= min_cases:
                    tasks.append(RegressionTask(target, inputs))
    return tasks


def task_matrix(samples: list[CaseSamples], task: RegressionTask, spec: FeatureSpec
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Feature rows ``(n, F)`` and targets ``(n,)`` of ``task`` from the cases that have it; and their ids."""
    blocks, targets, used = [], [], []
    for case in samples:
        if not set(task.inputs) | {task.target} <= set(case.columns):
            continue
        parts = [case.columns[c] for c in task.inputs] + ([case.distance[:, None]] if spec.mask_distance else [])
        blocks.append(np.concatenate(parts, axis=1))
        targets.append(case.columns[task.target][:, 0])
        used.append(case.case_id)
    if not blocks:
        return np.zeros((0, len(spec.names(task.inputs))), np.float32), np.zeros(0, np.float32), []
    return np.concatenate(blocks), np.concatenate(targets), used


def _learner():
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
    except ImportError:
        raise SystemExit("mrsynth-train regression needs scikit-learn: pip install scikit-learn==1.9.1") from None
    return HistGradientBoostingRegressor


def fit_task(features: np.ndarray, targets: np.ndarray, config: RegressionConfig, seed: int):
    """A fitted ``HistGradientBoostingRegressor`` (scikit-learn is needed for training only)."""
    model = _learner()(
        loss=config.loss, learning_rate=config.learning_rate, max_iter=config.max_iter,
        max_leaf_nodes=config.max_leaf_nodes, min_samples_leaf=config.min_samples_leaf,
        l2_regularization=config.l2_regularization, max_bins=config.max_bins,
        early_stopping=config.early_stopping, validation_fraction=config.validation_fraction,
        n_iter_no_change=config.n_iter_no_change, random_state=seed,
    )
    return model.fit(features.astype(np.float64), targets.astype(np.float64))


def case_folds(case_ids: list[str], folds: int, seed: int) -> dict[str, int]:
    """Case id -> fold index: a seeded shuffle of the sorted ids dealt round-robin into ``min(folds, cases)`` folds
    (every fold holds at least one case)."""
    ordered = sorted(case_ids)
    order = np.random.default_rng([seed, 104729]).permutation(len(ordered))
    count = min(folds, len(ordered))
    return {ordered[index]: position % count for position, index in enumerate(order)}


@dataclass
class ErrorModel:
    """A regressor's uncertainty model: trees predicting its absolute error on unseen cases."""

    trees: TreeEnsemble
    folds: int
    out_of_fold_mae: float
    seconds: float


def fit_error_model(samples: list[CaseSamples], task: RegressionTask, config: RegressionConfig, seed: int
                    ) -> ErrorModel | None:
    """Out-of-fold absolute residuals of ``task`` (refit without each fold of cases) and the ensemble that
    predicts them from the features; None when fewer than 2 cases have the task or folds is 0."""
    settings = config.error_model
    per_case = [(case.case_id, *task_matrix([case], task, config.features)[:2]) for case in samples
                if set(task.inputs) | {task.target} <= set(case.columns)]
    if settings.folds < 2 or len(per_case) < 2:
        return None
    started = time.perf_counter()
    fold_of = case_folds([case_id for case_id, _, _ in per_case], settings.folds, seed)
    features, errors = [], []
    for fold in sorted(set(fold_of.values())):
        train = [(x, y) for case_id, x, y in per_case if fold_of[case_id] != fold]
        held = [(x, y) for case_id, x, y in per_case if fold_of[case_id] == fold]
        model = fit_task(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), config, seed)
        for x, y in held:
            features.append(x)
            errors.append(np.abs(y - model.predict(x.astype(np.float64))))
    features, errors = np.concatenate(features), np.concatenate(errors)
    learner = _learner()(
        loss="squared_error", learning_rate=settings.learning_rate, max_iter=settings.max_iter,
        max_leaf_nodes=settings.max_leaf_nodes, min_samples_leaf=settings.min_samples_leaf, max_bins=config.max_bins,
        early_stopping=config.early_stopping, validation_fraction=config.validation_fraction,
        n_iter_no_change=config.n_iter_no_change, random_state=seed,
    ).fit(features.astype(np.float64), errors)
    return ErrorModel(ensemble_from_sklearn(learner), len(set(fold_of.values())), float(errors.mean()),
                      time.perf_counter() - started)


def ensemble_from_sklearn(model) -> TreeEnsemble:
    """The fitted regressor's trees as flat arrays whose numpy prediction equals ``model.predict``.

    Raises:
        ValueError: a model this exporter does not cover (non-identity link, several trees per
            iteration, categorical splits).
    """
    from sklearn._loss.link import IdentityLink

    if not isinstance(model._loss.link, IdentityLink) or model.n_trees_per_iteration_ != 1:
        raise ValueError("only single-output regressors with an identity link (squared/absolute error) can be exported")
    feature, threshold, left, right, value, roots = [], [], [], [], [], []
    offset = 0
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits cannot be exported")
        n = len(nodes)
        own = np.arange(n)
        leaf = nodes["is_leaf"].astype(bool)
        local_left = np.where(leaf, own, nodes["left"].astype(np.int64))
        local_right = np.where(leaf, own, nodes["right"].astype(np.int64))
        feature.append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int32))
        threshold.append(np.where(leaf, 0.0, nodes["num_threshold"]).astype(np.float64))
        left.append((local_left + offset).astype(np.int32))
        right.append((local_right + offset).astype(np.int32))
        value.append(expected_values(local_left, local_right, nodes["value"], nodes["count"], np.array([0])))
        roots.append(offset)
        offset += n
    return TreeEnsemble(
        feature=np.concatenate(feature), threshold=np.concatenate(threshold), left=np.concatenate(left),
        right=np.concatenate(right), value=np.concatenate(value), roots=np.asarray(roots, dtype=np.int32),
        baseline=np.asarray(model._baseline_prediction, dtype=np.float64).reshape(1),
    )


@dataclass
class FittedTask:
    """One trained regressor and what it was trained on."""

    task: RegressionTask
    trees: TreeEnsemble
    train_cases: list[str]
    train_samples: int
    iterations: int
    seconds: float
    error: ErrorModel | None = None

    @property
    def key(self) -> str:
        return regressor_key(self.task.target, self.task.inputs)


def collect_samples(volumes, config: TrainConfig, cache: dict[str, CaseSamples] | None = None) -> list[CaseSamples]:
    """:func:`sample_case` of every volume, ``samples_per_case`` scaled by the source weight; ``cache``
    (case id -> samples) is reused and filled, so leave-one-out folds compute each case once."""
    cache = {} if cache is None else cache
    weights = {s.label: s.weight for s in config.data.sources}
    out = []
    for volume in volumes:
        if volume.case_id not in cache:
            count = max(1, int(round(config.regression.samples_per_case * weights.get(volume.source, 1.0))))
            cache[volume.case_id] = sample_case(volume, config.regression.features, config.preprocessing.spacing,
                                                count, config.seed)
        out.append(cache[volume.case_id])
    return out


def fit_regressors(samples: list[CaseSamples], config: TrainConfig, tasks: list[RegressionTask] | None = None,
                   log=None) -> list[FittedTask]:
    """Train one regressor per task (default: ``config.regression.tasks``, else every supported task).

    Tasks with fewer than ``min_cases`` training cases are skipped (and reported through ``log``).
    """
    settings = config.regression
    if tasks is None:
        tasks = list(settings.tasks) or supported_tasks([s.contrasts for s in samples], settings.min_cases)
    limits = _thread_limits(config.threads)
    fitted = []
    with limits:
        for task in tasks:
            features, targets, used = task_matrix(samples, task, settings.features)
            if len(used) < settings.min_cases:
                if log:
                    log(f"skip {regressor_key(task.target, task.inputs)}: {len(used)} training case(s) have it")
                continue
            started = time.perf_counter()
            model = fit_task(features, targets, settings, config.seed)
            item = FittedTask(task, ensemble_from_sklearn(model), used, len(targets), int(model.n_iter_),
                              time.perf_counter() - started)
            item.error = fit_error_model(samples, task, settings, config.seed)
            fitted.append(item)
            if log:
                error = (f"; error model {item.error.folds} folds, out-of-fold MAE {item.error.out_of_fold_mae:.4f}, "
                         f"{item.error.seconds:.1f} s" if item.error else "")
                log(f"{item.key}: {len(used)} cases, {len(targets)} voxels, {model.n_iter_} trees, "
                    f"{item.seconds:.1f} s{error}")
    return fitted


def _thread_limits(threads: int):
    from contextlib import nullcontext

    if threads <= 0:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def validate(fitted: list[FittedTask], volumes, config: TrainConfig) -> dict[str, dict]:
    """Mean brain PSNR / SSIM / MAE (model space, default evaluation protocol) of each regressor on the
    validation volumes that have its inputs and target, predicted by the numpy trees."""
    from MRSynthLib.quality.metrics import evaluate_volumes

    spec = config.regression.features
    out = {}
    for item in fitted:
        scores = []
        for volume in volumes:
            if not set(item.task.inputs) | {item.task.target} <= set(volume.images):
                continue
            mask = np.asarray(volume.mask, dtype=bool)
            features = voxel_features(volume.images, mask, item.task.inputs, spec, config.preprocessing.spacing)
            prediction = np.zeros(mask.shape, np.float32)
            prediction[mask] = item.trees.predict(features)[0]
            report = evaluate_volumes(np.asarray(volume.images[item.task.target]), prediction, mask)
            scores.append(report["brain"])
        if scores:
            out[item.key] = {"cases": len(scores), **{k: float(np.mean([s[k] for s in scores if s[k] is not None]))
                                                       for k in ("psnr", "ssim", "mae")}}
    return out


def export_regression_bundle(config: TrainConfig, fitted: list[FittedTask], output: Path, *,
                             training_data: dict, validation: dict, overwrite: bool = False) -> Path:
    """Write the bundle folder (``regressors.safetensors`` + ``bundle.json``), assembled in a temporary
    sibling and renamed into place."""
    import sklearn
    from safetensors.numpy import save_file

    import MRSynthLib
    from MRSynthLib.models.bundle import ModelCard, sha256_file, write_card
    from MRSynthLib.quality.metrics import EvaluationProtocol
    from training.runtime.runs import git_revision

    if not fitted:
        raise SystemExit("No regressor was trained: the training cases support no task of regression.tasks.")
    output = Path(output)
    if output.exists() and not overwrite:
        raise SystemExit(f"Bundle folder {output} already exists: pass --overwrite to replace it.")
    spec = config.regression.features
    tensors = {}
    regressors = []
    for item in fitted:
        tensors.update(item.trees.to_tensors(item.key))
        entry = {"key": item.key, "target": item.task.target, "inputs": list(item.task.inputs),
                 "features": spec.names(item.task.inputs), "trees": item.trees.trees, "nodes": len(item.trees.value),
                 "train_cases": len(item.train_cases), "train_samples": item.train_samples,
                 "fit_seconds": round(item.seconds, 2)}
        if item.error is not None:
            tensors.update(item.error.trees.to_tensors(error_key(item.key)))
            entry["error_model"] = {"key": error_key(item.key), "folds": item.error.folds, "trees": item.error.trees.trees,
                                    "nodes": len(item.error.trees.value),
                                    "out_of_fold_mae": round(item.error.out_of_fold_mae, 5),
                                    "fit_seconds": round(item.error.seconds, 2)}
        regressors.append(entry)
    settings = {k: v for k, v in asdict(config.regression).items() if k not in ("tasks", "features")}
    with staged_folder(output) as staging:  # the old bundle stays whole until the new one is complete
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": "mrsynth-regression-trees", "version": "1"})
        (staging / WEIGHTS_FILE).chmod(0o644)  # readable like the card (safetensors writes 0600)
        card = ModelCard(
            name=config.name,
            version=config.version,
            method=METHOD,
            description=config.description,
            input_contrasts=canonical_order(c for item in fitted for c in item.task.inputs),
            output_contrasts=canonical_order(item.task.target for item in fitted),
            preprocessing=config.preprocessing,
            networks={METHOD: {"features": spec.to_dict(), "weights_file": WEIGHTS_FILE, "regressors": regressors,
                               "learner": f"scikit-learn {sklearn.__version__} HistGradientBoostingRegressor "
                                          f"(trees exported to arrays; inference in numpy)",
                               "settings": settings}},
            weights={WEIGHTS_FILE: sha256_file(staging / WEIGHTS_FILE)},
            uncertainty=UNCERTAINTY_ERROR_MODEL if any(item.error for item in fitted) else UNCERTAINTY,
            training_data=training_data,
            validation={"protocol": "model space, validation cases, brain = model-space foreground; "
                                    + EvaluationProtocol().describe(), "regressors": validation},
            provenance={"git": git_revision(), "mrsynth_version": MRSynthLib.__version__,
                        "scikit_learn": sklearn.__version__, "numpy": np.__version__,
                        "python": platform.python_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "config": config.to_dict()},
            citation=CITATION,
            **config.card_licence(),
        )
        write_card(card, staging)
    return output


def train_and_export(config: TrainConfig, run_dir: Path, output: Path | None = None, overwrite: bool = False,
                     progress: bool = True) -> Path:
    """The whole ``mrsynth-train regression`` command: data → samples → regressors → validation → bundle."""
    from training.inputs.data import prepare_data, training_data_record
    from training.runtime.runs import RunFolder

    log = print if progress else (lambda message: None)
    run = RunFolder(Path(run_dir))
    run.prepare(config)
    cache_dir = Path(config.data.cache_dir) if config.data.cache_dir else run.root / "cache"
    data = prepare_data(config.data, config.preprocessing, config.seed, cache_dir=cache_dir,
                        split_path=run.root / "split.json", progress=progress)
    log(f"{len(data.train)} training and {len(data.val)} validation cases ({data.built} preprocessed, "
        f"{data.reused} from the cache)")
    samples = collect_samples(data.train, config)
    fitted = fit_regressors(samples, config, log=log)
    validation = validate(fitted, data.val, config)
    for item in fitted:
        row = {"key": item.key, "train_cases": len(item.train_cases), "train_samples": item.train_samples,
               "trees": item.iterations, "seconds": round(item.seconds, 2)}
        row.update({f"val_{k}": validation.get(item.key, {}).get(k, "") for k in ("cases", "psnr", "ssim", "mae")})
        run.log("regression", row)
    return export_regression_bundle(config, fitted, output or run.root / "bundle", overwrite=overwrite,
                                    training_data=training_data_record(config, data.split), validation=validation)


__all__ = ["CaseSamples", "ErrorModel", "FittedTask", "case_folds", "collect_samples", "ensemble_from_sklearn",
           "export_regression_bundle", "fit_error_model", "fit_regressors", "fit_task", "sample_case", "supported_tasks", "task_matrix", "train_and_export", "validate"]
