"""Mechanics shared by the training stages: resume, batches on the device, rank-0 progress and logging,
and the end-of-stage check that every DDP replica holds the same weights."""

from __future__ import annotations

import json

import numpy as np
import torch

from training.runtime.distributed import DistContext, replica_hashes, unwrap
from training.runtime.runs import RunFolder


def restore(run: RunFolder, stage: str, model, optimizer, schedule, resume: bool) -> tuple[int, float]:
    """Load ``<stage>/last.json`` into ``model``/``optimizer``/``schedule`` when resuming; returns
    ``(first step, best validation score)`` (``(0, -inf)`` for a fresh start)."""
    state = run.load_checkpoint(stage) if resume else None
    if state is None:
        return 0, -np.inf
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])  # optimiser state follows its parameters' device
    return int(state["step"]), float(state["best"])


def progress_steps(ctx: DistContext, start: int, total: int, description: str, enabled: bool):
    """``tqdm`` over steps ``start .. total - 1``, shown on rank 0 only."""
    from tqdm import tqdm

    return tqdm(range(start, total), desc=description, disable=not (enabled and ctx.is_main), initial=start, total=total)


def mean_terms(ctx: DistContext, terms: dict[str, float]) -> dict[str, float]:
    """Average scalar loss terms over the ranks (every rank must call it with the same keys)."""
    if not ctx.distributed:
        return terms
    keys = sorted(terms)
    values = torch.tensor([float(terms[k]) for k in keys], dtype=torch.float64, device=ctx.device)
    torch.distributed.all_reduce(values)
    averaged = (values / ctx.world_size).tolist()
    return {k: averaged[keys.index(k)] for k in terms}


def is_log_step(done: int, every: int, total: int) -> bool:
    return done % every == 0 or done == total


def check_replicas(ctx: DistContext, run: RunFolder, stage: str, modules: dict[str, torch.nn.Module],
                   step: int) -> list[str]:
    """Gather every rank's hash of the weights of ``modules`` (name -> module, DDP wrappers allowed); rank 0
    records them in ``<stage>/replicas.json``. Raises RuntimeError when the replicas differ (a
    desynchronised data-parallel run)."""
    hashes = replica_hashes(ctx, torch.nn.ModuleDict({k: unwrap(m) for k, m in modules.items()}))
    if ctx.is_main:
        record = {"step": step, "world_size": ctx.world_size, "backend": ctx.backend or "none",
                  "device": str(ctx.device), "modules": list(modules), "sha256": hashes,
                  "identical": len(set(hashes)) == 1}
        path = run.stage_dir(stage) / "replicas.json"
        path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    if len(set(hashes)) != 1:
        raise RuntimeError(f"{stage}: the {ctx.world_size} ranks ended with different weights ({hashes}); "
                           "a rank ran a different number of steps or skipped a gradient all-reduce.")
    return hashes


__all__ = ["check_replicas", "is_log_step", "mean_terms", "progress_steps", "restore"]
