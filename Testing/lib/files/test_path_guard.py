"""The output planner's rule (MRSynthLib.files.path_guard): no output is an input, no two outputs are one file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from MRSynthLib.errors import OutputError
from MRSynthLib.quality.evaluation import evaluate_files
from MRSynthLib.commands.outputs import plan_outputs
from MRSynthLib.files.path_guard import check_outputs, image_reads
from support.images import blob_array, make_image


def test_image_reads_adds_json_sidecars():
    roles = image_reads({"t1": "a/t1.nii.gz", "t2": "b/T2.NRRD", "flair": "dicom-folder"})
    assert roles == [("--input t1", Path("a/t1.nii.gz")), ("sidecar of --input t1", Path("a/t1.json")),
                     ("--input t2", Path("b/T2.NRRD")), ("sidecar of --input t2", Path("b/T2.json")),
                     ("--input flair", Path("dicom-folder"))]


def test_outputs_inside_an_input_folder_are_refused(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    (series / "1.dcm").write_bytes(b"x")
    with pytest.raises(OutputError, match="inside the folder of --input t1"):
        check_outputs([("--output", series / "sub" / "syn.nii.gz")], [("--input t1", series)])
    check_outputs([("--output", tmp_path / "syn.nii.gz")], [("--input t1", series)])  # beside it is fine


def test_evaluate_refuses_to_write_its_report_over_the_reference(tmp_path):
    reference = tmp_path / "ref.nii.gz"
    sitk.WriteImage(make_image(blob_array((16, 16, 16))), str(reference))
    before = reference.read_bytes()
    with pytest.raises(OutputError, match="same file as --reference"):
        evaluate_files(reference, reference, output=reference, overwrite=True)
    assert reference.read_bytes() == before


LINKS = ("new", "input", "symlink", "hardlink", "upper", "sidecar-twin")


def _place(folder: Path, kind: str, index: int) -> Path:
    """An output path of one kind relative to the input ``folder/in.nii.gz``."""
    target = folder / "in.nii.gz"
    if kind == "input":
        return target
    if kind == "symlink":
        link = folder / f"sym{index}.nii.gz"
        link.exists() or link.symlink_to(target)
        return link
    if kind == "hardlink":
        link = folder / f"hard{index}.nii.gz"
        link.exists() or os.link(target, link)
        return link
    if kind == "upper":
        return folder / "OUT.nii.gz"
    if kind == "sidecar-twin":
        return folder / "in.nrrd"  # its sidecar in.json is the input's sidecar
    return folder / f"out{index}.nii.gz"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(output=st.sampled_from(LINKS), uncertainty=st.sampled_from(LINKS + ("none",)),
       contributions=st.booleans())
def test_no_planned_output_is_ever_an_input_or_another_output(tmp_path_factory, output, uncertainty, contributions):
    """With --overwrite (the dangerous case): refused in one sentence, or every planned file is new and distinct."""
    folder = tmp_path_factory.mktemp("guard")
    source = folder / "in.nii.gz"
    source.write_bytes(b"input bytes")
    (folder / "in.json").write_text("{}")
    out = _place(folder, output, 0)
    unc = None if uncertainty == "none" else _place(folder, uncertainty, 1)
    reads = image_reads({"t1": source})
    try:
        plan = plan_outputs(out, unc, folder if contributions else None, ["t1"], overwrite=True, reads=reads)
    except OutputError as error:
        assert str(error).count("\n") == 0
        return
    files = [path for _, path in plan.roles()]
    identities = [(os.stat(p).st_dev, os.stat(p).st_ino) for p in files if p.exists()]
    protected = {(os.stat(p).st_dev, os.stat(p).st_ino) for _, p in reads if p.exists()}
    assert not protected & set(identities)
    names = [(os.path.realpath(p.parent), p.name.casefold()) for p in files]
    assert len(set(names)) == len(names) and len(set(identities)) == len(identities)
    assert source.read_bytes() == b"input bytes"
