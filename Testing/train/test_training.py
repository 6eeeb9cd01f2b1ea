"""The training package end to end on the tiny phantom config: plumbing, not image quality."""

import csv
import dataclasses
import json

import pytest

from MRSynthLib.models.bundle import load_bundle
from MRSynthLib.synthesis import synthesize
from training.cli import main as train_main
from training.config import ConfigError, config_from_dict, load_config


def test_builtin_configs_load_and_are_consistent():
    for name in ("phantom-tiny", "phantom-demo"):
        config = load_config(name)
        assert config.preprocessing.size_multiple % config.autoencoder.downsampling == 0
        assert all(p % config.autoencoder.downsampling == 0 for p in config.stage1.patch_size + config.stage2.patch_size)


def test_unknown_keys_and_wrong_types_are_errors():
    base = load_config("phantom-tiny").to_dict()
    with pytest.raises(ConfigError, match="unknown keys"):
        config_from_dict({**base, "stage3": {}})
    with pytest.raises(ConfigError, match=r"stage1 has unknown keys \['stepz'\]"):
        config_from_dict({**base, "stage1": {**base["stage1"], "stepz": 3}})
    with pytest.raises(ConfigError, match="must be int"):
        config_from_dict({**base, "seed": "zero"})
    again = config_from_dict(base)
    assert dataclasses.asdict(again) == dataclasses.asdict(load_config("phantom-tiny"))


@pytest.mark.slow
def test_tiny_training_run_exports_a_working_bundle(tmp_path, capsys):
    run_dir, bundle_dir = tmp_path / "run", tmp_path / "bundle"
    assert train_main(["all", "--config", "phantom-tiny", "--run-dir", str(run_dir), "--output", str(bundle_dir),
                       "--quiet"]) == 0
    for stage in ("stage1", "stage2"):
        assert (run_dir / stage / "best.json").exists() and (run_dir / stage / "last.json").exists()
        rows = list(csv.DictReader(open(run_dir / stage / "metrics.csv")))
        assert [int(r["step"]) for r in rows] == [2, 4, 6]
        assert list(run_dir.joinpath(stage).glob("preview_*.png"))
    assert json.loads((run_dir / "config.json").read_text())["name"] == "mrsynth-phantom-tiny"
    assert (run_dir / "git.txt").read_text().strip()

    bundle = load_bundle(bundle_dir)
    card = bundle.card
    assert card.method == "fsq-fusion" and card.validation["translator"]["val_psnr"] > 0
    assert card.provenance["config"]["name"] == "mrsynth-phantom-tiny"
    assert not list(bundle_dir.glob("*.ckpt"))  # bundles hold safetensors only

    # resume continues from the last checkpoint instead of starting over
    assert train_main(["stage1", "--config", "phantom-tiny", "--run-dir", str(run_dir), "--resume", "--quiet"]) == 0
    assert len(list(csv.DictReader(open(run_dir / "stage1" / "metrics.csv")))) == 3

    from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case

    case = write_phantom_case(generate_phantom(PhantomConfig(size=(24, 28, 24), spacing=(8.0, 8.0, 8.0), seed=99)),
                              tmp_path / "case")
    result = synthesize({"t1": case / "t1.nii.gz", "t2": case / "t2.nii.gz"}, "flair", model=bundle, samples=2)
    assert result.synthetic.GetSize() == (24, 28, 24) and result.uncertainty is not None
