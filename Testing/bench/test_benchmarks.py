"""The benchmark keeps working: FLOP counting is right, and ``--quick`` runs end to end (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from support.paths import REPO

if str(REPO) not in sys.path:  # `benchmarks` is a top-level folder of the repository, not an installed package
    sys.path.insert(0, str(REPO))

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from benchmarks.flops import graph_flops  # noqa: E402

BUNDLE = REPO / "Resources" / "Models" / "mrsynth-phantom-fsq"


def _save(tmp_path, nodes, inputs, outputs, weights):
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              initializer=[numpy_helper.from_array(np.zeros(s, np.float32), n) for n, s in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "g.onnx"
    onnx.save(model, path)
    return path


def test_flops_of_conv_convtranspose_gemm_with_dynamic_shapes(tmp_path):
    dynamic = ["b", 2, "z", "y", "x"]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1] * 6, strides=[2, 2, 2], kernel_shape=[3, 3, 3]),
        helper.make_node("ConvTranspose", ["h", "w2"], ["y"], strides=[2, 2, 2], kernel_shape=[2, 2, 2]),
        helper.make_node("Gemm", ["a", "w3"], ["c"], transB=1),
    ]
    path = _save(tmp_path, nodes,
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, dynamic),
                  helper.make_tensor_value_info("a", TensorProto.FLOAT, ["m", 5])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                  helper.make_tensor_value_info("c", TensorProto.FLOAT, None)],
                 {"w1": (3, 2, 3, 3, 3), "w2": (3, 4, 2, 2, 2), "w3": (7, 5)})
    flops = graph_flops(path, {"x": (2, 2, 8, 10, 12), "a": (6, 5)})
    conv = (2 * 3 * 4 * 5 * 6) * (2 * 27)  # outputs x (C_in x kernel)
    transposed = (2 * 3 * 4 * 5 * 6) * (4 * 8)  # inputs x (C_out x kernel)
    gemm = 6 * 7 * 5
    assert flops == 2 * (conv + transposed + gemm)


@pytest.mark.slow
def test_flops_of_the_default_bundle_match_torch_flop_counter():
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from MRSynthLib.runtime.onnx_backend import has_onnx_parts
    from MRSynthLib.models.registry import resolve_model
    from MRSynthLib.runtime.torch_backend import TorchEngine

    bundle = resolve_model(str(BUNDLE))
    if not has_onnx_parts(bundle):
        pytest.skip("the built-in bundle has no ONNX graphs yet")
    engine = TorchEngine(bundle, "cpu")
    image = torch.zeros(1, 1, 12, 16, 20)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        latents = engine.autoencoder.encode(image)
        engine.autoencoder.decode(latents)
    counted = (graph_flops(BUNDLE / "onnx" / "encoder.onnx", {"image": tuple(image.shape)})
               + graph_flops(BUNDLE / "onnx" / "decoder.onnx", {"latents": tuple(latents.shape)}))
    assert counted == counter.get_total_flops()


@pytest.mark.slow
def test_quick_benchmark_runs_end_to_end_and_writes_its_report(tmp_path):
    report = tmp_path / "PERFORMANCE.md"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--model", "mrsynth-phantom-fsq", "--work-dir",
         str(tmp_path / "work"), "--cache", str(tmp_path / "cache"), "--output", str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    results = json.loads((tmp_path / "work" / "results.json").read_text())
    assert results["runs"] and all("result" in run for run in results["runs"])
    assert "--model mrsynth-phantom-fsq" in results["command"]
    for run in results["runs"]:
        assert run["process"]["peak_rss_bytes"] > 50 * 2**20  # an interpreter with numpy and SimpleITK
        assert run["result"]["end_to_end_s"] > 0
        assert {"read", "preprocess", "encode", "decode", "postprocess", "write"} <= set(run["result"]["timings_s"])
        stage_cpu = run["result"]["stage_cpu_s"]
        assert {"read", "preprocess", "load_model", "encode", "decode", "write"} <= set(stage_cpu)
        assert 0 < sum(stage_cpu.values()) <= run["result"]["end_to_end_cpu_s"] + 1e-6  # stages lie inside the run
        assert run["result"]["graphs"]["encoder"]["flops"] > 0
        assert run["result"]["graphs"]["encoder"]["calls"] == 3 * run["result"]["windows"]  # one per input and window
    windowed = [r for r in results["runs"] if r["config"]["window"]]
    assert windowed and all(r["result"]["windows"] > 1 for r in windowed)
    registered = [r for r in results["runs"] if "registered" in " ".join(r["result"]["alignment"].values())]
    assert registered  # the clinical-style case registers its thick-slice FLAIR
    text = report.read_text()
    for heading in ("## Targets", "## Machine", "## Wall time per stage", "## Networks", "## Method"):
        assert heading in text
    for run in results["runs"]:
        assert f"| {run['label']} |" in text
    again = tmp_path / "again.md"
    subprocess.run([sys.executable, "-m", "benchmarks.run", "--from-results", str(tmp_path / "work" / "results.json"),
                    "--output", str(again)], cwd=REPO, check=True, capture_output=True, timeout=120)
    assert again.read_text() == text  # the report is a function of the results alone


@pytest.mark.slow
def test_quick_benchmark_of_the_default_regression_model(tmp_path):
    """The default model is a regression bundle: numpy backend, its own stages, no network sections."""
    report = tmp_path / "PERFORMANCE.md"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--work-dir", str(tmp_path / "work"),
         "--cache", str(tmp_path / "cache"), "--output", str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    results = json.loads((tmp_path / "work" / "results.json").read_text())
    assert results["bundle"].startswith("mrsynth-regression") and results["throughput"] == []
    assert {run["config"]["backend"] for run in results["runs"]} == {"numpy"}
    for run in results["runs"]:
        assert {"features", "trees"} <= set(run["result"]["timings_s"]) and run["result"]["graphs"] == {}
        assert ("uncertainty" in run["result"]["timings_s"]) == (run["config"]["samples"] > 1)
    text = report.read_text()
    assert "| deterministic end-to-end | numpy |" in text and "## Networks" not in text
    assert "A regression bundle (numpy trees per voxel" in text


def _itk_to_reference(space, array, background):
    """The whole-grid ITK resample that ``ModelSpace.to_reference`` replaced (linear, identity transform)."""
    import SimpleITK as sitk

    from MRSynthLib.files.imageio import array_to_image

    core = array[tuple(slice(p, p + s) for p, s in zip(space.pad_before, space.crop_shape))]
    full = np.full(tuple(reversed(space.model_grid.GetSize())), background, dtype=np.float32)
    full[tuple(slice(c, c + s) for c, s in zip(space.crop_start, space.crop_shape))] = core
    image = sitk.Resample(array_to_image(full, space.model_grid), space.oriented_grid, sitk.Transform(),
                          sitk.sitkLinear, background, sitk.sitkFloat32)
    orientation = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(space.reference.GetDirection())
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, orientation))


@pytest.mark.parametrize("grid", ["oblique", "head_fills_view", "ras", "anisotropic"])
def test_separable_to_reference_matches_the_whole_grid_itk_resample(grid):
    """The benchmark-driven speed-up of ``to_reference`` (numpy, only the reachable box) keeps ITK's values."""
    import SimpleITK as sitk

    from support.images import blob_array, make_image
    from MRSynthLib.files.imageio import image_to_array
    from MRSynthLib.preprocessing.preprocess import PreprocessSpec, to_model_space

    image = make_image(blob_array((30, 34, 38)), spacing=(1.0, 1.1, 1.3))
    if grid == "oblique":
        rotation = np.asarray(sitk.Euler3DTransform((0, 0, 0), 0.2, -0.1, 0.3).GetMatrix()).reshape(3, 3)
        image.SetDirection(tuple((rotation @ np.diag([-1.0, 1.0, -1.0])).ravel()))
    elif grid == "head_fills_view":
        image = sitk.RegionOfInterest(image, [26, 22, 18], [6, 6, 6])
    elif grid == "ras":
        image = sitk.DICOMOrient(image, "RAS")
    else:
        image.SetSpacing((0.7, 1.9, 2.9))
    space = to_model_space({"t1": image}, PreprocessSpec(spacing=(2.0, 2.0, 2.0), margin_mm=2.0))
    assert space.resampled
    values = np.random.default_rng(0).random(space.shape).astype(np.float32) + 0.5
    for background in (0.0, -3.0):
        fast = space.to_reference(values, background=background)
        assert fast.GetSize() == image.GetSize() and fast.GetOrigin() == image.GetOrigin()
        np.testing.assert_allclose(image_to_array(fast), _itk_to_reference(space, values, background), atol=2e-6)
