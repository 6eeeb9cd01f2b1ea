"""Inference backends: ONNX export, torch/onnxruntime parity, sliding windows, backend choice, torch-free runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from MRSynthLib.runtime.backends import choose_backend
from MRSynthLib.models.bundle import load_bundle
from MRSynthLib.errors import BundleError, MRSynthError
from MRSynthLib.runtime.inference import blend_weights, dropout_masks, plan_windows, predict, upsample_linear
from MRSynthLib.runtime.onnx_backend import OnnxEngine, has_onnx_parts
from MRSynthLib.synthesis import synthesize
from MRSynthLib.runtime.torch_backend import TorchEngine
from support.images import blob_array, make_image
from support.processes import synthesize_without_torch
from support.bundles import random_bundle
from training.bundles.onnx_export import add_onnx_parts



@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory):
    folder = random_bundle(tmp_path_factory.mktemp("bundles") / "with-onnx")
    add_onnx_parts(folder)
    return load_bundle(folder)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("case")
    paths = {}
    for i, name in enumerate(("t1", "t2", "flair")):
        array = blob_array((28, 32, 36), seed=i) * (1.0 + i)
        path = folder / f"{name}.nii.gz"
        sitk.WriteImage(make_image(array.astype(np.float32), spacing=(3.0, 3.5, 4.0)), str(path))
        paths[name] = path
    return paths


def _arrays(result):
    out = {"synthetic": sitk.GetArrayFromImage(result.synthetic),
           "uncertainty": sitk.GetArrayFromImage(result.uncertainty)}
    out.update({f"contribution {k}": sitk.GetArrayFromImage(v) for k, v in result.contributions.items()})
    return out


def test_export_records_graphs_hashes_and_parity(onnx_bundle):
    card = onnx_bundle.card
    assert has_onnx_parts(onnx_bundle)
    meta = card.networks["onnx"]
    assert set(meta["graphs"]) == {"encoder", "translator_fuse", "translator_head", "decoder"}
    assert all(path in card.weights for path in meta["graphs"].values())
    assert meta["parity"]["max_relative_difference"] < 1e-4
    assert meta["exported_with"]["torch"] == torch.__version__
    assert not any(p.name.startswith(".onnx-export") for p in onnx_bundle.path.parent.iterdir())  # staging removed


def test_backends_agree_end_to_end_within_1e4(onnx_bundle, case):
    """Same bundle, same inputs: every output of the two backends agrees to float32 precision."""
    runs = {}
    for backend in ("torch", "onnx"):
        result = synthesize(case, "t1ce", model=onnx_bundle, samples=4, seed=5, backend=backend)
        assert result.provenance["backend"] == backend
        runs[backend] = _arrays(result)
    for key, reference in runs["torch"].items():
        scale = max(float(np.abs(reference).max()), 1e-6)
        assert np.abs(runs["onnx"][key] - reference).max() / scale < 1e-4, key
    assert runs["torch"]["uncertainty"].max() > 0  # the stochastic passes really differ


def test_every_input_subset_runs_on_onnx(onnx_bundle, case):
    for subset in (("t1",), ("t2", "flair"), ("t1", "t2", "flair")):
        result = synthesize({k: case[k] for k in subset}, "pd", model=onnx_bundle, backend="onnx")
        assert set(result.contributions) == set(subset)
        assert result.synthetic.GetSize() == sitk.ReadImage(str(case[subset[0]])).GetSize()


def test_upsample_matches_torch_trilinear():
    array = np.random.default_rng(0).random((3, 4, 5, 6), dtype=np.float32)
    expected = F.interpolate(torch.from_numpy(array)[None], scale_factor=4, mode="trilinear", align_corners=False)[0]
    np.testing.assert_allclose(upsample_linear(array, 4), expected.numpy(), atol=1e-6)


def test_dropout_masks_are_seeded_and_unbiased():
    a, b = dropout_masks(8, 64, 0.25, seed=1), dropout_masks(8, 64, 0.25, seed=1)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.75)}
    assert abs(dropout_masks(200, 200, 0.25, seed=2).mean() - 1.0) < 0.02
    assert not np.array_equal(a, dropout_masks(8, 64, 0.25, seed=2))


@pytest.mark.parametrize("shape, window, overlap, multiple", [
    ((64, 76, 64), 32, 8, 4), ((256, 256, 200), 128, 16, 4), ((20, 20, 20), 16, 4, 4),
    ((192, 192, 128), 64, 16, 64),  # wldm-brats: 4x autoencoder x 16x denoiser; its 64-voxel window looped forever
])
def test_window_plan_covers_volume_with_overlap(shape, window, overlap, multiple):
    plan = plan_windows(shape, window, overlap, multiple)
    covered = np.zeros(shape, np.int32)
    weights = np.zeros(shape, np.float32)
    for start in plan.windows():
        assert all(s % multiple == 0 for s in start)
        where = tuple(slice(s, s + n) for s, n in zip(start, plan.size))
        covered[where] += 1
        weights[where] += blend_weights(start, plan.size, shape, plan.overlap)
    assert covered.min() >= 1
    assert weights.min() > 0
    for axis, starts in enumerate(plan.starts):
        if len(starts) > 1:
            assert plan.size[axis] - max(np.diff(starts)) >= overlap


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([4, 8, 16, 32, 64]), st.lists(st.integers(1, 8), min_size=3, max_size=3),
       st.integers(1, 160), st.integers(0, 40))
def test_window_plan_always_ends_on_the_grid_with_its_overlap(multiple, cells, window, overlap):
    """Any grid (a deep denoiser's may be 64 voxels), volume, window and overlap: a plan or one sentence, never a hang."""
    shape = tuple(c * multiple for c in cells)
    try:
        plan = plan_windows(shape, window, overlap, multiple)
    except MRSynthError as error:
        assert "overlap" in str(error)
        return
    for axis, starts in enumerate(plan.starts):
        assert all(s % multiple == 0 for s in starts) and starts[0] == 0 and starts[-1] + plan.size[axis] == shape[axis]
        if len(starts) > 1:
            assert plan.size[axis] - max(np.diff(starts)) >= overlap


def test_small_volume_is_one_window_by_default():
    assert plan_windows((64, 76, 64), None, 16, 4).count == 1
    assert plan_windows((256, 256, 200), None, 16, 4).count > 1
    with pytest.raises(MRSynthError, match="overlap"):
        plan_windows((64, 64, 64), 8, 8, 4)


def test_sliding_window_matches_whole_volume_away_from_seams(onnx_bundle):
    """Windows with overlap reproduce the whole-volume result where every window sees enough context."""
    engine = OnnxEngine(onnx_bundle)
    rng = np.random.default_rng(0)
    arrays = {"t1": rng.random((48, 48, 48), dtype=np.float32), "t2": rng.random((48, 48, 48), dtype=np.float32)}
    whole = predict(engine, arrays, "flair", window=0)
    tiled = predict(engine, arrays, "flair", window=32, overlap=16)
    assert tiled.windows > 1 and whole.windows == 1
    total = sum(tiled.contributions.values())
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    # windows change only what the networks see near window borders: the result stays close overall
    # (random weights amplify context effects; trained models differ less) ...
    difference = np.abs(tiled.synthetic - whole.synthetic)
    assert difference.mean() < 0.15 * np.abs(whole.synthetic).mean()
    # ... and one window as large as the volume is exactly the whole-volume pass
    single = predict(engine, arrays, "flair", window=48, overlap=16)
    assert single.windows == 1
    np.testing.assert_array_equal(single.synthetic, whole.synthetic)


def test_backend_choice(onnx_bundle, tmp_path):
    plain = load_bundle(random_bundle(tmp_path / "plain"))
    assert choose_backend(onnx_bundle, "auto", "cpu") == "onnx"
    assert choose_backend(plain, "auto", "cpu") == "torch"
    assert choose_backend(onnx_bundle, "torch", "cpu") == "torch"
    with pytest.raises(MRSynthError, match="CPU only"):
        choose_backend(onnx_bundle, "onnx", "cuda")
    with pytest.raises(BundleError, match="export-onnx"):
        OnnxEngine(plain)


def test_tampered_onnx_graph_is_refused(onnx_bundle, tmp_path):
    import shutil

    copy = tmp_path / "tampered"
    shutil.copytree(onnx_bundle.path, copy)
    graph = copy / "onnx" / "decoder.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(copy)


def test_onnx_backend_runs_without_torch(onnx_bundle, case, tmp_path):
    """A real process in which `import torch` fails: the CLI still synthesizes with onnxruntime."""
    output = tmp_path / "out.nii.gz"
    done = synthesize_without_torch(["--model", onnx_bundle.path, "--input", f"t1={case['t1']}", "--target", "flair",
                                     "--output", output, "--samples", "2", "--progress", "none"])
    assert done.returncode == 0, done.stderr
    sidecar = json.loads(output.with_name("out.json").read_text())
    assert sidecar["backend"] == "onnx"
