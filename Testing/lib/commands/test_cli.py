"""The `mrsynth` command line: real runs on a phantom with a random-weight bundle (plumbing only)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from support.bundles import random_bundle

from MRSynthLib.commands.cli import main
from MRSynthLib.files.imageio import grid_of, read_image
from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    folder = write_phantom_case(generate_phantom(PhantomConfig(size=(24, 28, 20), spacing=(5.0, 5.0, 6.0), seed=3)),
                                root / "case")
    bundle = random_bundle(root / "bundle")
    return root, folder, bundle


def run(*args):
    return main([str(a) for a in args])


def test_synthesize_writes_everything_on_the_input_grid(case, tmp_path):
    root, folder, bundle = case
    out = tmp_path / "syn.nrrd"
    code = run("synthesize", "--input", f"t1n={folder / 't1.nii.gz'}", "--input", f"flair={folder / 'flair.nii.gz'}",
               "--target", "t1c", "--output", out, "--uncertainty", tmp_path / "unc.nrrd", "--samples", "3",
               "--contributions-dir", tmp_path / "contrib", "--model", bundle, "--progress", "none")
    assert code == 0
    reference = read_image(folder / "t1.nii.gz")
    for path in (out, tmp_path / "unc.nrrd", tmp_path / "contrib" / "contribution_t1.nrrd",
                 tmp_path / "contrib" / "contribution_flair.nrrd"):
        image = read_image(path)
        assert grid_of(image) == grid_of(reference), path
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert sidecar["notice"].startswith("SYNTHETIC") and sidecar["bundle"]["sha256"]
        assert sidecar["seed"] == 0 and sidecar["samples"] == 3
    header = read_image(out)
    assert any("SYNTHETIC" in header.GetMetaData(k) for k in header.GetMetaDataKeys())
    t1 = sitk.GetArrayFromImage(read_image(tmp_path / "contrib" / "contribution_t1.nrrd"))
    flair = sitk.GetArrayFromImage(read_image(tmp_path / "contrib" / "contribution_flair.nrrd"))
    inside = (t1 + flair) > 0
    np.testing.assert_allclose((t1 + flair)[inside], 1.0, atol=1e-5)
    assert sitk.GetArrayFromImage(read_image(tmp_path / "unc.nrrd")).max() > 0


def test_jsonl_progress_is_machine_readable(case, tmp_path, capsys):
    root, folder, bundle = case
    code = run("synthesize", "--input", f"t2={folder / 't2.nii.gz'}", "--target", "pd", "--output",
               tmp_path / "pd.nii.gz", "--model", bundle, "--progress", "jsonl")
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["event"] == "progress" and events[-1]["event"] == "done"
    assert any(e.get("stage") == "translate" for e in events)


def _bad_images(folder, tmp_path):
    flat = tmp_path / "2d.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 8), np.float32)), str(flat))
    four = tmp_path / "4d.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.rand(2, 4, 5, 6).astype(np.float32), isVector=False), str(four))
    nan = sitk.GetArrayFromImage(read_image(folder / "t1.nii.gz"))
    nan[5, 5, 5] = np.nan
    nan_path = tmp_path / "nan.nrrd"
    image = sitk.GetImageFromArray(nan)
    image.CopyInformation(read_image(folder / "t1.nii.gz"))
    sitk.WriteImage(image, str(nan_path))
    return flat, four, nan_path


@pytest.mark.parametrize("kind, message", [
    ("missing", "does not exist"), ("2d", "2D"), ("4d", "4D"), ("nan", "NaN"),
    ("unknown", "Unknown contrast"), ("target-input", "also given as an input"), ("bad-target", "Unknown contrast"),
    ("no-model", "mrsynth models"),
])
def test_bad_input_is_one_line_and_nothing_is_written(case, tmp_path, capsys, kind, message):
    root, folder, bundle = case
    flat, four, nan_path = _bad_images(folder, tmp_path)
    t1 = folder / "t1.nii.gz"
    inputs = {"missing": [f"t1={tmp_path / 'nope.nii.gz'}"], "2d": [f"t1={flat}"], "4d": [f"t1={four}"],
              "nan": [f"t1={nan_path}"], "unknown": [f"t3={t1}"], "target-input": [f"t1={t1}", f"t1ce={t1}"],
              "bad-target": [f"t1={t1}"], "no-model": [f"t1={t1}"]}[kind]
    target = "dwi" if kind == "bad-target" else "t1ce"
    model = "no-such-model" if kind == "no-model" else bundle
    args = ["synthesize", "--target", target, "--output", tmp_path / "out.nii.gz", "--model", model, "--progress", "none"]
    for pair in inputs:
        args += ["--input", pair]
    assert run(*args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out.nii.gz").exists()


def test_existing_output_is_kept_without_overwrite(case, tmp_path, capsys):
    root, folder, bundle = case
    out = tmp_path / "out.nii.gz"
    out.write_bytes(b"precious")
    args = ["synthesize", "--input", f"t1={folder / 't1.nii.gz'}", "--target", "flair", "--output", out,
            "--model", bundle, "--progress", "none"]
    assert run(*args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert run(*args, "--overwrite") == 0
    assert read_image(out).GetSize() == read_image(folder / "t1.nii.gz").GetSize()


def test_models_phantom_and_evaluate_commands(case, tmp_path, capsys, monkeypatch):
    root, folder, bundle = case
    monkeypatch.setenv("MRSYNTH_HOME", str(root / "home"))
    random_bundle(root / "home" / "models" / "mine", name="mine")
    assert run("models", "--json") == 0
    listed = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert "mine" in listed
    assert run("phantom", "--output-dir", tmp_path / "ph", "--size", 16, 16, 16, "--spacing", 8, 8, 8, "--seed", 1) == 0
    assert (tmp_path / "ph" / "flair.nii.gz").exists()
    assert run("phantom", "--output-dir", tmp_path / "ph", "--size", 16, 16, 16) == 2  # exists, no --overwrite
    capsys.readouterr()
    assert run("evaluate", "--reference", folder / "t1ce.nii.gz", "--prediction", folder / "t1.nii.gz",
               "--mask", folder / "brainmask.nii.gz", "--labels", folder / "labels.nii.gz",
               "--output", tmp_path / "m.json") == 0
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["protocol"]["description"] and np.isfinite(report["brain"]["psnr"])


def test_real_subprocess_has_no_traceback(case, tmp_path):
    root, folder, bundle = case
    result = subprocess.run([sys.executable, "-m", "MRSynthLib.commands.cli", "synthesize", "--input",
                             f"t1={tmp_path / 'missing.nii.gz'}", "--target", "t2", "--output", tmp_path / "o.nii.gz",
                             "--model", bundle],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "does not exist" in result.stderr


def test_inputs_that_do_not_overlap_are_one_clear_error(case, tmp_path, capsys):
    """Without registration, a field of view 5 m away is an error (registration would centre it first)."""
    root, folder, bundle = case
    far = read_image(folder / "t2.nii.gz")
    far.SetOrigin((5000.0, 5000.0, 5000.0))
    far.SetSpacing((4.0, 4.0, 4.0))
    far_path = tmp_path / "far.nrrd"
    sitk.WriteImage(far, str(far_path))
    assert run("synthesize", "--input", f"t1={folder / 't1.nii.gz'}", "--input", f"t2={far_path}", "--target",
               "flair", "--output", tmp_path / "o.nii.gz", "--model", bundle, "--progress", "none", "--no-register") == 2
    err = capsys.readouterr().err
    assert "far.nrrd" in err and "overlap" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.nii.gz").exists()
