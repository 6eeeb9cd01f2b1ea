"""Case discovery for plain, BraTS 2021/2023 and nnU-Net folder layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from MRSynthLib.files.cases import Case, discover_cases, split_image_name
from MRSynthLib.errors import ContrastError, InputImageError, MRSynthError
from support.paths import REPO

SHARED_DATA = REPO.parent / "shared" / "data"


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_split_image_name():
    assert split_image_name(Path("t1.nii.gz")) == ("t1", ".nii.gz")
    assert split_image_name(Path("a.b-T2W.NRRD")) == ("a.b-T2W", ".nrrd")
    assert split_image_name(Path("x.mhd")) == ("x", ".mhd")
    assert split_image_name(Path("x.raw")) is None
    assert split_image_name(Path(".nii.gz")) is None


def test_plain_layout_with_aliases_labels_and_masks(tmp_path):
    _touch(
        tmp_path,
        "b/t1n.nii.gz", "b/T1c.nii", "b/t2w.nrrd", "b/t2f.mha", "b/seg.nii.gz",
        "a/t1.nhdr", "a/t1.raw", "a/pd.mhd", "a/brainmask.nii.gz", "a/notes.txt", "a/COPYING",
        "a/._t2.nii.gz", "a/t1_to_flair.tfm",
        "empty/readme.md",
    )
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["a", "b"]
    a, b = cases
    assert a == Case("a", {"t1": tmp_path / "a/t1.nhdr", "pd": tmp_path / "a/pd.mhd"},
                     None, tmp_path / "a/brainmask.nii.gz", "plain")
    assert b.images == {
        "t1": tmp_path / "b/t1n.nii.gz", "t1ce": tmp_path / "b/T1c.nii",
        "t2": tmp_path / "b/t2w.nrrd", "flair": tmp_path / "b/t2f.mha",
    }
    assert b.labels == tmp_path / "b/seg.nii.gz" and b.brain_mask is None
    assert discover_cases(tmp_path, layout="plain") == cases


def test_brats2021_layout(tmp_path):
    for case in ("BraTS2021_00002", "BraTS2021_00000"):
        _touch(tmp_path, *(f"{case}/{case}_{k}.nii.gz" for k in ("t1", "t1ce", "t2", "flair", "seg")))
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["BraTS2021_00000", "BraTS2021_00002"]
    case = cases[0]
    assert case.layout == "brats2021"
    assert sorted(case.images) == ["flair", "t1", "t1ce", "t2"]
    assert case.images["t1ce"].name == "BraTS2021_00000_t1ce.nii.gz"
    assert case.labels.name == "BraTS2021_00000_seg.nii.gz"


def test_brats2023_layout_and_single_case_folder(tmp_path):
    case = "BraTS-GLI-00000-000"
    _touch(tmp_path, *(f"{case}/{case}-{k}.nii.gz" for k in ("t1n", "t1c", "t2w", "t2f", "seg")))
    (found,) = discover_cases(tmp_path)
    assert found.layout == "brats2023" and found.case_id == case
    assert {k: p.name for k, p in found.images.items()} == {
        "t1": f"{case}-t1n.nii.gz", "t1ce": f"{case}-t1c.nii.gz",
        "t2": f"{case}-t2w.nii.gz", "flair": f"{case}-t2f.nii.gz",
    }
    assert found.labels.name == f"{case}-seg.nii.gz"
    # The case folder itself is one case.
    assert discover_cases(tmp_path / case) == [found]


def test_single_plain_case_folder(tmp_path):
    folder = tmp_path / "patient-7"
    _touch(folder, "t1.nii.gz", "flair.nii.gz", "lesion.nii.gz")
    (case,) = discover_cases(folder)
    assert case.case_id == "patient-7" and case.layout == "plain"
    assert sorted(case.images) == ["flair", "t1"] and case.labels.name == "lesion.nii.gz"


def _nnunet(tmp_path: Path, channel_names: dict) -> None:
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": channel_names}))
    _touch(
        tmp_path,
        "imagesTr/BRATS_002_0000.nii.gz", "imagesTr/BRATS_002_0001.nii.gz",
        "imagesTr/BRATS_001_0000.nii.gz", "imagesTr/BRATS_001_0001.nii.gz",
        "imagesTr/BRATS_001_0002.nii.gz",
        "labelsTr/BRATS_001.nii.gz",
        "imagesTs/BRATS_900_0000.nii.gz",
    )


def test_nnunet_layout_from_dataset_json(tmp_path):
    _nnunet(tmp_path, {"0": "FLAIR", "1": "T1Gd", "2": "T2"})
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["BRATS_001", "BRATS_002", "BRATS_900"]
    first = cases[0]
    assert first.layout == "nnunet"
    assert {k: p.name for k, p in first.images.items()} == {
        "flair": "BRATS_001_0000.nii.gz", "t1ce": "BRATS_001_0001.nii.gz", "t2": "BRATS_001_0002.nii.gz",
    }
    assert first.labels == tmp_path / "labelsTr/BRATS_001.nii.gz"
    assert cases[1].labels is None and sorted(cases[1].images) == ["flair", "t1ce"]
    assert sorted(cases[2].images) == ["flair"]


def test_nnunet_channel_map_and_errors(tmp_path):
    _nnunet(tmp_path, {"0": "FLAIR", "1": "ADC", "2": "T2"})
    with pytest.raises(ContrastError, match="Channel 1 .*dataset.json.*'ADC'.*channel_map"):
        discover_cases(tmp_path)
    cases = discover_cases(tmp_path, channel_map={0: "t2f", 2: "t2w"})
    assert sorted(cases[0].images) == ["flair", "t2"]
    with pytest.raises(ContrastError, match="both t1"):
        discover_cases(tmp_path, channel_map={0: "t1", 1: "t1n"})
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(InputImageError, match="readable JSON"):
        discover_cases(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"zero": "FLAIR"}}))
    with pytest.raises(InputImageError, match="Channel key 'zero' .* must be a channel number"):
        discover_cases(tmp_path)


def test_errors_name_the_folder(tmp_path):
    with pytest.raises(InputImageError, match="missing"):
        discover_cases(tmp_path / "nope")
    _touch(tmp_path, "file.nii.gz", "sub/readme.txt")
    with pytest.raises(InputImageError, match="a file"):
        discover_cases(tmp_path / "file.nii.gz")
    with pytest.raises(MRSynthError, match=f"{tmp_path}.*layout plain .detected"):
        discover_cases(tmp_path / "sub")
    with pytest.raises(InputImageError, match="`layout`"):
        discover_cases(tmp_path, layout="ixi")


def test_duplicate_contrast_in_a_case_is_an_error(tmp_path):
    _touch(tmp_path, "c1/t1.nii.gz", "c1/T1n.nrrd", "c1/t2.nii.gz")
    with pytest.raises(ContrastError, match=r"c1 .*T1n.nrrd and t1.nii.gz for t1"):
        discover_cases(tmp_path)


@pytest.mark.data
def test_real_cases_folder():
    cases_dir = SHARED_DATA / "cases"
    if not cases_dir.is_dir():
        pytest.skip(f"real data not available at {cases_dir} (only on development machines)")
    cases = {c.case_id: c for c in discover_cases(cases_dir)}
    ms = [c for name, c in cases.items() if name.startswith("ms-ljubljana")]
    assert len(ms) == 3
    for case in ms:
        assert case.layout == "plain"
        assert sorted(case.images) == ["flair", "t1", "t1ce", "t2"]
        assert case.labels is not None and case.labels.name == "lesion.nii.gz"
        assert all(path.is_file() for path in case.images.values())
    mni = cases["mni-icbm152-2009c"]
    assert sorted(mni.images) == ["t1", "t2"] and mni.brain_mask.name == "brainmask.nii.gz"
    assert sorted(cases["isbi2015-ms-test02"].images) == ["flair", "pd", "t2"]
