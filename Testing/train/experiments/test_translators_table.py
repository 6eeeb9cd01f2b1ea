"""The methods table's statistics and Markdown (training/experiments/methods_table.py); the table itself is produced by
``python -m training.experiments.methods_table --train`` (minutes of CPU, not a unit test)."""

from __future__ import annotations

import numpy as np

from MRSynthLib.quality.metrics import rank_correlation as spearman
from training.experiments.methods_table import END, START, error_by_uncertainty, markdown, replace_between_markers
from support.paths import REPO


def test_spearman_is_the_rank_correlation_with_average_ties():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert abs(spearman(x, x**3) - 1.0) < 1e-12  # monotone, not linear: still 1
    assert abs(spearman(x, -x) + 1.0) < 1e-12
    # ties get their average rank: ranks of [1, 1, 2] are [0.5, 0.5, 2]
    a, b = np.array([1.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])
    expected = np.corrcoef([0.5, 0.5, 2.0], [0.0, 1.0, 2.0])[0, 1]
    assert abs(spearman(a, b) - expected) < 1e-12
    assert np.isnan(spearman(np.ones(4), x[:4]))
    rng = np.random.default_rng(0)
    u, v = rng.random(500), rng.random(500)
    assert abs(spearman(u, v)) < 0.15


def test_error_by_uncertainty_bins_by_quantiles_of_the_std():
    std = np.arange(100, dtype=float)
    error = 2 * std
    curve = error_by_uncertainty(std, error, bins=5)
    assert len(curve) == 5
    np.testing.assert_allclose([s for s, _ in curve], [9.5, 29.5, 49.5, 69.5, 89.5])
    np.testing.assert_allclose([e for _, e in curve], [19.0, 59.0, 99.0, 139.0, 179.0])


def test_markdown_and_markers():
    score = {"model": "ldm", "task": "t1ce <- t1", "seed": 1, "backend": "onnx", "brain_psnr": 20.0, "brain_ssim": 0.5,
             "tumour_psnr": None, "tumour_ssim": None, "spearman": 0.25, "wall_s": 3.0, "cpu_s": None}
    summary = {"scores": [score, {**score, "backend": "torch", "wall_s": 5.0, "cpu_s": 9.0}],
               "training": {"ldm": {"steps": 100, "minutes": 9.5, "best_step": 75, "val_psnr": 18.0}},
               "backend_parity": {"ldm": 2e-6}, "calibration_curve": {"ldm": [(0.1, 0.2)] * 5}}
    table = markdown(summary)
    assert "| t1ce <- t1 | ldm | 20.00 | 0.500 | - | - | +0.250 |" in table
    assert "| ldm | 100 steps, 9.5 min, exported step 75 | 3.0, - | 5.0, 9.0 | 2.0e-06 |" in table
    text = f"intro\n{START}\nold\n{END}\noutro\n"
    replaced = replace_between_markers(text, table)
    assert replaced.startswith("intro\n") and replaced.endswith("outro\n") and "old" not in replaced
    assert table in replaced
    assert replace_between_markers("no markers", "T").endswith(f"{START}\nT\n{END}\n")


def test_seed_set_names_configs_and_writes_its_own_block():
    from training.experiments.methods_table import MODEL_SETS

    seed = MODEL_SETS["seed"]
    assert seed.config("msgldm") == "msgldm-phantom-methods" and MODEL_SETS["kinds"].config("ldm") == "phantom-methods-ldm"
    labels = [label for label, _ in seed.models]
    assert labels[0] == "regression baseline" and {"MSG-LDM", "VQ-Seq2Seq", "SSCF", "3D-WLDM"} <= set(labels)
    configs = REPO / "training" / "configs"
    for _, source in seed.models:
        if not source.startswith("mrsynth-"):
            assert (configs / f"{seed.config(source)}.yaml").is_file(), source
    score = {"model": "SSCF", "task": "flair <- t2", "seed": 1, "backend": "auto", "engine": "onnx", "brain_psnr": 12.0,
             "brain_ssim": 0.4, "tumour_psnr": 10.0, "tumour_ssim": 0.2, "spearman": None, "wall_s": 2.0, "cpu_s": 3.0}
    summary = {"scores": [score, {**score, "model": "regression baseline", "engine": "torch"}], "training": {},
               "backend_parity": {}, "calibration_curve": {},
               "sources": {"SSCF": "sscf", "regression baseline": "regression"}}
    table = markdown(summary)
    assert "| regression baseline | trees, see its card (no step budget) | 2.0, 3.0 | torch |" in table
    text = f"{START}\nkinds\n{END}\n{seed.markers[0]}\nold\n{seed.markers[1]}\n"
    replaced = replace_between_markers(text, table, seed.markers)
    assert "kinds" in replaced and "old" not in replaced and table in replaced
