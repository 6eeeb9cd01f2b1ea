"""Dry run of a training config: every stage builds its real networks and takes one step, at a reduced size, on the CPU.

What a GPU config can be checked for before a long allocation: its keys parse, its networks build at their
configured widths and depths, each stage (stage 1, the fusion translator, the configured kind) runs a training
step and a validation through the real code path. What is reduced: the data (three seeded phantoms at the
config's spacing instead of its dataset), batch 1, the smallest patch the networks accept (at least ``--size``),
one step per stage, 2 sampling steps in validation and in the card; the bundle is exported with its ONNX graphs and
parity check like a real run's; ``stage1_from``/``fusion_from`` are dropped so every stage
runs here. Parameter counts are exact; seconds are CPU seconds at the reduced size, not GPU estimates.

    python -m training.experiments.dry_run --config brats-ldm [--size 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

from training.config import ConfigError, load_config


def patch_multiple(config) -> int:
    """The patch multiple the config's networks need: autoencoder downsampling x the kind's network multiple."""
    from training.kinds import train_kind

    multiple = config.autoencoder.downsampling * config.translator.latent_multiple
    if config.method.kind != "fusion":
        multiple = max(multiple, config.autoencoder.downsampling * train_kind(config.method.kind).network_multiple(config))
    return multiple


def reduced_config(config, size: int) -> dict:
    """The config as a dict with the data, batch, patch, steps and validation reduced (networks unchanged)."""
    multiple = patch_multiple(config)
    patch = -(-size // multiple) * multiple
    data = copy.deepcopy(config.to_dict())
    data["name"] = f"{config.name}-dry-run"
    data["data"]["sources"] = [{"kind": "phantom", "train_cases": 2, "val_cases": 1,
                                "size": [patch] * 3, "ms_lesions": 1}]
    data["data"]["cache_dir"] = ""
    data.setdefault("runtime", {})["workers"] = 0
    for stage in ("stage1", "stage2"):
        data.setdefault(stage, {}).update(steps=1, batch_size=1, patch_size=[patch] * 3, log_every=1, checkpoint_every=1)
        if stage == "stage2" and "decode_size" in data[stage]:
            data[stage]["decode_size"] = []
    method = data.setdefault("method", {})
    for key in ("stage1_from", "fusion_from", "max_minutes"):
        method.pop(key, None)
    kind = config.method.kind
    settings = getattr(config.method, kind, None)
    if hasattr(settings, "validation_steps"):  # the sampling kinds: 2 steps in validation and in the parity probe
        method.setdefault(kind, {})["validation_steps"] = 2
        method[kind].setdefault("sampling", {})["steps"] = 2
    return data


def _parameters(state: dict) -> int:
    import torch

    count = 0
    for value in state.values():
        if isinstance(value, torch.Tensor):
            count += value.numel()
        elif isinstance(value, dict):
            count += _parameters(value)
    return count


def dry_run(name: str, size: int = 32, work_dir: Path | None = None) -> dict:
    """Run the reduced config through ``mrsynth-train all``; returns what ran, parameter counts and CPU seconds.

    Raises:
        ConfigError: the config does not parse, or a stage fails (its message).
    """
    import yaml

    from training.cli import main as train
    from training.runtime.runs import RunFolder

    config = load_config(name)
    with tempfile.TemporaryDirectory(prefix="mrsynth-dry-run-", dir=work_dir) as scratch:
        root = Path(scratch)
        path = root / "config.yaml"
        path.write_text(yaml.safe_dump(reduced_config(config, size)))
        started = time.perf_counter()
        code = train(["all", "--config", str(path), "--run-dir", str(root / "run"), "--output", str(root / "bundle"),
                      "--quiet"])
        seconds = time.perf_counter() - started
        if code != 0:
            raise ConfigError(f"dry run of {name} failed (exit {code}); the message above says where")
        run = RunFolder(root / "run")
        stages = {}
        for stage in ("stage1", "stage2", config.method.stage):
            state = run.load_checkpoint(stage, "best")
            if state is not None:
                stages[stage] = _parameters(state.get("modules", state.get("model", {})))
        patch = yaml.safe_load(path.read_text())["stage1"]["patch_size"]
    return {"config": name, "kind": config.method.kind, "patch": patch, "parameters": stages,
            "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.experiments.dry_run", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, nargs="+", help="config names or YAML files")
    parser.add_argument("--size", type=int, default=32, help="smallest patch edge in voxels (rounded up to the "
                                                               "networks' multiple)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    results = []
    for name in args.config:
        try:
            results.append(dry_run(name, args.size))
        except ConfigError as error:
            print(f"training.experiments.dry_run: {error}", file=sys.stderr)
            return 2
        print(json.dumps(results[-1]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
