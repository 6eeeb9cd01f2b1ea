"""Real multi-contrast cases from ../shared/data (development machines and CI only; skipped elsewhere)."""

import json

import pytest
from support.paths import SHARED_DATA, requires_shared_data
from support.bundles import random_bundle

from MRSynthLib.commands.cli import main
from MRSynthLib.files.imageio import grid_of, read_image

pytestmark = [pytest.mark.data, requires_shared_data()]

CASES = SHARED_DATA / "cases"


@pytest.mark.parametrize("case, inputs, target", [
    ("brats-gli-00001", ("t1", "t2", "flair"), "t1ce"),
    ("ms-ljubljana-p07", ("flair", "t1"), "t2"),
    ("isbi2015-ms-test02", ("pd", "flair"), "t2"),  # flair is on its own 4.4 mm grid: registered onto pd's
])
def test_synthesize_on_real_case_lands_on_the_input_grid(tmp_path, case, inputs, target):
    bundle = random_bundle(tmp_path / "bundle")  # geometry check only: random weights, not a result
    out = tmp_path / "out.nii.gz"
    args = ["synthesize", "--target", target, "--output", str(out), "--model", str(bundle), "--progress", "none",
            "--contributions-dir", str(tmp_path / "contrib")]
    for contrast in inputs:
        args += ["--input", f"{contrast}={CASES / case / f'{contrast}.nii.gz'}"]
    assert main(args) == 0
    reference = read_image(CASES / case / f"{inputs[0]}.nii.gz")
    for path in [out] + [tmp_path / "contrib" / f"contribution_{c}.nii.gz" for c in inputs]:
        assert grid_of(read_image(path)) == grid_of(reference)
    provenance = json.loads(out.with_name("out.json").read_text())
    assert provenance["reference_input"] == inputs[0]
    if case.startswith("isbi"):
        assert provenance["alignment"]["flair"]["role"].startswith("registered")
