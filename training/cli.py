"""``mrsynth-train``: stage1 | stage2 | export | all | regression | export-onnx.

Under ``torchrun --nproc_per_node N -m training.cli ...`` stage 1 and stage 2 (every translator kind) train
data-parallel on N processes (NCCL on GPUs, gloo on CPUs); export runs on rank 0 only. Bundles are written
with their ONNX graphs (parity-checked against torch) unless ``--no-onnx``, so a CPU-only Slicer runs them.
A job that ``torchrun --max-restarts`` restarted after a failed rank resumes from the run folder's last
checkpoint (as with ``--resume``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.config import ConfigError, TrainConfig, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrsynth-train", description="Train MRSynth models and export bundles.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("stage1", "train the autoencoder"), ("stage2", "train the stage-2 translator (method.kind)"),
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
        if name in ("export", "all"):
            p.add_argument("--no-onnx", action="store_true",
                           help="skip the ONNX graphs and their parity check (the bundle then needs torch at inference)")
    p = sub.add_parser("export-onnx", help="add (or re-export) the ONNX graphs of a fusion bundle, parity-checked")
    p.add_argument("bundle", type=Path, help="bundle folder, rewritten in place")
    return parser


def cache_dir(config: TrainConfig, run_root: Path) -> Path:
    """``data.cache_dir``, or ``<run-dir>/cache`` when it is empty."""
    return Path(config.data.cache_dir).expanduser() if config.data.cache_dir else run_root / "cache"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "export-onnx":
        from training.bundles.onnx_export import main as export_onnx

        return export_onnx([str(args.bundle)])
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

    from training.runtime.distributed import cleanup, init_distributed

    if config.threads:
        torch.set_num_threads(config.threads)
    ctx = init_distributed(config.runtime.device)
    from MRSynthLib.errors import MRSynthError
    from training.runtime.distributed import elastic_restart_count

    restarts = elastic_restart_count()
    if restarts and not args.resume:  # torchrun --max-restarts restarted the workers: continue, do not start over
        args.resume = True
        if ctx.is_main:
            print(f"mrsynth-train: torchrun restarted the workers (restart {restarts}); resuming from the last "
                  f"checkpoint in the run folder.", file=sys.stderr)

    try:
        return _run(args, config, ctx)
    except (ConfigError, MRSynthError, FloatingPointError) as error:  # a bad config, dataset folder or image file, a diverged loss: one sentence
        print(f"mrsynth-train: {error}", file=sys.stderr)
        return 2
    finally:
        cleanup(ctx)


def _run(args, config: TrainConfig, ctx) -> int:
    from training.runtime.distributed import run_on_main
    from training.runtime.runs import RunFolder

    run = RunFolder(args.run_dir or Path("runs") / config.name)
    run_on_main(ctx, lambda: run.prepare(config))
    progress = not args.quiet
    if args.command in ("stage1", "stage2", "all"):
        from training.inputs.data import prepare_data

        data = prepare_data(config.data, config.preprocessing, config.seed, cache_dir=cache_dir(config, run.root),
                            split_path=run.root / "split.json", ctx=ctx, progress=progress)
        if ctx.is_main and progress:
            print(f"data: {len(data.train)} training and {len(data.val)} validation cases ({len(data.split.test)} test "
                  f"cases held out, see {run.root / 'split.json'}); preprocessing cache {cache_dir(config, run.root)}: "
                  f"{data.built} cases built, {data.reused} reused", file=sys.stderr)
        if args.command == "stage1" or (args.command == "all" and not config.method.stage1_from):
            from training.autoencoder.stage1 import train_stage1

            autoencoder = train_stage1(config, run, data.train, data.val, resume=args.resume, progress=progress,
                                       ctx=ctx, weights=data.weights)
        if args.command in ("stage2", "all") and config.method.kind != "fusion":  # the generative kinds
            from training.translators.stage2_methods import train_method

            train_method(config, run, data.train, data.val, resume=args.resume, progress=progress, ctx=ctx)
        if args.command in ("stage2", "all") and config.method.kind == "fusion":
            from MRSynthLib.networks.autoencoder import FSQAutoencoder
            from training.translators.stage2 import paired_volumes, train_stage2

            if args.command == "stage2":
                state = run.load_checkpoint("stage1", "best")
                if state is None:
                    print(f"mrsynth-train: {run.root} has no stage1/best.json: run `mrsynth-train stage1` first.",
                          file=sys.stderr)
                    return 2
                autoencoder = FSQAutoencoder(config.autoencoder)
                autoencoder.load_state_dict(state["model"])
            paired = [paired_volumes(config, volumes) for volumes in (data.train, data.val)]
            if not paired[0] or not paired[1]:
                print("mrsynth-train: stage 2 needs training and validation cases with at least two of the translator's "
                      f"contrasts {list(config.translator.contrasts)}; the data has none in one of the splits.",
                      file=sys.stderr)
                return 2
            train_stage2(config, run, autoencoder, paired[0], paired[1], resume=args.resume, progress=progress, ctx=ctx)
    if args.command in ("export", "all") and ctx.is_main:
        output = args.output or run.root / "bundle"
        if config.method.kind != "fusion":  # the kinds' exporter writes its ONNX graphs itself
            from training.bundles.kind_export import export_method

            export_method(config, run, output, overwrite=args.overwrite, onnx_graphs=not args.no_onnx)
        else:
            from training.bundles.export import export_bundle

            export_bundle(config, run, output, overwrite=args.overwrite)
            if not args.no_onnx:
                from training.bundles.onnx_export import add_onnx_parts

                add_onnx_parts(output)
        print(f"bundle written to {output}" + ("" if args.no_onnx else " (with ONNX graphs, parity-checked)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
