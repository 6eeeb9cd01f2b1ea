"""Start a run from an existing bundle's autoencoder (frozen stage 1), so only stage 2 trains.

    python -m training.seed_stage1 --bundle Resources/Models/mrsynth-phantom-fsq --config mrsynth-default \
        --run-dir runs/mrsynth-default
    mrsynth-train stage2 --config mrsynth-default --run-dir runs/mrsynth-default

Writes ``<run>/stage1/best.json`` with the bundle's autoencoder weights and ``<run>/stage1/origin.json``
naming the bundle (name, version, sha256) — the exported card copies it into ``training_data.stage1_origin``.
The config's ``autoencoder`` section must describe the same architecture as the bundle's card.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from MRSynthLib.bundle import load_bundle
from MRSynthLib.errors import MRSynthError
from training.config import ConfigError, load_config


def seed_stage1(bundle_dir: str | Path, config_name: str, run_dir: str | Path) -> Path:
    """Copy the bundle's autoencoder into the run as stage 1; returns the checkpoint path."""
    from safetensors.torch import load_file

    from MRSynthLib.networks.autoencoder import AutoencoderConfig, FSQAutoencoder
    from training.runs import RunFolder

    bundle = load_bundle(bundle_dir)
    config = load_config(config_name)
    bundle_ae = AutoencoderConfig.from_dict(bundle.card.networks["autoencoder"])
    if bundle_ae.to_dict() != config.autoencoder.to_dict():
        raise ConfigError(f"{config_name}: the autoencoder section differs from the one of {bundle.path} "
                          f"({bundle_ae.to_dict()}): copy the bundle's architecture into the config.")
    model = FSQAutoencoder(config.autoencoder)
    model.load_state_dict(load_file(str(bundle.weight_path("autoencoder.safetensors"))))  # checks the architecture
    run = RunFolder(Path(run_dir))
    run.prepare(config)
    path = run.save_checkpoint("stage1", "best", {"model": model.state_dict(), "step": 0, "val_psnr": float("nan")})
    origin = {"bundle": bundle.provenance(), "note": "stage 1 (autoencoder) taken unchanged from this bundle; only stage 2 trained"}
    (run.stage_dir("stage1") / "origin.json").write_text(json.dumps(origin, indent=2), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.seed_stage1", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--config", required=True)
    parser.add_argument("--run-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        path = seed_stage1(args.bundle, args.config, args.run_dir)
    except (MRSynthError, ConfigError) as error:
        print(f"mrsynth-train: {error}", file=sys.stderr)
        return 2
    print(f"stage 1 seeded: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
