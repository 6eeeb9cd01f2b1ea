"""End to end outside Slicer: volume nodes → child process (the real CLI) → result nodes; compare; batch script.

Uses tiny random-weight bundles (plumbing only, never an image-quality result) on 24³ phantoms: one with
ONNX graphs (the CPU path Slicer users get, no torch in the child) and, in Compare, one torch-only bundle.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk
from support.bundles import random_bundle
from support.slicer_scene import MODULE_DIR, application_scene

# isort: split
from support.paths import REPO

# isort: split

from MRSynthSlicerLib import colors
from MRSynthSlicerLib.commands import SynthesisOptions
from MRSynthSlicerLib.compare import CompareRun
from MRSynthSlicerLib.hierarchy import parent_item_of, place_under
from MRSynthSlicerLib.process import ProgressEvent
from MRSynthSlicerLib.results import show_synthesis
from MRSynthSlicerLib.synthesis_run import SynthesisRun
from MRSynthSlicerLib.volumes import add_volume_node, array_from_volume_node, ijk_to_ras_of_node, same_geometry

from MRSynthLib.phantom import PhantomConfig, generate_phantom
from MRSynthLib.synthesis import synthesize

INPUTS = ("t1", "t2", "flair")


def _phantom():
    return generate_phantom(PhantomConfig(size=(24, 24, 24), spacing=(4.0, 4.0, 4.0), seed=11))


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory):
    """A random-weight bundle with ONNX graphs (exported and parity-checked by the training package)."""
    from training.bundles.onnx_export import add_onnx_parts

    return add_onnx_parts(random_bundle(tmp_path_factory.mktemp("onnx") / "bundle", name="random-onnx"))


@pytest.fixture(scope="module")
def synthesized(onnx_bundle):
    """One real child-process synthesis (samples 2, contribution maps) of nodes placed in a study."""
    bundle = onnx_bundle
    phantom = _phantom()
    app = application_scene()
    study = app.study()
    nodes = {}
    for contrast in INPUTS:
        nodes[contrast] = add_volume_node(app.scene, phantom.images[contrast], f"case-{contrast}")
        place_under(app.scene, nodes[contrast], study)
    options = SynthesisOptions("t1ce", model=str(bundle), device="cpu", samples=2, seed=3)
    run = SynthesisRun(app.scene, nodes, options).start()
    events, deadline = [], time.monotonic() + 120
    while run.outcome is None:  # as the GUI's timer does
        assert time.monotonic() < deadline
        events += run.poll()
        time.sleep(0.05)
    events += run.poll()
    outcome = run.outcome
    assert outcome.succeeded, outcome.error
    results = run.import_results()
    # The same synthesis in this process, straight from the exchanged files (deterministic pass).
    direct = synthesize({c: run.work_dir / "inputs" / f"{c}.nrrd" for c in INPUTS}, "t1ce", model=bundle, device="cpu",
                        backend="onnx")
    run.cleanup()
    return dict(app=app, study=study, inputs=nodes, run=run, events=events, outcome=outcome, results=results,
                direct=direct, bundle=bundle)


def test_outputs_are_on_the_inputs_grid_with_the_right_names(synthesized):
    results, inputs = synthesized["results"], synthesized["inputs"]
    assert results.synthetic.GetName() == "t1ce (synthetic, random-onnx)"
    assert results.uncertainty.GetName() == "t1ce uncertainty (synthetic, random-onnx)"
    assert {c: n.GetName() for c, n in results.contributions.items()} == {
        c: f"t1ce contribution of {c} (synthetic, random-onnx)" for c in INPUTS}
    reference = ijk_to_ras_of_node(inputs["t1"])
    for node in results.all_nodes():
        assert same_geometry(ijk_to_ras_of_node(node), reference, tolerance=1e-9), node.GetName()
        assert node.GetImageData().GetDimensions() == inputs["t1"].GetImageData().GetDimensions()


def test_the_synthetic_volume_equals_the_library_result(synthesized):
    expected = sitk.GetArrayFromImage(synthesized["direct"].synthetic)
    np.testing.assert_allclose(array_from_volume_node(synthesized["results"].synthetic), expected, atol=1e-5)


def test_progress_events_reach_one_in_order(synthesized):
    progress = [e for e in synthesized["events"] if isinstance(e, ProgressEvent)]
    stages = [e.stage for e in progress]
    assert stages[0] == "read" and stages[-1] == "done"
    assert any(s.startswith("encode") for s in stages) and "uncertainty" in stages
    overall = [e.overall for e in progress]
    assert overall == sorted(overall) and overall[-1] == 1.0
    assert len(synthesized["outcome"].result["outputs"]) == 10  # 5 volumes + 5 sidecars


def test_provenance_attributes_come_from_the_sidecar(synthesized):
    node = synthesized["results"].synthetic
    assert node.GetAttribute("MRSynth.notice") == "SYNTHETIC - not for diagnosis"
    assert node.GetAttribute("MRSynth.model") == "random-onnx"
    assert node.GetAttribute("MRSynth.backend") == "onnx"  # the CPU path: no torch in the child
    assert node.GetAttribute("MRSynth.modelVersion") == "0.0.0"
    assert node.GetAttribute("MRSynth.kind") == "synthetic"
    assert node.GetAttribute("MRSynth.target") == "t1ce"
    assert node.GetAttribute("MRSynth.seed") == "3" and node.GetAttribute("MRSynth.samples") == "2"
    assert node.GetAttribute("MRSynth.inputs") == "t1,t2,flair"
    assert node.GetAttribute("MRSynth.device") == "cpu"
    record = json.loads(node.GetAttribute("MRSynth.provenance"))
    assert record["bundle"]["sha256"] == node.GetAttribute("MRSynth.modelSha256") and len(record["bundle"]["sha256"]) == 64
    assert record["inputs"] == {c: f"volume node 'case-{c}'" for c in INPUTS}  # not the deleted temporary files
    assert "SYNTHETIC" in node.GetDescription()
    contribution = synthesized["results"].contributions["t2"]
    assert contribution.GetAttribute("MRSynth.kind") == "contribution" and contribution.GetAttribute("MRSynth.input") == "t2"


def test_maps_have_colour_tables_windows_and_sum_to_one(synthesized):
    results = synthesized["results"]
    uncertainty = results.uncertainty.GetDisplayNode()
    assert uncertainty.GetColorNode().GetName() == colors.UNCERTAINTY.name
    assert uncertainty.GetWindowLevelMin() == 0.0 and uncertainty.GetWindowLevelMax() > 0.0
    total = sum(array_from_volume_node(n) for n in results.contributions.values())
    head = array_from_volume_node(results.synthetic) > 0
    np.testing.assert_allclose(total[head], 1.0, atol=1e-4)
    for node in results.contributions.values():
        shown = node.GetDisplayNode()
        assert shown.GetColorNode().GetName() == colors.CONTRIBUTION.name
        assert (shown.GetWindowLevelMin(), shown.GetWindowLevelMax()) == (0.0, 1.0)


def test_results_are_in_the_inputs_study_and_shown_over_the_synthetic(synthesized):
    app, results = synthesized["app"], synthesized["results"]
    for node in results.all_nodes():
        assert parent_item_of(app.scene, node) == synthesized["study"]
    shown = show_synthesis(app.scene, results)
    assert shown is results.uncertainty
    for index in range(app.scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        composite = app.scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        assert composite.GetBackgroundVolumeID() == results.synthetic.GetID()
        assert composite.GetForegroundVolumeID() == results.uncertainty.GetID()
    assert show_synthesis(app.scene, results, overlay="contribution of t2") is results.contributions["t2"]
    with pytest.raises(ValueError, match="overlay"):
        show_synthesis(app.scene, results, overlay="contribution of pd")


def test_the_temporary_files_are_removed(synthesized):
    assert not synthesized["run"].work_dir.exists()


def test_cancelling_a_real_synthesis(tmp_path):
    app = application_scene()
    phantom = _phantom()
    nodes = {c: add_volume_node(app.scene, phantom.images[c], c) for c in INPUTS}
    before = app.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    run = SynthesisRun(app.scene, nodes, SynthesisOptions("t1ce", model=str(random_bundle(tmp_path / "b")), samples=8))
    run.start()
    time.sleep(0.5)
    start = time.monotonic()
    outcome = run.cancel()
    assert time.monotonic() - start < 2.0
    assert outcome.status == "cancelled"
    with pytest.raises(RuntimeError, match="cancelled"):
        run.import_results()
    run.cleanup()
    assert not run.work_dir.exists()
    assert app.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == before


@pytest.mark.slow
def test_compare_run_two_models_against_the_real_contrast(tmp_path, onnx_bundle):
    app = application_scene()
    phantom = _phantom()
    nodes = {c: add_volume_node(app.scene, phantom.images[c], c) for c in ("t1", "t2")}
    reference = add_volume_node(app.scene, phantom.images["t1ce"], "t1ce real")
    models = [str(onnx_bundle), str(random_bundle(tmp_path / "b", name="random-torch"))]  # onnx, then torch
    run = CompareRun(app.scene, nodes, models, SynthesisOptions("t1ce", device="cpu", samples=8)).start()
    outcome = run.wait(timeout=240)
    assert outcome.succeeded, outcome.error
    comparison = run.build(reference, None, app.layout_node)
    assert list(comparison.synthetic) == ["random-onnx", "random-torch"]
    assert [n.GetName() for n in comparison.synthetic.values()] == ["t1ce (synthetic, random-onnx)",
                                                                   "t1ce (synthetic, random-torch)"]
    assert [n.GetAttribute("MRSynth.backend") for n in comparison.synthetic.values()] == ["onnx", "torch"]
    assert all(n.GetAttribute("MRSynth.samples") == "1" for n in comparison.synthetic.values())  # no maps in Compare
    assert comparison.table.GetNumberOfRows() == 2
    assert set(comparison.errors) == {"random-onnx", "random-torch"}
    assert app.scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode") == 3


def _brats_case(root, case_id, seed, broken=False):
    phantom = generate_phantom(PhantomConfig(size=(20, 24, 20), spacing=(6.0, 6.0, 6.0), seed=seed))
    folder = root / case_id
    folder.mkdir(parents=True)
    for contrast, suffix in {"t1": "t1n", "t2": "t2w", "flair": "t2f"}.items():
        sitk.WriteImage(phantom.images[contrast], str(folder / f"{case_id}-{suffix}.nii.gz"))
    if broken:
        (folder / f"{case_id}-t2w.nii.gz").write_bytes(b"\x1f\x8b\x08 damaged")


def _run_batch_script(args, cwd):
    return subprocess.run([sys.executable, str(MODULE_DIR / "Scripts" / "batch.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_batch_script_exit_code_reflects_failures(tmp_path, onnx_bundle):
    data = tmp_path / "data"
    _brats_case(data, "BraTS-GLI-00001-000", 1)
    _brats_case(data, "BraTS-GLI-00002-000", 2, broken=True)
    bundle = onnx_bundle
    out = tmp_path / "out"
    result = _run_batch_script(["--", "--input-dir", str(data), "--target", "t1ce", "--output-dir", str(out),
                                "--model", str(bundle), "--device", "cpu", "--progress", "none"], tmp_path)
    assert result.returncode == 1, result.stderr
    rows = {r["case"]: r["status"] for r in csv.DictReader(open(out / "summary.csv"))}
    assert rows == {"BraTS-GLI-00001-000": "ok", "BraTS-GLI-00002-000": "failed"}
    assert (out / "BraTS-GLI-00001-000" / "t1ce_synthetic.nii.gz").is_file()
    assert "1 failed" in result.stdout


def test_batch_script_rejects_bad_arguments_with_exit_code_2(tmp_path):
    result = _run_batch_script(["--", "--target", "t1ce"], tmp_path)
    assert result.returncode == 2
    assert "--input-dir" in result.stderr
    assert str(REPO) not in result.stdout
