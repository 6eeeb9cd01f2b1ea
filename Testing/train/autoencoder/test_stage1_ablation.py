"""The stage-1 ablation script on the tiny phantom config: every variant trains, is scored, lands in the table."""

import json

import pytest

from training.experiments.ablation import END, START, VARIANTS, markdown, run_ablation, variant_config, write_between_markers
from training.config import load_config


def test_variants_change_only_their_switches():
    base = load_config("phantom-tiny")
    for variant in VARIANTS:
        config = variant_config(base, variant, steps=7)
        assert config.stage1.steps == 7 and config.stage1.checkpoint_every == 7
        assert config.data == base.data and config.seed == base.seed and config.preprocessing == base.preprocessing
        assert config.autoencoder.channels == base.autoencoder.channels
    by_name = {v.name: variant_config(base, v, 7) for v in VARIANTS}
    assert by_name["vq"].autoencoder.latent == "vq" and by_name["kl"].autoencoder.latent == "kl"
    assert by_name["fsq+lhe"].autoencoder.lhe.enabled and by_name["fsq+wavelet"].autoencoder.wavelet
    assert by_name["fsq+afl"].stage1_loss.afl_weight > 0 and by_name["fsq"].stage1_loss.afl_weight == 0


def test_markers_are_replaced_or_appended(tmp_path):
    doc = tmp_path / "TRAINING.md"
    doc.write_text(f"# Training\n\nbefore\n\n{START}\nold table\n{END}\n\nafter\n")
    write_between_markers(doc, "new table")
    text = doc.read_text()
    assert "old table" not in text and f"{START}\nnew table\n{END}" in text and "before" in text and "after" in text
    fresh = tmp_path / "other.md"
    fresh.write_text("# Other\n")
    write_between_markers(fresh, "table")
    assert fresh.read_text().endswith(f"## Stage-1 ablation\n\n{START}\ntable\n{END}\n")


@pytest.mark.slow
def test_tiny_ablation_trains_scores_and_tabulates(tmp_path):
    base = load_config("phantom-tiny")
    chosen = tuple(v for v in VARIANTS if v.name in ("fsq", "kl"))
    record = run_ablation(base, chosen, steps=2, run_root=tmp_path / "runs", seeds=(900,))
    assert [row["variant"] for row in record["rows"]] == ["fsq", "kl"]
    for row in record["rows"]:
        assert row["volumes"] == 5 and 0 < row["brain_psnr"] < 60 and 0 < row["brain_ssim"] <= 1
    assert json.loads((tmp_path / "runs" / "ablation.json").read_text())["steps"] == 2
    table = markdown(record)
    assert "**2 steps**" in table and "| KL (Gaussian) |" in table
