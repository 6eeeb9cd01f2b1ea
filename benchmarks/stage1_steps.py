"""Stage-1 training step time on this CPU: ``python -m benchmarks.stage1_steps --config real-stage1-2x ...``.

For each config's autoencoder, one optimisation step (forward, the config's stage-1 loss terms L1 +
SSIM, backward, AdamW) on a random ``(batch, 1, *patch)`` batch is timed in float32 and with bf16
autocast, each with and without the channels-last-3d memory format. Seconds per step are the median of
``--steps`` steps after ``--warmup`` steps. Synthetic input: the step time does not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from MRSynthLib.networks.autoencoder import LatentAutoencoder
from training.runtime.acceleration import autocast
from training.config import load_config
from training.autoencoder.objective import Stage1Objective


def time_steps(config_name: str, bf16: bool, channels_last: bool, steps: int, warmup: int) -> dict:
    config = load_config(config_name)
    torch.manual_seed(0)
    model = LatentAutoencoder(config.autoencoder)
    objective = Stage1Objective(config)
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.stage1.lr)
    batch = torch.rand(config.stage1.batch_size, 1, *config.stage1.patch_size).to(memory_format=memory_format)
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        with autocast(bf16, torch.device("cpu")):
            loss, _, _ = objective(model, batch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - started)
    return {"config": config_name, "bf16": bf16, "channels_last": channels_last,
            "parameters": sum(p.numel() for p in model.parameters()),
            "batch": [config.stage1.batch_size, 1, *config.stage1.patch_size],
            "seconds_per_step": round(statistics.median(times), 3), "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stage1_steps", description=__doc__.split("\n")[0])
    parser.add_argument("--config", action="append", required=True, help="training config (repeatable)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.config:
        for bf16 in (False, True):
            for channels_last in (False, True):
                row = time_steps(name, bf16, channels_last, args.steps, args.warmup)
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
