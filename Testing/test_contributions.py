"""Contribution maps respond to the inputs: an input replaced by noise loses its share (shipped default model)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case
from MRSynthLib.registry import DEFAULT_MODEL, resolve_model
from MRSynthLib.synthesis import synthesize

INPUTS = ("t1", "t2", "flair")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("contrib")
    phantom = generate_phantom(PhantomConfig(size=(64, 76, 64), spacing=(2.5, 2.5, 2.5), seed=911, tumour=True))
    write_phantom_case(phantom, folder / "case", overwrite=True)
    return folder


def _brain_share(result, mask) -> dict[str, float]:
    return {name: float(sitk.GetArrayFromImage(image)[mask].mean()) for name, image in result.contributions.items()}


@pytest.mark.slow
def test_input_replaced_by_noise_loses_contribution(case):
    """t1 carries most of the t1ce prediction (share ~0.79 in the brain); replaced by uniform noise its share
    drops (measured 0.79 -> 0.71 with mrsynth-default 1.0.0: the gates respond, but modestly — the translator
    saw corrupted inputs in only 30% of 400 training steps; see docs/MODEL_CARD.md)."""
    noisy = "t1"
    bundle = resolve_model(DEFAULT_MODEL)
    inputs = {c: case / "case" / f"{c}.nii.gz" for c in INPUTS}
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "case" / "brainmask.nii.gz"))) > 0
    clean = _brain_share(synthesize(inputs, "t1ce", model=bundle, backend="onnx"), mask)

    original = sitk.ReadImage(str(inputs[noisy]))
    array = sitk.GetArrayFromImage(original)
    noise = np.random.default_rng(0).random(array.shape).astype(np.float32) * float(array.max())
    image = sitk.GetImageFromArray(noise)
    image.CopyInformation(original)
    noise_path = case / f"noise-{noisy}.nii.gz"
    sitk.WriteImage(image, str(noise_path))
    corrupted = _brain_share(synthesize({**inputs, noisy: noise_path}, "t1ce", model=bundle, backend="onnx"), mask)

    assert abs(sum(corrupted.values()) - 1.0) < 1e-3
    assert clean[noisy] > 0.5
    assert corrupted[noisy] < clean[noisy] - 0.04, (clean, corrupted)
