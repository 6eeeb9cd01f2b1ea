"""Start a run from an existing bundle's autoencoder, or another run's stage 1 (frozen), so only stage 2 trains.

    python -m training.autoencoder.seed_stage1 --bundle Resources/Models/mrsynth-phantom-fsq --config mrsynth-default \
        --run-dir runs/mrsynth-default
    mrsynth-train stage2 --config mrsynth-default --run-dir runs/mrsynth-default

    python -m training.autoencoder.seed_stage1 --from-run runs/real-stage1-2x --config mrsynth-default --run-dir runs/mrsynth-default

Writes ``<run>/stage1/best.json`` with the bundle's (or the other run's best) autoencoder weights and
``<run>/stage1/origin.json`` naming where they came from (bundle name, version, sha256; or the run folder,
its config name, git revision, step and the sha256 of its tensor file) — the exported card copies it into
``training_data.stage1_origin``. The config's ``autoencoder`` section must describe the same architecture.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from MRSynthLib.models.bundle import load_bundle
from MRSynthLib.errors import MRSynthError
from training.config import ConfigError, load_config


def seed_stage1(bundle_dir: str | Path, config_name: str, run_dir: str | Path) -> Path:
    """Copy the bundle's autoencoder into the run as stage 1; returns the checkpoint path."""
    from safetensors.torch import load_file

    from MRSynthLib.networks.autoencoder import AutoencoderConfig, FSQAutoencoder
    from training.runtime.runs import RunFolder

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


def seed_stage1_from_run(source_dir: str | Path, config_name: str, run_dir: str | Path) -> Path:
    """Copy ``source_dir``'s best stage-1 checkpoint into the run; returns the checkpoint path."""
    from MRSynthLib.networks.autoencoder import AutoencoderConfig, LatentAutoencoder
    from training.runtime.runs import RunFolder

    source = RunFolder(Path(source_dir))
    state = source.load_checkpoint("stage1", "best")
    if state is None:
        raise ConfigError(f"{source.root} has no stage1/best.json: train stage 1 there first "
                          f"(mrsynth-train stage1 --run-dir {source.root}).")
    config = load_config(config_name)
    source_config = json.loads((source.root / "config.json").read_text(encoding="utf-8"))
    source_ae = AutoencoderConfig.from_dict(source_config["autoencoder"])
    if source_ae.to_dict() != config.autoencoder.to_dict():
        raise ConfigError(f"{config_name}: the autoencoder section differs from the one of {source.root} "
                          f"({source_ae.to_dict()}): copy that run's architecture into the config.")
    model = LatentAutoencoder(config.autoencoder)
    model.load_state_dict(state["model"])  # checks the architecture
    run = RunFolder(Path(run_dir))
    run.prepare(config)
    path = run.save_checkpoint("stage1", "best", {"model": model.state_dict(), "step": int(state.get("step") or 0),
                                                  "val_psnr": float(state.get("val_psnr", float("nan")))})
    record = source.root / "stage1" / "best.json"  # absent in run folders of the older .ckpt format
    digest = json.loads(record.read_text(encoding="utf-8"))["sha256"] if record.exists() else None  # checked on load
    revision = (source.root / "git.txt").read_text().strip() if (source.root / "git.txt").exists() else "unknown"
    origin = {"run": {"folder": str(source.root), "config": source_config.get("name"), "git": revision,
                      "step": int(state.get("step") or 0), "weights_sha256": digest},
              "note": "stage 1 (autoencoder) taken unchanged from this run's best checkpoint; only stage 2 trained here"}
    (run.stage_dir("stage1") / "origin.json").write_text(json.dumps(origin, indent=2), encoding="utf-8")
    for log in ("metrics.csv", "validation.csv"):  # the training log travels with the weights (bundle card, docs)
        if (source.root / "stage1" / log).exists():
            shutil.copyfile(source.root / "stage1" / log, run.stage_dir("stage1") / log)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.autoencoder.seed_stage1", description=__doc__.split("\n")[0])
    origin = parser.add_mutually_exclusive_group(required=True)
    origin.add_argument("--bundle", type=Path, help="a bundle folder whose autoencoder becomes stage 1")
    origin.add_argument("--from-run", type=Path, help="a run folder whose stage1/best.json becomes stage 1")
    parser.add_argument("--config", required=True)
    parser.add_argument("--run-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.bundle is not None:
            path = seed_stage1(args.bundle, args.config, args.run_dir)
        else:
            path = seed_stage1_from_run(args.from_run, args.config, args.run_dir)
    except (MRSynthError, ConfigError) as error:
        print(f"mrsynth-train: {error}", file=sys.stderr)
        return 2
    print(f"stage 1 seeded: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
