"""``mrsynth-train``: stage1 | stage2 | export | all."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.config import ConfigError, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrsynth-train", description="Train MRSynth models and export bundles.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("stage1", "train the FSQ autoencoder"), ("stage2", "train the fusion translator"),
                       ("export", "write the bundle folder"), ("all", "stage1, stage2 and export"),
                       ("regression", "train and export the classical baseline (gradient-boosted trees per voxel)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", required=True, help="YAML file or built-in config name (training/configs)")
        p.add_argument("--run-dir", type=Path, help="run folder (default: runs/<config name>)")
        p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        if name in ("export", "all", "regression"):
            p.add_argument("--output", type=Path, help="bundle folder (default: <run-dir>/bundle)")
            p.add_argument("--overwrite", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"mrsynth-train: {error}", file=sys.stderr)
        return 2
    if args.command == "regression":  # classical baseline: no networks, no distributed setup (--resume is unused)
        from training.regression import train_and_export

        output = train_and_export(config, args.run_dir or Path("runs") / config.name, args.output, args.overwrite,
                                  progress=not args.quiet)
        print(f"bundle written to {output}")
        return 0
    import torch

    from training.data import load_volumes
    from training.runs import RunFolder

    if config.threads:
        torch.set_num_threads(config.threads)
    run = RunFolder(args.run_dir or Path("runs") / config.name)
    run.prepare(config)
    progress = not args.quiet
    if args.command in ("stage1", "stage2", "all"):
        train, val = load_volumes(config.data, config.preprocessing, config.seed)
        if args.command in ("stage1", "all"):
            from training.stage1 import train_stage1

            autoencoder = train_stage1(config, run, train, val, resume=args.resume, progress=progress)
        if args.command in ("stage2", "all"):
            from MRSynthLib.networks.autoencoder import FSQAutoencoder
            from training.stage2 import train_stage2

            if args.command == "stage2":
                state = run.load_checkpoint("stage1", "best")
                if state is None:
                    print(f"mrsynth-train: {run.root} has no stage1/best.ckpt: run `mrsynth-train stage1` first.",
                          file=sys.stderr)
                    return 2
                autoencoder = FSQAutoencoder(config.autoencoder)
                autoencoder.load_state_dict(state["model"])
            train_stage2(config, run, autoencoder, train, val, resume=args.resume, progress=progress)
    if args.command in ("export", "all"):
        from training.export import export_bundle

        output = export_bundle(config, run, args.output or run.root / "bundle", overwrite=args.overwrite)
        print(f"bundle written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
