"""PSNR / SSIM / MAE match scikit-image; the evaluation protocol is explicit and JSON-able."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from MRSynthLib.errors import InputImageError
from MRSynthLib.quality.metrics import (
    EvaluationProtocol,
    evaluate_images,
    evaluate_volumes,
    mae,
    normalise,
    psnr,
    ssim3d,
    ssim_map,
)


def _pair(seed: int = 0, shape=(20, 24, 22)) -> tuple[np.ndarray, np.ndarray]:
    """Smooth-ish reference and a noisy, slightly shifted prediction."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    reference = np.exp(-(x**2 + 2 * y**2 + 1.5 * z**2) * 2) + 0.3 * (x > 0.2)
    prediction = np.roll(reference, 1, axis=2) * 0.95 + rng.normal(0, 0.05, shape)
    return reference, prediction


def _documented_foreground(ref: np.ndarray) -> np.ndarray:
    """The documented default brain mask: above p0.5 + 1% of (p99.5 - p0.5)."""
    low, high = np.percentile(ref, [0.5, 99.5])
    return ref > low + 0.01 * (high - low)


def _skimage_ssim(ref, pred, data_range, **kw):
    return structural_similarity(
        ref, pred, data_range=data_range, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, **kw,
    )


def test_ssim3d_matches_skimage_unmasked():
    ref, pred = _pair()
    ours = ssim3d(ref, pred, data_range=1.3)
    assert ours == pytest.approx(_skimage_ssim(ref, pred, 1.3), abs=1e-4)
    assert 0.0 < ours < 1.0
    assert ssim3d(ref, ref, data_range=1.3) == pytest.approx(1.0)


def test_ssim_map_and_masked_mean_match_skimage_full_map():
    ref, pred = _pair(1)
    _, full = _skimage_ssim(ref, pred, 2.0, full=True)
    np.testing.assert_allclose(ssim_map(ref, pred, 2.0), full, atol=1e-6)
    mask = np.zeros(ref.shape, dtype=np.uint8)
    mask[3:15, 2:20, 4:9] = 1
    assert ssim3d(ref, pred, mask=mask, data_range=2.0) == pytest.approx(
        full[mask > 0].mean(), abs=1e-6
    )


def test_ssim3d_default_data_range_is_reference_range_in_mask():
    ref, pred = _pair(2)
    mask = ref > 0.5
    expected = ssim3d(ref, pred, mask=mask, data_range=float(ref[mask].max() - ref[mask].min()))
    assert ssim3d(ref, pred, mask=mask) == pytest.approx(expected)


def test_ssim3d_small_volume_needs_mask():
    ref, pred = _pair(shape=(8, 16, 16))
    with pytest.raises(InputImageError, match="larger than 11 voxels"):
        ssim3d(ref, pred, data_range=1.0)
    assert 0.0 < ssim3d(ref, pred, mask=np.ones(ref.shape), data_range=1.0) < 1.0


def test_psnr_and_mae_match_skimage_and_numpy():
    ref, pred = _pair(3)
    assert psnr(ref, pred, data_range=1.3) == pytest.approx(
        peak_signal_noise_ratio(ref, pred, data_range=1.3), abs=1e-9
    )
    mask = ref > 0.4
    assert psnr(ref, pred, mask=mask, data_range=1.0) == pytest.approx(
        peak_signal_noise_ratio(ref[mask], pred[mask], data_range=1.0)
    )
    assert mae(ref, pred, mask) == pytest.approx(np.abs(ref - pred)[mask].mean())
    assert psnr(ref, ref, data_range=1.0) == math.inf


@settings(max_examples=25, deadline=None)
@given(
    scale=st.floats(0.1, 100.0), offset=st.floats(-50.0, 50.0), seed=st.integers(0, 2**16)
)
def test_percentile_protocol_ignores_global_intensity_scaling(scale, offset, seed):
    """MR intensities are arbitrary: a linearly rescaled prediction scores the same."""
    ref, pred = _pair(seed, shape=(14, 14, 14))
    brain = np.zeros(ref.shape, dtype=bool)
    brain[2:12, 2:12, 2:12] = True
    a = evaluate_volumes(ref, pred, brain)
    b = evaluate_volumes(ref, pred * scale + offset, brain)
    for key in ("psnr", "ssim", "mae"):
        assert b["brain"][key] == pytest.approx(a["brain"][key], rel=1e-6, abs=1e-9)


def test_normalise_percentile_maps_own_percentiles_to_unit_range():
    ref, _ = _pair()
    brain = ref > 0.05
    out = normalise(ref * 7 + 3, brain, EvaluationProtocol())
    assert out.min() == 0.0 and out.max() == 1.0
    low, high = np.percentile(out[brain], [0.5, 99.5])
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(1.0)
    z = normalise(ref, brain, EvaluationProtocol(normalisation="zscore"))
    assert z[brain].mean() == pytest.approx(0.0, abs=1e-12) and z[brain].std() == pytest.approx(1.0)


def test_evaluate_volumes_result_is_json_and_states_protocol():
    ref, pred = _pair(4)
    tumour = np.zeros(ref.shape, dtype=np.uint8)
    tumour[8:12, 10:14, 9:13] = 1
    result = evaluate_volumes(ref, pred, None, {"tumour": tumour, "empty": np.zeros(ref.shape)})
    result = json.loads(json.dumps(result, allow_nan=False))
    assert set(result) == {"protocol", "brain", "regions"}
    assert result["brain"]["mask"] == "foreground"
    assert result["brain"]["voxels"] == int(_documented_foreground(ref).sum())
    assert set(result["regions"]) == {"tumour"}  # empty regions are omitted
    assert result["regions"]["tumour"]["voxels"] == 64
    assert 0 < result["brain"]["ssim"] < 1 and result["brain"]["psnr"] > 10
    assert "OWN 0.5th..99.5th percentiles" in result["protocol"]["description"]
    assert result["protocol"]["data_range_used"] == 1.0
    same = evaluate_volumes(ref, ref, None, None)
    assert same["brain"]["psnr"] is None and same["brain"]["ssim"] == pytest.approx(1.0)


def test_protocol_validation_and_descriptions():
    with pytest.raises(InputImageError, match="normalisation"):
        EvaluationProtocol(normalisation="histogram")
    with pytest.raises(InputImageError, match="percentiles"):
        EvaluationProtocol(percentiles=(99.0, 1.0))
    for normalisation in ("percentile", "minmax", "zscore", "none"):
        for source in ("auto", "provided", "foreground", "all"):
            text = EvaluationProtocol(normalisation=normalisation, mask_source=source).describe()
            assert text.endswith(".") and text.count(". ") == 0
    ref, pred = _pair(5)
    with pytest.raises(InputImageError, match="brain_mask"):
        evaluate_volumes(ref, pred, None, None, EvaluationProtocol(mask_source="provided"))
    raw = evaluate_volumes(ref, pred, None, None, EvaluationProtocol(normalisation="none"))
    brain = _documented_foreground(ref)
    assert raw["protocol"]["data_range_used"] == pytest.approx(ref[brain].max() - ref[brain].min())


def _image(array: np.ndarray, spacing=(1.0, 1.0, 2.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((10.0, -5.0, 3.0))
    return image


def test_evaluate_images_regions_from_label_map_and_grid_checks():
    ref, pred = _pair(6)
    labels = np.zeros(ref.shape, dtype=np.uint8)
    labels[5:9, 5:9, 5:9] = 5
    labels[9:11, 5:9, 5:9] = 6
    brain = (ref > 0.05).astype(np.uint8)
    result = evaluate_images(
        _image(ref.astype(np.float32)), _image(pred.astype(np.float32)),
        brain_mask=_image(brain), label_map=_image(labels),
    )
    assert result["brain"]["mask"] == "provided"
    assert result["brain"]["voxels"] == int(brain.sum())
    assert set(result["regions"]) == {"tumour", "enhancing"}  # no label 7: no lesion region
    assert result["regions"]["tumour"]["voxels"] == 96
    assert result["regions"]["enhancing"]["voxels"] == 64
    direct = evaluate_volumes(
        ref.astype(np.float32), pred.astype(np.float32), brain,
        {"tumour": np.isin(labels, [4, 5, 6]), "enhancing": labels == 5},
    )
    assert result == direct

    with pytest.raises(InputImageError, match="`prediction` must be on the reference grid.*spacing"):
        evaluate_images(_image(ref), _image(pred, spacing=(1.0, 1.0, 1.0)))
    with pytest.raises(InputImageError, match="`label_map` must be on the reference grid.*size"):
        evaluate_images(_image(ref), _image(pred), label_map=_image(labels[1:]))


def test_default_brain_mask_ignores_negative_ringing():
    """Resampled scans have small negative ringing; it must not turn the background into brain."""
    ref = np.zeros((16, 16, 16))
    ref[4:12, 4:12, 4:12] = 100.0
    ringing = ref.copy()
    ringing[0, 0, :3] = [-40.0, -25.0, -10.0]
    for volume in (ref, ringing):
        result = evaluate_volumes(volume, volume * 0.9, None, None)
        assert result["brain"]["voxels"] == 512
