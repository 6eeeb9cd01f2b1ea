"""Starting a run from an existing bundle's autoencoder (stage 2 only training)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from MRSynthLib.networks.autoencoder import AutoencoderConfig
from support.bundles import random_bundle
from training.config import ConfigError
from training.autoencoder.seed_stage1 import main, seed_stage1


def _config(tmp_path, channels):
    path = tmp_path / "cfg.yaml"
    ae = AutoencoderConfig(channels=channels, fsq_levels=(5, 5, 5, 5)).to_dict()
    path.write_text(yaml.safe_dump({"name": "seeded", "autoencoder": ae, "translator": {"latent_channels": 4}}))
    return path


def test_seeded_checkpoint_holds_the_bundle_autoencoder_and_its_origin(tmp_path):
    from safetensors.torch import load_file

    bundle = random_bundle(tmp_path / "bundle")  # channels (4, 4, 4), FSQ (5, 5, 5, 5)
    checkpoint = seed_stage1(bundle, str(_config(tmp_path, (4, 4, 4))), tmp_path / "run")
    from training.runtime.checkpoint_io import load_state

    state = load_state(checkpoint.parent, "best")["model"]
    expected = load_file(str(bundle / "autoencoder.safetensors"))
    assert set(state) == set(expected)
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    origin = json.loads((tmp_path / "run" / "stage1" / "origin.json").read_text())
    assert origin["bundle"]["name"] == "random-test" and len(origin["bundle"]["sha256"]) == 64


def test_architecture_mismatch_is_one_clear_error(tmp_path, capsys):
    bundle = random_bundle(tmp_path / "bundle")
    with pytest.raises(ConfigError, match="autoencoder section differs"):
        seed_stage1(bundle, str(_config(tmp_path, (4, 8))), tmp_path / "run")
    assert main(["--bundle", str(bundle), "--config", str(_config(tmp_path, (4, 8))), "--run-dir", str(tmp_path / "r")]) == 2
    assert "differs" in capsys.readouterr().err


def test_seed_from_another_run_copies_its_best_stage1_and_names_it(tmp_path, capsys):
    from MRSynthLib.networks.autoencoder import LatentAutoencoder
    from training.runtime.checkpoint_io import load_state
    from training.config import load_config
    from training.runtime.runs import RunFolder
    from training.autoencoder.seed_stage1 import seed_stage1_from_run

    config_path = _config(tmp_path, (4, 4, 4))
    config = load_config(str(config_path))
    source = RunFolder(tmp_path / "stage1-run")
    source.prepare(config)
    torch.manual_seed(3)
    model = LatentAutoencoder(config.autoencoder)
    source.save_checkpoint("stage1", "best", {"model": model.state_dict(), "step": 42, "val_psnr": 31.0})
    checkpoint = seed_stage1_from_run(source.root, str(config_path), tmp_path / "run")
    state = load_state(checkpoint.parent, "best")
    assert state["step"] == 42 and all(torch.equal(state["model"][k], v) for k, v in model.state_dict().items())
    origin = json.loads((tmp_path / "run" / "stage1" / "origin.json").read_text())
    assert origin["run"]["step"] == 42 and origin["run"]["config"] == "seeded" and len(origin["run"]["weights_sha256"]) == 64
    assert main(["--from-run", str(tmp_path / "empty"), "--config", str(config_path), "--run-dir", str(tmp_path / "r")]) == 2
    assert "has no stage1/best.json" in capsys.readouterr().err
