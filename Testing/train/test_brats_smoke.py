"""The BraTS path end to end (issue 17): real scans of ../shared/data laid out as a BraTS 2023 folder, the
``brats-smoke`` config through ``mrsynth-train all``, a bundle with ONNX graphs that synthesizes."""

from __future__ import annotations

import json

import pytest
import yaml

from support.paths import SHARED_DATA, requires_shared_data
from training.config import load_config

BRATS_2023_NAMES = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}


def _four_contrast_cases(limit: int) -> list:
    """Co-registered cases with all four BraTS contrasts (whichever the shared folder holds; it grows)."""
    cases = [folder for folder in sorted((SHARED_DATA / "cases").iterdir())
             if folder.is_dir() and all((folder / f"{name}.nii.gz").is_file() for name in BRATS_2023_NAMES)]
    return cases[:limit]


def _brats_2023_folder(root, cases) -> None:
    """``<root>/BraTS-GLI-0000i-000/BraTS-GLI-0000i-000-{t1n,t1c,t2w,t2f}.nii.gz`` as symbolic links."""
    for number, case in enumerate(cases, start=1):
        case_id = f"BraTS-GLI-{number:05d}-000"
        folder = root / case_id
        folder.mkdir(parents=True)
        for name, suffix in BRATS_2023_NAMES.items():
            (folder / f"{case_id}-{suffix}.nii.gz").symlink_to(case / f"{name}.nii.gz")


@requires_shared_data()
@pytest.mark.slow
def test_brats_smoke_trains_and_exports_a_working_bundle_from_a_brats_2023_folder(tmp_path):
    from MRSynthLib.commands.cli import main as mrsynth
    from training.cli import main as train

    cases = _four_contrast_cases(3)
    if len(cases) < 3:
        pytest.skip(f"{SHARED_DATA / 'cases'} has {len(cases)} cases with t1, t1ce, t2 and flair; the smoke needs 3")
    _brats_2023_folder(tmp_path / "brats", cases)
    config = load_config("brats-smoke").to_dict()
    config["data"]["sources"][0]["root"] = str(tmp_path / "brats")
    path = tmp_path / "brats-smoke.yaml"
    path.write_text(yaml.safe_dump(config))
    bundle, run = tmp_path / "bundle", tmp_path / "run"
    assert train(["all", "--config", str(path), "--run-dir", str(run), "--output", str(bundle), "--quiet"]) == 0

    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) == 2 and len(split["val"]) == 1  # patients of the BraTS 2023 reader, split
    card = json.loads((bundle / "bundle.json").read_text())
    assert card["input_contrasts"] == ["t1", "t1ce", "t2", "flair"]
    assert card["networks"]["onnx"]["parity"]["max_relative_difference"] < 1e-4
    output = tmp_path / "t1ce.nii.gz"
    first = tmp_path / "brats" / "BraTS-GLI-00001-000"
    assert mrsynth(["synthesize", "--model", str(bundle), "--input", f"t1={first / 'BraTS-GLI-00001-000-t1n.nii.gz'}",
                    "--input", f"t2={first / 'BraTS-GLI-00001-000-t2w.nii.gz'}", "--target", "t1ce",
                    "--output", str(output), "--backend", "onnx", "--progress", "none"]) == 0
    assert json.loads(output.with_name("t1ce.json").read_text())["backend"] == "onnx"
