"""The classical ``regression`` baseline: features, numpy trees == scikit-learn, training, CLI, real-data harness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from MRSynthLib.methods.regression_features import FeatureSpec, masked_smooth, voxel_features
from MRSynthLib.methods.tree_ensemble import TreeEnsemble, expected_values

sklearn = pytest.importorskip("sklearn", reason="scikit-learn trains the regression baseline (pip install scikit-learn)")

TINY_CONFIG = """
name: regression-tiny
version: 0.0.1
seed: 0
threads: 1
data:
  sources:
{extra_source}    - kind: phantom
      train_cases: 2
      val_cases: 1
      size: [24, 24, 24]
      ms_lesions: 1
  split: {{val_fraction: 0.0, test_fraction: 0.0}}
preprocessing:
  spacing: [8.0, 8.0, 8.0]
  size_multiple: 4
  margin_mm: 8.0
regression:
  samples_per_case: 600
  max_iter: 8
  min_samples_leaf: 5
  features: {{smoothing_mm: [8.0, 16.0], gradient_mm: 8.0}}
  tasks:
{tasks}"""
TINY_TASKS = """    - {target: t1ce, inputs: [t1, t2, flair]}
    - {target: t1ce, inputs: [t1, t2]}
    - {target: t1ce, inputs: [t1]}
    - {target: flair, inputs: [t1, t2]}
"""


def tiny_config(folder: Path, tasks: str = TINY_TASKS, cases_root: Path | None = None) -> Path:
    extra = f"    - {{kind: plain, name: real, root: '{cases_root}'}}\n" if cases_root else ""
    path = folder / "regression-tiny.yaml"
    path.write_text(TINY_CONFIG.format(extra_source=extra, tasks=tasks), encoding="utf-8")
    return path


def write_case(folder: Path, seed: int) -> Path:
    from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case

    return write_phantom_case(generate_phantom(PhantomConfig(size=(24, 24, 24), spacing=(8.0, 8.0, 8.0), seed=seed,
                                                             ms_lesions=2)), folder)


def write_lesion_case(folder: Path, seed: int) -> Path:
    """A phantom case laid out like the real MS cases: contrasts, ``brainmask`` and a binary ``lesion`` mask
    (the phantom's tumour and lesion labels 4-7) instead of the full tissue label map."""
    import SimpleITK as sitk

    case = write_case(folder, seed)
    labels = sitk.ReadImage(str(case / "labels.nii.gz"))
    array = sitk.GetArrayFromImage(labels)
    lesion = sitk.GetImageFromArray(np.isin(array, [4, 5, 6, 7]).astype(np.uint8))
    lesion.CopyInformation(labels)
    sitk.WriteImage(lesion, str(case / "lesion.nii.gz"))
    (case / "labels.nii.gz").unlink()
    return case


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    """A regression bundle trained by ``mrsynth-train regression`` on 2 phantoms (24³ at 8 mm), once per module."""
    from training.cli import main

    folder = tmp_path_factory.mktemp("regression")
    assert main(["regression", "--config", str(tiny_config(folder)), "--run-dir", str(folder / "run"), "--quiet"]) == 0
    return folder / "run" / "bundle"


# --------------------------------------------------------------------------------------------- features


def test_feature_columns_match_their_names_and_ignore_the_background():
    spec = FeatureSpec(smoothing_mm=(2.0, 4.0), gradient_mm=2.0)
    mask = np.zeros((12, 14, 16), bool)
    mask[2:10, 3:11, 4:12] = True
    constant = np.where(mask, 0.7, 0.0).astype(np.float32)
    ramp = np.where(mask, np.linspace(0, 1, 16)[None, None, :], 0.0).astype(np.float32)
    features = voxel_features({"t1": constant, "t2": ramp}, mask, ("t1", "t2"), spec, (1.0, 1.0, 1.0))
    names = spec.names(("t1", "t2"))
    assert features.shape == (mask.sum(), len(names)) and features.dtype == np.float32
    assert names[:4] == ["t1:intensity", "t1:smooth2mm", "t1:smooth4mm", "t1:gradient2mm"] and names[-1] == "mask_distance"
    assert list(spec.groups(("t1", "t2"))) == [0] * 4 + [1] * 4 + [2]
    # a constant brain stays constant after mask-normalised smoothing (no dark background bleeding in), gradient 0
    np.testing.assert_allclose(features[:, :3], 0.7, atol=1e-5)
    np.testing.assert_allclose(features[:, 3], 0.0, atol=1e-5)
    # the ramp rises 1/15 per mm along x: interior gradient magnitude about that
    interior = voxel_features({"t2": ramp}, mask, ("t2",), spec, (1.0, 1.0, 1.0))[:, 3]
    assert 0.02 < float(np.median(interior)) < 0.08
    distance = features[:, -1]
    assert distance.min() == pytest.approx(1.0) and distance.max() == pytest.approx(4.0)


def test_smoothing_is_in_millimetres():
    mask = np.ones((9, 9, 9), bool)
    spike = np.zeros((9, 9, 9), np.float32)
    spike[4, 4, 4] = 1.0
    fine = masked_smooth(spike, mask, None, 2.0, np.array([1.0, 1.0, 1.0]))
    coarse_voxels = masked_smooth(spike, mask, None, 2.0, np.array([2.0, 2.0, 2.0]))  # 2 mm = 1 voxel of 2 mm
    assert coarse_voxels[4, 4, 4] > fine[4, 4, 4]


# --------------------------------------------------------------------------------------------- trees


def _fitted(rows=3000, columns=6, iterations=15, seed=0):
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(seed)
    x = rng.random((rows, columns)).astype(np.float32)
    y = np.sin(6 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.05 * rng.standard_normal(rows)
    model = HistGradientBoostingRegressor(max_iter=iterations, early_stopping=False, random_state=seed)
    return model.fit(x.astype(np.float64), y), x


def test_numpy_trees_equal_sklearn_predictions_and_survive_safetensors(tmp_path):
    from safetensors.numpy import load_file, save_file

    from training.regression import ensemble_from_sklearn

    model, x = _fitted()
    trees = ensemble_from_sklearn(model)
    save_file(trees.to_tensors("t1ce_from_t1"), str(tmp_path / "w.safetensors"))
    loaded = TreeEnsemble.from_tensors(load_file(str(tmp_path / "w.safetensors")), "t1ce_from_t1")
    rng = np.random.default_rng(1)
    unseen = np.concatenate([x[:500], rng.random((700, x.shape[1])).astype(np.float32) * 1.4 - 0.2])
    expected = model.predict(unseen.astype(np.float64))
    values, _ = loaded.predict(unseen, chunk=257)  # several chunks
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6)
    assert loaded.trees == model.n_iter_


def test_path_attributions_add_up_to_the_prediction():
    from training.regression import ensemble_from_sklearn

    model, x = _fitted(columns=4)
    trees = ensemble_from_sklearn(model)
    values, attributions = trees.predict(x[:400], groups=np.array([0, 0, 1, 2]))
    assert attributions.shape == (3, 400)
    bias = trees.baseline[0] + trees.value[trees.roots].sum()
    np.testing.assert_allclose(attributions.sum(0), values - bias, atol=1e-9)
    # y depends on columns 0-2 only: group 2 (column 3, pure noise) explains least
    magnitude = np.abs(attributions).mean(1)
    assert magnitude[2] < magnitude[0]


def test_threads_walk_chunks_in_parallel_with_bit_identical_results():
    from training.regression import ensemble_from_sklearn

    model, x = _fitted(columns=4)
    trees = ensemble_from_sklearn(model)
    rows = np.concatenate([x] * 3)
    groups = np.array([0, 0, 1, 2])
    serial = trees.predict(rows, groups=groups, chunk=97)
    for threads in (2, 3, 8):
        parallel = trees.predict(rows, groups=groups, chunk=97, threads=threads)
        np.testing.assert_array_equal(parallel[0], serial[0])
        np.testing.assert_array_equal(parallel[1], serial[1])


def test_expected_values_are_count_weighted_means_of_the_leaves():
    # node 0 splits into leaf 1 (value 1, 30 samples) and node 2, which splits into leaves 3 (4, 10) and 4 (-2, 10)
    left, right = np.array([1, 1, 3, 3, 4]), np.array([2, 1, 4, 3, 4])
    values = expected_values(left, right, np.array([0.0, 1.0, 0.0, 4.0, -2.0]), np.array([50, 30, 20, 10, 10]), np.array([0]))
    assert values[2] == pytest.approx(1.0) and values[0] == pytest.approx((30 * 1 + 20 * 1.0) / 50)


def test_broken_tree_arrays_are_refused():
    from MRSynthLib.errors import BundleError

    ok = dict(feature=np.zeros(3, np.int32), threshold=np.zeros(3), left=np.array([1, 1, 2], np.int32),
              right=np.array([2, 1, 2], np.int32), value=np.zeros(3), roots=np.array([0], np.int32), baseline=np.zeros(1))
    TreeEnsemble(**ok)
    with pytest.raises(BundleError, match="outside"):
        TreeEnsemble(**{**ok, "left": np.array([5, 1, 2], np.int32)})
    with pytest.raises(BundleError, match="regressors.safetensors|re-export"):
        TreeEnsemble.from_tensors({}, "t1ce_from_t1")


def test_supported_tasks_need_enough_cases():
    from training.regression import supported_tasks

    tasks = supported_tasks([("t1", "t2"), ("t1", "t2", "flair")], min_cases=1)
    labels = {(t.target, t.inputs) for t in tasks}
    assert ("flair", ("t1", "t2")) in labels and ("t2", ("t1",)) in labels and len(tasks) == 9
    assert {(t.target, t.inputs) for t in supported_tasks([("t1", "t2"), ("t1", "t2", "flair")], 2)} == {
        ("t1", ("t2",)), ("t2", ("t1",))}


# --------------------------------------------------------------------------------------------- training + CLI


@pytest.mark.slow
def test_trained_bundle_predicts_like_sklearn_and_records_its_card(tiny_bundle):
    from MRSynthLib.models.bundle import load_bundle
    from MRSynthLib.methods.regression import RegressionEngine

    bundle = load_bundle(tiny_bundle)
    card = bundle.card
    assert card.method == "regression" and "none" in card.uncertainty
    assert card.output_contrasts == ("t1ce", "flair") and card.input_contrasts == ("t1", "t2", "flair")
    assert set(card.weights) == {"regressors.safetensors"}
    entries = card.networks["regression"]["regressors"]
    assert [e["key"] for e in entries] == ["t1ce_from_t1_t2_flair", "t1ce_from_t1_t2", "t1ce_from_t1", "flair_from_t1_t2"]
    assert all(e["train_cases"] == 2 and e["train_samples"] == 1200 for e in entries)
    assert set(card.validation["regressors"]) == {e["key"] for e in entries}
    assert "scikit_learn" in card.provenance
    engine = RegressionEngine(bundle)
    assert engine.choose("t1ce", ["t2", "t1"]).inputs == ("t1", "t2")
    assert engine.choose("t1ce", ["t1", "t2", "flair", "pd"]).inputs == ("t1", "t2", "flair")


@pytest.mark.slow
def test_training_pipeline_trees_equal_sklearn_on_real_features(tmp_path):
    """The exported trees of a regressor fitted by the training code predict what scikit-learn predicts."""
    from training.config import load_config
    from training.inputs.data import prepare_data
    from training.regression import collect_samples, ensemble_from_sklearn, fit_task, task_matrix
    from training.regression_config import RegressionTask

    config = load_config(tiny_config(tmp_path))
    data = prepare_data(config.data, config.preprocessing, config.seed)
    samples = collect_samples(data.train, config)
    task = RegressionTask("t1ce", ("t1", "t2"))
    features, targets, used = task_matrix(samples, task, config.regression.features)
    assert len(used) == 2 and features.shape == (1200, 2 * 4 + 1)
    model = fit_task(features, targets, config.regression, seed=0)
    volume = data.val[0]
    rows = voxel_features(volume.images, volume.mask, task.inputs, config.regression.features, config.preprocessing.spacing)
    np.testing.assert_allclose(ensemble_from_sklearn(model).predict(rows)[0], model.predict(rows.astype(np.float64)),
                               rtol=0, atol=1e-6)


@pytest.mark.slow
def test_synthesize_cli_with_a_regression_bundle(tiny_bundle, tmp_path, capsys):
    import SimpleITK as sitk

    from MRSynthLib.commands.cli import main

    case = write_case(tmp_path / "case", seed=77)
    out = tmp_path / "out"
    args = ["synthesize", "--model", str(tiny_bundle), "--input", f"t1={case / 't1.nii.gz'}",
            "--input", f"t2={case / 't2.nii.gz'}", "--target", "t1ce", "--progress", "none"]
    assert main(args + ["--output", str(out / "t1ce.nii.gz"), "--contributions-dir", str(out / "contrib")]) == 0
    synthetic = sitk.ReadImage(str(out / "t1ce.nii.gz"))
    reference = sitk.ReadImage(str(case / "t1.nii.gz"))
    assert synthetic.GetSize() == reference.GetSize() and synthetic.GetOrigin() == reference.GetOrigin()
    values = sitk.GetArrayFromImage(synthetic)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "t1ce.nii.gz")))
    brain = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "brainmask.nii.gz"))) > 0
    assert np.corrcoef(values[brain], truth[brain])[0, 1] > 0.5  # learned something real, on an unseen phantom
    sidecar = json.loads((out / "t1ce.json").read_text())
    assert sidecar["method"] == "regression" and sidecar["backend"] == "numpy" and sidecar["uncertainty"] is None
    shares = [sitk.GetArrayFromImage(sitk.ReadImage(str(out / "contrib" / f"contribution_{c}.nii.gz"))) for c in ("t1", "t2")]
    inside = values > 0
    np.testing.assert_allclose((shares[0] + shares[1])[inside], 1.0, atol=1e-4)
    assert shares[0][inside].mean() > 0.05 and shares[1][inside].mean() > 0.05

    capsys.readouterr()
    assert main(args + ["--output", str(out / "u.nii.gz"), "--uncertainty", str(out / "std.nii.gz")]) == 2
    assert "has no uncertainty map" in capsys.readouterr().err
    from MRSynthLib.errors import NoUncertaintyError
    from MRSynthLib.synthesis import synthesize

    with pytest.raises(NoUncertaintyError):  # typed: callers (benchmarks.real_eval) fall back without string matching
        synthesize({"t1": case / "t1.nii.gz", "t2": case / "t2.nii.gz"}, "t1ce", model=str(tiny_bundle), samples=2)
    assert main(["synthesize", "--model", str(tiny_bundle), "--input", f"t2={case / 't2.nii.gz'}", "--target", "t1ce",
                 "--output", str(out / "x.nii.gz"), "--progress", "none"]) == 2
    assert "trained for t1ce from" in capsys.readouterr().err
    assert main(args + ["--output", str(out / "y.nii.gz"), "--backend", "torch"]) == 2
    assert "runs in numpy" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- harness


@pytest.mark.slow
def test_real_eval_harness_leave_one_case_out(tiny_bundle, tmp_path):
    from benchmarks.real_eval import main

    cases = tmp_path / "cases"
    for i, name in enumerate(("case-a", "case-b")):
        write_lesion_case(cases / name, seed=300 + i)
    config = tiny_config(tmp_path, tasks="    - {target: t1ce, inputs: [t1]}\n", cases_root=cases)
    report = tmp_path / "eval.md"
    work = tmp_path / "work"
    assert main(["--models", f"regression,{tiny_bundle}", "--cases", str(cases), "--regression-config", str(config),
                 "--tasks", "t1ce<-t1,t2,flair;flair<-t1,t2;t2<-t1;pd<-t2", "--work-dir", str(work),
                 "--output", str(report), "--keep-outputs"]) == 0
    assert len(list((work / "outputs").rglob("*.nii.gz"))) == 2 * 4 + 2 * 2
    results = json.loads((work / "results.json").read_text())["results"]
    # both cases answer all four tasks; the shipped tiny bundle offers two of them, the folds train all four
    assert len(results) == 2 * 4 + 2 * 2
    assert all(0 < r["regions"]["lesion"]["voxels"] < r["brain"]["voxels"] for r in results)
    folds = {c: json.loads((work / "folds" / c / "bundle.json").read_text()) for c in ("case-a", "case-b")}
    for case, card in folds.items():
        training = card["training_data"]
        assert training["held_out"] == [f"real/{case}"] and f"real/{case}" not in training["cases"]
        assert len([c for c in training["cases"] if c.startswith("real/")]) == 1
        assert {r["key"] for r in card["networks"]["regression"]["regressors"]} == {
            "t1ce_from_t1_t2_flair", "flair_from_t1_t2", "t2_from_t1", "pd_from_t2"}
    text = report.read_text()
    from MRSynthLib.quality.metrics import EvaluationProtocol

    assert EvaluationProtocol().describe() in text and EvaluationProtocol(normalisation="zscore").describe() in text
    assert all(set(r["secondary"]["zscore"]["brain"]) >= {"psnr", "ssim", "mae"} for r in results)
    assert "| t1ce ← {t1, t2, flair} | `regression` | 2 |" in text
    assert text.count("| pd ← {t2} | case-") == 2 and "Not evaluated (the model does not offer the task)" in text
    assert "Features of each input, at 8 mm" in text and "600 foreground voxels per case" in text
    rendered = tmp_path / "again.md"
    assert main(["--render-only", str(work / "results.json"), "--output", str(rendered)]) == 0
    again = rendered.read_text()
    assert "re-rendered from its results JSON" in again and again.split("## Protocol")[1] == text.split("## Protocol")[1]
    # the summary is the mean of the per-case numbers
    psnr = [r["brain"]["psnr"] for r in results if r["model"] == "regression" and r["target"] == "t2"]
    assert f"{np.mean(psnr):.2f} ± {np.std(psnr, ddof=1):.2f}" in text


# --------------------------------------------------------------------------------------------- uncertainty


def test_case_folds_deal_every_case_and_keep_no_fold_empty():
    from training.regression import case_folds

    folds = case_folds([f"c{i}" for i in range(7)], 4, seed=0)
    assert sorted(folds) == [f"c{i}" for i in range(7)] and sorted(set(folds.values())) == [0, 1, 2, 3]
    assert case_folds([f"c{i}" for i in range(7)], 4, seed=0) == folds  # seeded
    assert set(case_folds(["a", "b"], 4, seed=0).values()) == {0, 1}  # fewer cases than folds: one case a fold


def test_error_model_learns_where_unseen_cases_go_wrong():
    """Cases whose target is noisy only where feature 0 is high: the out-of-fold error model predicts a larger
    error there, and the exported trees say the same in numpy."""
    from training.regression import CaseSamples, fit_error_model
    from training.regression_config import ErrorModelConfig, RegressionConfig, RegressionTask

    rng = np.random.default_rng(5)
    spec = FeatureSpec(smoothing_mm=(2.0,), gradient_mm=2.0, mask_distance=False)  # 3 columns per contrast
    cases = []
    for index in range(4):
        x = rng.uniform(0, 1, size=(3000, spec.per_contrast)).astype(np.float32)
        y = (x[:, 0] + np.where(x[:, 0] > 0.5, rng.normal(0, 0.3, 3000), 0.0)).astype(np.float32)
        cases.append(CaseSamples(f"case{index}", "toy", {"t1": x, "t2": np.repeat(y[:, None], spec.per_contrast, 1)},
                                 np.zeros(3000, np.float32)))
    config = RegressionConfig(samples_per_case=3000, max_iter=20, min_samples_leaf=20, features=spec,
                              error_model=ErrorModelConfig(folds=2, max_iter=30, min_samples_leaf=50))
    model = fit_error_model(cases, RegressionTask("t2", ("t1",)), config, seed=0)
    assert model is not None and model.folds == 2 and model.out_of_fold_mae > 0
    predicted = model.trees.predict(np.array([[0.25, 0.5, 0.5], [0.75, 0.5, 0.5]], dtype=np.float32))[0]
    assert predicted[1] > 0.15 > 0.05 > predicted[0]  # E|N(0, 0.3)| = 0.24 on the noisy side, ~0 on the clean one
    assert fit_error_model(cases[:1], RegressionTask("t2", ("t1",)), config, seed=0) is None  # one case: no folds
    no_folds = RegressionConfig(samples_per_case=3000, features=spec)
    assert fit_error_model(cases, RegressionTask("t2", ("t1",)), no_folds, seed=0) is None


def test_error_model_folds_are_validated(tmp_path):
    from training.regression_config import ErrorModelConfig

    with pytest.raises(ValueError, match="error_model.folds must be 0"):
        ErrorModelConfig(folds=1)


@pytest.mark.slow
def test_bundle_with_error_model_writes_an_uncertainty_map(tmp_path, capsys):
    """Trained with ``error_model.folds``, the bundle pins the error trees and ``--uncertainty`` gives a
    non-negative map inside the brain, the same for any number of samples."""
    import SimpleITK as sitk

    from MRSynthLib.commands.cli import main as cli
    from training.cli import main as train

    config = tiny_config(tmp_path, tasks="    - {target: t1ce, inputs: [t1, t2]}\n")
    text = config.read_text().replace("  max_iter: 8\n", "  max_iter: 8\n  error_model: {folds: 2, max_iter: 10, min_samples_leaf: 20}\n")
    config.write_text(text, encoding="utf-8")
    assert train(["regression", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    bundle = tmp_path / "run" / "bundle"
    card = json.loads((bundle / "bundle.json").read_text())
    (entry,) = card["networks"]["regression"]["regressors"]
    assert entry["error_model"]["key"] == "t1ce_from_t1_t2.error" and entry["error_model"]["folds"] == 2
    assert card["uncertainty"].startswith("expected error")
    case = write_case(tmp_path / "case", seed=91)
    args = ["synthesize", "--model", str(bundle), "--input", f"t1={case / 't1.nii.gz'}", "--input",
            f"t2={case / 't2.nii.gz'}", "--target", "t1ce", "--progress", "none"]
    maps = []
    for samples in (2, 8):
        out = tmp_path / f"out{samples}"
        assert cli(args + ["--output", str(out / "t1ce.nii.gz"), "--uncertainty", str(out / "sd.nii.gz"),
                           "--samples", str(samples)]) == 0
        maps.append(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "sd.nii.gz"))))
        sidecar = json.loads((out / "t1ce.json").read_text())
        assert sidecar["uncertainty"].startswith("expected error")
    np.testing.assert_array_equal(maps[0], maps[1])
    brain = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "brainmask.nii.gz"))) > 0
    assert maps[0].min() >= 0 and maps[0][brain].mean() > 0 and np.ptp(maps[0][brain]) > 0


@pytest.mark.slow
def test_real_eval_scores_the_uncertainty_of_leave_one_out_folds(tmp_path):
    from benchmarks.real_eval import main

    cases = tmp_path / "cases"
    for i, name in enumerate(("case-a", "case-b")):
        write_lesion_case(cases / name, seed=310 + i)
    config = tiny_config(tmp_path, tasks="    - {target: t2, inputs: [t1]}\n", cases_root=cases)
    config.write_text(config.read_text().replace(
        "  max_iter: 8\n", "  max_iter: 8\n  error_model: {folds: 2, max_iter: 10, min_samples_leaf: 20}\n"))
    report, work = tmp_path / "eval.md", tmp_path / "work"
    assert main(["--models", "regression", "--cases", str(cases), "--regression-config", str(config),
                 "--tasks", "t2<-t1", "--work-dir", str(work), "--output", str(report),
                 "--uncertainty-samples", "2", "--regression-min-cases", "3"]) == 0
    results = json.loads((work / "results.json").read_text())["results"]
    assert len(results) == 2 and all(r["uncertainty"]["samples"] == 2 for r in results)
    assert all(-1 <= r["uncertainty"]["spearman"] <= 1 and r["uncertainty"]["mean_sigma"] > 0 for r in results)
    text = report.read_text()
    assert "## Uncertainty: does sigma point at the errors?" in text and "except `regression` with 2 samples and its uncertainty map" in text
    assert "| t2 ← {t1} | `regression` | 2 |" in text.split("## Uncertainty")[1]
    assert "trained when at least 3 training cases have it" in text and "2-fold out-of-fold absolute residuals" in text


def test_merge_eval_keeps_the_first_run_of_each_result_and_model_description(tmp_path):
    from benchmarks.merge_eval import merge

    def document(label: str, psnr: float, samples: int) -> dict:
        result = {"model": "regression", "case": "a", "target": "t2", "inputs": ["t1"], "brain": {"psnr": psnr},
                  "regions": {}, "seconds": 1.0}
        return {"record": {"protocol": {"p": 1}, "models": {"regression": {"config": label}}, "seconds": 2.0,
                           "uncertainty_samples": samples, "command": label}, "results": [result]}

    paths = []
    for name, psnr, samples in (("new", 15.0, 2), ("old", 13.0, 0)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(document(name, psnr, samples)))
    merged = merge(paths, None)
    assert [r["brain"]["psnr"] for r in merged["results"]] == [15.0]  # the newer run, listed first, wins
    assert merged["record"]["models"]["regression"] == {"config": "new"} and merged["record"]["uncertainty_samples"] == 2
    assert merged["record"]["seconds"] == 4.0
