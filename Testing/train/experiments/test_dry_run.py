"""Every BraTS GPU config builds its networks at full width and runs one step of every stage on the CPU, at a
reduced size, through ``mrsynth-train all`` (``training.experiments.dry_run``, issue 17)."""

from __future__ import annotations

import pytest

from training.config import CONFIG_DIR, load_config
from training.experiments.dry_run import dry_run, reduced_config

BRATS_CONFIGS = sorted(path.stem for path in CONFIG_DIR.glob("*brats*.yaml") if path.stem != "brats-smoke")


def test_there_are_brats_configs_to_check():
    assert {"brats-fsq", "brats-ldm", "wldm-brats"} <= set(BRATS_CONFIGS)


@pytest.mark.parametrize("name", BRATS_CONFIGS)
def test_reduced_config_keeps_the_networks_and_drops_the_dataset(name):
    config = load_config(name)
    reduced = reduced_config(config, 32)
    assert reduced["autoencoder"] == config.to_dict()["autoencoder"]  # full width and depth
    assert reduced["data"]["sources"][0]["kind"] == "phantom" and reduced["stage1"]["batch_size"] == 1
    assert "stage1_from" not in reduced.get("method", {}) and "fusion_from" not in reduced.get("method", {})


@pytest.mark.slow
@pytest.mark.parametrize("name", BRATS_CONFIGS)
def test_brats_config_dry_run_trains_every_stage_one_step(name, tmp_path):
    config = load_config(name)
    result = dry_run(name, 32, work_dir=tmp_path)
    assert result["kind"] == config.method.kind and result["parameters"]["stage1"] > 1_000_000
    assert config.method.stage in result["parameters"]
    assert not list(tmp_path.iterdir())  # the scratch run folder is gone
