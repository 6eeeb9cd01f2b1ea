"""`mrsynth demo` with the built-in bundle: the quick-start job, end to end."""

import json

import pytest

from MRSynthLib.commands.cli import main
from MRSynthLib.models.registry import DEFAULT_MODEL, list_models

pytestmark = pytest.mark.slow


@pytest.mark.skipif(DEFAULT_MODEL not in {e.name for e in list_models()}, reason="built-in model not present")
def test_demo_writes_volumes_maps_montage_and_metrics(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--output-dir", str(out), "--samples", "2", "--real-data", str(tmp_path / "none")]) == 0
    printed = capsys.readouterr().out
    assert "montage.png" in printed and "brain PSNR" in printed
    for name in ("t1ce_synthetic.nii.gz", "t1ce_uncertainty.nii.gz", "contributions/contribution_t1.nii.gz",
                 "contributions/contribution_t2.nii.gz", "contributions/contribution_flair.nii.gz"):
        assert (out / "phantom" / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    brain = metrics["cases"]["phantom"]["brain"]
    assert brain["psnr"] > 10 and 0 < brain["ssim"] <= 1
    assert "tumour" in metrics["cases"]["phantom"]["regions"]
    assert (out / "montage.png").stat().st_size > 5000
    assert main(["demo", "--output-dir", str(out)]) == 2  # results exist: kept without --overwrite
