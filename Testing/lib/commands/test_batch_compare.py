"""`mrsynth batch` and `mrsynth compare` on tiny phantoms with random-weight bundles (plumbing only)."""

import csv

import numpy as np
import pytest
import SimpleITK as sitk
from support.bundles import random_bundle

from MRSynthLib.commands.cli import main
from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case


def _brats2023_case(root, case_id, seed, broken=False):
    phantom = generate_phantom(PhantomConfig(size=(20, 24, 20), spacing=(6.0, 6.0, 6.0), seed=seed))
    folder = root / case_id
    folder.mkdir(parents=True)
    names = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}
    for contrast, suffix in names.items():
        sitk.WriteImage(phantom.images[contrast], str(folder / f"{case_id}-{suffix}.nii.gz"))
    if broken:
        (folder / f"{case_id}-t2w.nii.gz").write_bytes(b"\x1f\x8b\x08 damaged")
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    data = root / "data"
    for i, case_id in enumerate(["BraTS-GLI-00001-000", "BraTS-GLI-00002-000", "BraTS-GLI-00003-000"]):
        _brats2023_case(data, case_id, seed=10 + i, broken=(i == 1))
    return root, data, random_bundle(root / "bundle")


def test_batch_survives_a_broken_case_and_resumes(dataset, tmp_path, capsys):
    root, data, bundle = dataset
    out = tmp_path / "out"
    args = ["batch", "--input-dir", str(data), "--target", "t1ce", "--output-dir", str(out), "--model", str(bundle),
            "--progress", "none"]
    assert main(args) == 1  # one case failed
    rows = {r["case"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert rows["BraTS-GLI-00001-000"]["status"] == "ok" and rows["BraTS-GLI-00003-000"]["status"] == "ok"
    failed = rows["BraTS-GLI-00002-000"]
    assert failed["status"] == "failed" and "t2" in failed["message"] and "BraTS-GLI-00002-000-t2w" in failed["message"]
    assert rows["BraTS-GLI-00001-000"]["inputs"] == "t1 t2 flair"
    good = out / "BraTS-GLI-00001-000" / "t1ce_synthetic.nii.gz"
    assert good.exists() and not (out / "BraTS-GLI-00002-000" / "t1ce_synthetic.nii.gz").exists()
    stamp = good.stat().st_mtime_ns

    # a partial case (synthetic written, sidecar lost) is redone on resume; complete ones are skipped
    partial = out / "BraTS-GLI-00003-000" / "t1ce_synthetic.json"
    partial.unlink()
    assert main(args + ["--resume"]) == 1
    rows = {r["case"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert rows["BraTS-GLI-00001-000"]["status"] == "skipped" and good.stat().st_mtime_ns == stamp
    assert rows["BraTS-GLI-00003-000"]["status"] == "ok" and partial.exists()
    assert "1 failed" in capsys.readouterr().out


def test_batch_without_resume_never_overwrites(dataset, tmp_path):
    root, data, bundle = dataset
    out = tmp_path / "out"
    args = ["batch", "--input-dir", str(data), "--target", "flair", "--output-dir", str(out), "--model", str(bundle),
            "--progress", "none", "--samples", "2"]
    main(args)
    written = out / "BraTS-GLI-00001-000" / "flair_synthetic.nii.gz"
    assert (out / "BraTS-GLI-00001-000" / "flair_uncertainty.nii.gz").exists()
    before = written.read_bytes()
    assert main(args) == 1
    rows = {r["case"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert "--overwrite" in rows["BraTS-GLI-00001-000"]["message"]
    assert written.read_bytes() == before


def test_compare_two_models_writes_csv_and_figure(dataset, tmp_path):
    root, data, bundle = dataset
    other = random_bundle(tmp_path / "other", name="random-other")
    case = write_phantom_case(generate_phantom(PhantomConfig(size=(20, 24, 20), spacing=(6.0, 6.0, 6.0), seed=5)),
                              tmp_path / "case")
    out = tmp_path / "cmp"
    assert main(["compare", "--input", f"t1={case / 't1.nii.gz'}", "--input", f"t2={case / 't2.nii.gz'}",
                 "--target", "flair", "--reference", str(case / "flair.nii.gz"), "--labels", str(case / "labels.nii.gz"),
                 "--model", str(bundle), "--model", str(other), "--output-dir", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert {r["model"] for r in rows} == {"random-test", "random-other"}
    assert all(np.isfinite(float(r["psnr"])) for r in rows if r["region"] == "brain")
    assert (out / "comparison.png").stat().st_size > 1000
    assert (out / "random-other" / "synthetic.nii.gz").exists()
