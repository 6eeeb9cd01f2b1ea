"""The training loop shared by the generative stage-2 trainers (ldm, cyclegan, targetcode).

A trainer owns its networks and optimisers and implements one step; this loop draws the step's
random generator (``numpy.random.default_rng([seed, step])``, so a resumed run continues with the
same draws), logs ``<stage>/metrics.csv``, measures a fixed held-out batch and the validation score
(``<stage>/validation.csv``, also before the first step), keeps ``best.ckpt`` (highest ``val_psnr``)
and ``last.ckpt`` (full state for ``--resume``) and saves preview PNGs.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from training.config import OptimConfig
from training.runs import RunFolder, Timer


class Trainer(Protocol):
    modules: dict[str, torch.nn.Module]  # saved in checkpoints (the first ones also go into the bundle)
    optimizers: dict[str, torch.optim.Optimizer]
    extra: dict[str, float]  # numbers measured at start-up that the bundle needs (saved with the weights)

    def step(self, rng: np.random.Generator) -> dict[str, float]:
        """One optimisation step; returns its loss terms (``loss`` first)."""

    def held_out_loss(self) -> dict[str, float]:
        """Loss terms on a fixed validation batch (deterministic), names starting with ``val_``."""

    def validate(self) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray]]:
        """``({"val_psnr": ..., ...}, (truth, output) 2D preview panels)``."""


def _state(trainer: Trainer) -> dict:
    return {name: module.state_dict() for name, module in trainer.modules.items()}


def run_training(trainer: Trainer, optim: OptimConfig, run: RunFolder, stage: str, seed: int, resume: bool = False,
                 progress: bool = True, description: str = "stage2") -> dict:
    """Train ``optim.steps`` steps (or the remainder after ``resume``); returns the best checkpoint's state."""
    from tqdm import tqdm

    schedules = {name: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(optim.steps, 1))
                 for name, opt in trainer.optimizers.items()}
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

    def evaluate(step: int) -> None:
        nonlocal best
        scores, (truth, output) = trainer.validate()
        row = {"step": step, **trainer.held_out_loss(), **scores}
        run.log(stage, row, table="validation")
        run.save_preview(stage, step, [truth, output])
        if scores["val_psnr"] > best:
            best = scores["val_psnr"]
            run.save_checkpoint(stage, "best", {"modules": _state(trainer), "step": step, "val_psnr": best,
                                                "extra": dict(trainer.extra)})

    if start == 0:
        evaluate(0)
    timer = Timer()
    bar = tqdm(range(start, optim.steps), desc=description, disable=not progress, initial=start, total=optim.steps)
    for step in bar:
        terms = trainer.step(np.random.default_rng([seed, step]))
        for schedule in schedules.values():
            schedule.step()
        done = step + 1
        if done % optim.log_every == 0 or done == optim.steps:
            lr = next(iter(schedules.values())).get_last_lr()[0]
            run.log(stage, {"step": done, **terms, "lr": lr, "seconds": round(timer.elapsed(), 3)})
            bar.set_postfix(loss=f"{terms['loss']:.4f}")
        if done % optim.checkpoint_every == 0 or done == optim.steps:
            evaluate(done)
            run.save_checkpoint(stage, "last", {
                "modules": _state(trainer), "optimizers": {n: o.state_dict() for n, o in trainer.optimizers.items()},
                "schedules": {n: s.state_dict() for n, s in schedules.items()}, "step": done, "best": best,
                "extra": dict(trainer.extra)})
    final = run.load_checkpoint(stage, "best")
    if final is None:
        raise RuntimeError(f"{run.root}/{stage} has no best.ckpt after training")
    return final
