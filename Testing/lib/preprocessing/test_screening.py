"""Input screening (MRSynthLib.preprocessing.screening): the math, and the built-in model's contributions responding to a
corrupted input (an input replaced by noise loses its contribution; clean inputs are left alone)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from MRSynthLib.errors import BundleError
from MRSynthLib.preprocessing.screening import ScreeningConfig, block_errors, box_mean, keep_masks, summary

FUSION_MODEL = "mrsynth-phantom-fsq"  # the built-in network bundle (the default is a regression bundle: no screening)


def test_block_errors_average_each_block_then_smooth():
    images = np.zeros((1, 4, 4, 8), np.float32)
    reconstructions = images.copy()
    reconstructions[0, :2, :2, :2] = 0.8  # one 2x2x2 block off by 0.8 everywhere, half of another by 0.4
    reconstructions[0, :2, :2, 4:6] = -0.4
    reconstructions[0, :1, :2, 4:6] = 0.0
    errors = block_errors(images, reconstructions, downsampling=2, smoothing=1)
    assert errors.shape == (1, 2, 2, 4)
    np.testing.assert_allclose(errors[0, 0, 0], [0.8, 0.0, 0.2, 0.0], atol=1e-6)
    assert errors[0, 1].max() == 0.0


def test_box_mean_keeps_constants_and_spreads_a_spike():
    constant = np.full((2, 5, 5, 5), 3.0, np.float32)
    np.testing.assert_allclose(box_mean(constant, 3), constant)
    spike = np.zeros((1, 5, 5, 5), np.float32)
    spike[0, 2, 2, 2] = 27.0
    smoothed = box_mean(spike, 3)
    np.testing.assert_allclose(smoothed[0, 1:4, 1:4, 1:4], 1.0)
    assert smoothed.sum() == pytest.approx(27.0)


def test_keep_masks_exclude_above_the_cut_and_keep_everything_where_nothing_would_be_kept():
    config = ScreeningConfig(error_scale={"t1": 0.1, "t2": 0.2}, cut=1.2)
    errors = np.array([[0.11, 0.13, 0.5], [0.1, 0.1, 0.5]], np.float32).reshape(2, 1, 1, 3)
    keep = keep_masks(errors, ["t1", "t2"], config)[:, 0, 0]
    np.testing.assert_array_equal(keep, [[1, 0, 1], [1, 1, 1]])  # column 3: both over the cut -> both kept
    assert summary({"t1": keep[0], "t2": keep[1]}) == {"t1": pytest.approx(1 / 3, abs=1e-4), "t2": 0.0}
    with pytest.raises(BundleError, match="no error scale for flair"):
        keep_masks(errors, ["t1", "flair"], config)


def test_malformed_card_sections_are_one_sentence():
    assert ScreeningConfig.from_card({}) is None
    with pytest.raises(BundleError, match="calibrate_screening"):
        ScreeningConfig.from_card({"screening": {"error_scale": {"t1": 0.1}, "power": 3}})
    with pytest.raises(BundleError, match="positive"):
        ScreeningConfig.from_card({"screening": {"error_scale": {"t1": -1.0}}})


# --- the built-in model ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A held-out-style phantom (seed 910, 2 mm) and a copy of its t1 replaced by uniform noise."""
    from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case

    folder = tmp_path_factory.mktemp("screening")
    phantom = generate_phantom(PhantomConfig(seed=910, size=(80, 96, 80), spacing=(2.0, 2.0, 2.0), ms_lesions=3))
    write_phantom_case(phantom, folder / "case")
    t1 = sitk.GetArrayFromImage(phantom.images["t1"])
    brain = sitk.GetArrayFromImage(phantom.brain_mask) > 0
    noise = np.random.default_rng(1).uniform(0, np.percentile(t1[brain], 99), t1.shape).astype(np.float32)
    image = sitk.GetImageFromArray(noise)
    image.CopyInformation(phantom.images["t1"])
    sitk.WriteImage(image, str(folder / "t1-noise.nii.gz"))
    return {"folder": folder, "brain": brain}


def _inputs(case, t1: str) -> dict:
    folder = case["folder"]
    return {"t1": folder / t1, "t2": folder / "case" / "t2.nii.gz", "flair": folder / "case" / "flair.nii.gz"}


def _mean_contributions(result, brain) -> dict[str, float]:
    return {name: float(sitk.GetArrayFromImage(image)[brain].mean()) for name, image in result.contributions.items()}


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_an_input_replaced_by_noise_loses_its_contribution(case, backend):
    from MRSynthLib.synthesis import synthesize

    model = FUSION_MODEL  # screening is a fusion-bundle feature
    clean = synthesize(_inputs(case, "case/t1.nii.gz"), "t1ce", model=model, backend=backend)
    noisy = synthesize(_inputs(case, "t1-noise.nii.gz"), "t1ce", model=model, backend=backend)
    unscreened = synthesize(_inputs(case, "t1-noise.nii.gz"), "t1ce", model=model, backend=backend, screen=False)
    shares = {label: _mean_contributions(r, case["brain"]) for label, r in
              (("clean", clean), ("noisy", noisy), ("unscreened", unscreened))}
    # t1 carries most of t1ce; replaced by noise, screening excludes it and its share collapses
    assert shares["clean"]["t1"] > 0.6
    assert shares["noisy"]["t1"] < 0.1 < shares["clean"]["t1"] - 0.5
    assert shares["noisy"]["t2"] + shares["noisy"]["flair"] > 0.9
    # without screening the gates alone do not notice the noise (why screening exists)
    assert shares["unscreened"]["t1"] > 0.5
    excluded = {label: r.provenance["input_screening"]["excluded_fraction"] for label, r in
                (("clean", clean), ("noisy", noisy))}
    assert max(excluded["clean"].values()) < 0.02
    assert excluded["noisy"]["t1"] > 0.9 and max(excluded["noisy"]["t2"], excluded["noisy"]["flair"]) < 0.02
    assert unscreened.provenance["input_screening"] == {"applied": False, "reason": "switched off (--no-screening)"}


def test_cli_says_which_input_was_treated_as_missing(case, tmp_path):
    folder = case["folder"]
    command = [sys.executable, "-m", "MRSynthLib.commands.cli", "synthesize", "--model", FUSION_MODEL,
               "--input", f"t1={folder / 't1-noise.nii.gz'}",
               "--input", f"t2={folder / 'case' / 't2.nii.gz'}", "--target", "flair",
               "--output", str(tmp_path / "flair.nii.gz")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    note = [line for line in done.stderr.splitlines() if "note:" in line]
    assert len(note) == 1 and "input t1" in note[0] and "treated as missing" in note[0], done.stderr
    sidecar = json.loads((tmp_path / "flair.json").read_text())
    assert sidecar["input_screening"]["applied"] is True
    assert sidecar["input_screening"]["excluded_fraction"]["t1"] > 0.9
