"""Stage-2 training of each generative translator kind on tiny phantoms: the held-out loss falls, the run
exports a complete bundle, and ``synthesize`` runs it on both backends with matching outputs.

Stage 1 and the fusion guide come from one phantom-tiny run (``method.stage1_from`` / ``fusion_from``), so
only stage 2 of each kind trains here. Plumbing, not image quality.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from MRSynthLib.models.bundle import load_bundle
from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case
from MRSynthLib.synthesis import synthesize
from training.cli import main as train_main
from training.config import load_config

HELD_OUT_LOSS = {"ldm": "val_loss", "cyclegan": "val_cycle", "targetcode": "val_loss"}
TASKS = {"ldm": (("t1", "t2"), "flair"), "cyclegan": (("t1",), "t1ce"), "targetcode": (("t2", "flair"), "t1")}


@pytest.fixture(scope="module")
def tiny_fusion(tmp_path_factory):
    """A phantom-tiny run (stage 1 + fusion translator) and its bundle."""
    root = tmp_path_factory.mktemp("tiny-fusion")
    assert train_main(["all", "--config", "phantom-tiny", "--run-dir", str(root / "run"), "--output",
                       str(root / "bundle"), "--quiet"]) == 0
    return root


@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory):
    phantom = generate_phantom(PhantomConfig(size=(24, 28, 24), spacing=(8.0, 8.0, 8.0), seed=77))
    return write_phantom_case(phantom, tmp_path_factory.mktemp("case") / "case")


def _config_file(kind: str, tiny_fusion, folder) -> str:
    data = load_config(f"phantom-tiny-{kind}").to_dict()
    data["data"]["cache_dir"] = str(tiny_fusion / "run" / "cache")  # reuse the preprocessed phantoms
    data["method"]["stage1_from"] = str(tiny_fusion / "bundle")
    if kind == "ldm":
        data["method"]["fusion_from"] = str(tiny_fusion / "bundle")
    path = folder / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _rows(path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ldm", "cyclegan", "targetcode"])
def test_kind_trains_exports_and_synthesizes_on_both_backends(kind, tiny_fusion, phantom_case, tmp_path):
    config = _config_file(kind, tiny_fusion, tmp_path)
    run_dir, bundle_dir = tmp_path / "run", tmp_path / "bundle"
    assert train_main(["stage2", "--config", config, "--run-dir", str(run_dir), "--quiet"]) == 0
    stage = run_dir / f"stage2_{kind}"
    validation = _rows(stage / "validation.csv")
    assert [int(r["step"]) for r in validation] == [0, 3, 6]
    loss = [float(r[HELD_OUT_LOSS[kind]]) for r in validation]
    assert loss[-1] < loss[0], loss  # the fixed held-out batch's loss falls with training
    assert [int(r["step"]) for r in _rows(stage / "metrics.csv")] == [2, 4, 6]
    assert (stage / "best.json").exists() and list(stage.glob("preview_*.png"))
    assert not (run_dir / "stage1").exists()  # stage 1 came from the bundle

    # resume after the last step trains nothing more
    assert train_main(["stage2", "--config", config, "--run-dir", str(run_dir), "--resume", "--quiet"]) == 0
    assert len(_rows(stage / "metrics.csv")) == 3

    assert train_main(["export", "--config", config, "--run-dir", str(run_dir), "--output", str(bundle_dir)]) == 0
    bundle = load_bundle(bundle_dir)
    assert bundle.card.method == f"fsq-{kind}"
    assert bundle.card.networks["onnx"]["parity"]["max_relative_difference"] < 1e-4
    assert bundle.card.validation["translator"]["last"]["val_psnr"] > 0  # whole volumes through the driver
    assert not list(bundle_dir.rglob("last*")) and not list(bundle_dir.rglob("best*"))

    inputs, target = TASKS[kind]
    files = {c: phantom_case / f"{c}.nii.gz" for c in inputs}
    results = {b: synthesize(files, target, model=bundle, samples=2, seed=1, backend=b) for b in ("torch", "onnx")}
    reference = sitk.ReadImage(str(files[inputs[0]]))
    for backend, result in results.items():
        assert result.synthetic.GetSize() == reference.GetSize() and result.provenance["backend"] == backend
    images = {b: [r.synthetic, r.uncertainty, *r.contributions.values()] for b, r in results.items()}
    for a, b in zip(images["torch"], images["onnx"]):
        a, b = sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b)
        assert np.abs(a - b).max() / max(float(np.abs(a).max()), 1e-6) < 1e-4
