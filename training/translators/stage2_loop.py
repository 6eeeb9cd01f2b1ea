"""The training loop shared by the generative stage-2 trainers (ldm, cyclegan, targetcode).

A trainer owns its networks and optimisers and implements one step; this loop draws the step's
random generator (``numpy.random.default_rng([seed, step])``, so a resumed run continues with the
same draws), logs ``<stage>/metrics.csv``, measures a fixed held-out batch and the validation score
(``<stage>/validation.csv``, also before the first step), optionally stops at a wall-clock budget, keeps
``best.json`` (best ``trainer.selection`` score) and ``last.json`` (full state for ``--resume``) and saves
preview PNGs.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch

from training.config import OptimConfig
from training.runtime.distributed import DistContext, agree, barrier, data_parallel, rank_seed, run_on_main
from training.runtime.loop import check_replicas
from training.runtime.runs import RunFolder, Timer


class Trainer(Protocol):
    modules: dict[str, torch.nn.Module]  # saved in checkpoints (the first ones also go into the bundle)
    optimizers: dict[str, torch.optim.Optimizer]
    extra: dict[str, float]  # numbers measured at start-up that the bundle needs (saved with the weights)
    selection: tuple[str, float]  # (validation column, +1 higher is better / -1 lower is better) for best.json

    def step(self, rng: np.random.Generator) -> dict[str, float]:
        """One optimisation step; returns its loss terms (``loss`` first)."""

    def held_out_loss(self) -> dict[str, float]:
        """Loss terms on a fixed validation batch (deterministic), names starting with ``val_``."""

    def validate(self, final: bool) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray] | None]:
        """``({"val_psnr": ...}, (truth, output) 2D preview panels)``; a trainer whose validation is costly
        may compute it only when ``final`` (the last evaluation) and return NaN and no preview before."""


def _state(trainer: Trainer) -> dict:
    return {name: module.state_dict() for name, module in trainer.modules.items()}


class _Fraction:
    """How far training is, in [0, 1]: the larger of steps done / steps and seconds spent / budget."""

    def __init__(self) -> None:
        self.value = 0.0

    def cosine(self, _: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(self.value, 1.0)))


def run_training(trainer: Trainer, optim: OptimConfig, run: RunFolder, stage: str, seed: int, resume: bool = False,
                 progress: bool = True, description: str = "stage2", max_minutes: float = 0.0,
                 ctx: DistContext | None = None) -> dict:
    """Train ``optim.steps`` steps (or the remainder after ``resume``); returns the best checkpoint's state.

    Under ``torchrun`` (``ctx`` distributed) every rank runs this with its own replica of the trainer: replicas
    start from rank 0's weights, every optimiser averages gradients over the ranks before its step, each rank
    draws its own batches (:func:`training.runtime.distributed.rank_seed`); rank 0 alone validates, logs and writes
    checkpoints, and decides the wall-clock stop for all.

    ``max_minutes`` > 0 also stops at that wall-clock budget (validations included; the learning rate
    follows a cosine over whichever of steps and time runs out first, and the last validation is
    started early enough to end within the budget, judging by the previous one).
    """
    from tqdm import tqdm

    ctx = ctx or DistContext()
    data_parallel(ctx, trainer.modules, trainer.optimizers.values())
    fraction = _Fraction()
    schedules = {name: torch.optim.lr_scheduler.LambdaLR(opt, fraction.cosine) for name, opt in trainer.optimizers.items()}
    budget = 60.0 * max_minutes
    start, best = 0, -np.inf
    state = run.load_checkpoint(stage) if resume else None
    if state is not None:
        for name, module in trainer.modules.items():
            module.load_state_dict(state["modules"][name])
        for name, opt in trainer.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            schedules[name].load_state_dict(state["schedules"][name])
        trainer.extra.update(state["extra"])
        start, best = int(state["step"]), float(state["best"])
        fraction.value = start / max(optim.steps, 1)

    timer = Timer()
    validation_seconds = 0.0

    def evaluate(step: int, final: bool = False) -> None:
        nonlocal best, validation_seconds
        started = timer.elapsed()
        scores, preview = trainer.validate(final)
        row = {"step": step, **trainer.held_out_loss(), **scores}
        if preview is not None:
            run.save_preview(stage, step, list(preview))
        key, sign = trainer.selection
        if sign * row[key] > best:
            best = sign * row[key]
            run.save_checkpoint(stage, "best", {"modules": _state(trainer), "step": step, key: row[key],
                                                "extra": dict(trainer.extra)})
        row["seconds"] = round(timer.elapsed(), 1)
        run.log(stage, row, table="validation")
        if not final:
            validation_seconds = timer.elapsed() - started

    if start == 0 and ctx.is_main:
        evaluate(0, final=optim.steps == 0)
    bar = tqdm(range(start, optim.steps), desc=description, disable=not (progress and ctx.is_main), initial=start,
               total=optim.steps)
    for step in bar:
        terms = trainer.step(np.random.default_rng(rank_seed(ctx, [seed, step])))
        done = step + 1
        out_of_time = budget > 0 and agree(ctx, timer.elapsed() + validation_seconds >= budget)
        fraction.value = max(done / max(optim.steps, 1), timer.elapsed() / budget if budget > 0 else 0.0)
        for schedule in schedules.values():
            schedule.step()
        if not ctx.is_main:
            if out_of_time:
                break
            continue
        if done % optim.log_every == 0 or done == optim.steps or out_of_time:
            lr = next(iter(schedules.values())).get_last_lr()[0]
            run.log(stage, {"step": done, **terms, "lr": lr, "seconds": round(timer.elapsed(), 3)})
            bar.set_postfix(loss=f"{terms['loss']:.4f}")
        if done % optim.checkpoint_every == 0 or done == optim.steps or out_of_time:
            evaluate(done, final=done == optim.steps or out_of_time)
            run.save_checkpoint(stage, "last", {
                "modules": _state(trainer), "optimizers": {n: o.state_dict() for n, o in trainer.optimizers.items()},
                "schedules": {n: s.state_dict() for n, s in schedules.items()}, "step": done, "best": best,
                "extra": dict(trainer.extra)})
        if out_of_time:
            run.log(stage, {"step": done, "stopped": "time budget", "seconds": round(timer.elapsed(), 1)}, table="budget")
            break
    check_replicas(ctx, run, stage, dict(trainer.modules), optim.steps)
    barrier(ctx)
    final = run_on_main(ctx, lambda: run.load_checkpoint(stage, "best"))
    if final is None:
        raise RuntimeError(f"{run.root}/{stage} has no best.json after training")
    return final
