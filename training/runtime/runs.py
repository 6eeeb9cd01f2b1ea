"""Run folders: resolved config, git hash, metrics CSV, preview PNGs, checkpoints (resume)."""

from __future__ import annotations

import csv
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.runtime.checkpoint_io import load_state, save_state
from training.config import TrainConfig


def git_revision() -> str:
    """``<hash>[-dirty]`` of the checkout, or ``unknown`` outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if rev.returncode != 0:
        return "unknown"
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


@dataclass
class RunFolder:
    """``<root>/`` with ``config.json``, ``git.txt``, ``<stage>/metrics.csv``, ``<stage>/last.json`` (+ safetensors), previews."""

    root: Path

    def prepare(self, config: TrainConfig) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        resolved = self.root / "config.json"
        data = json.loads(json.dumps(config.to_dict()))  # tuples -> lists, as stored
        if resolved.exists():
            previous = json.loads(resolved.read_text())
            if previous != data:
                raise SystemExit(
                    f"Run folder {self.root} was started with a different config: use a new --run-dir, "
                    f"or the same config to resume."
                )
        else:
            resolved.write_text(json.dumps(data, indent=2) + "\n")
        (self.root / "git.txt").write_text(git_revision() + "\n")

    def stage_dir(self, stage: str) -> Path:
        path = self.root / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log(self, stage: str, row: dict, table: str = "metrics") -> None:
        """Append ``row`` to ``<stage>/<table>.csv`` (one table per fixed set of columns)."""
        row = {key: _plain(value) for key, value in row.items()}
        path = self.stage_dir(stage) / f"{table}.csv"
        new = not path.exists()
        with open(path, "a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def save_checkpoint(self, stage: str, name: str, state: dict) -> Path:
        """Training-state checkpoint ``<stage>/<name>.json`` + safetensors (no pickles; :mod:`training.runtime.checkpoint_io`)."""
        return save_state(self.stage_dir(stage), name, state)

    def load_checkpoint(self, stage: str, name: str = "last") -> dict | None:
        """The state saved under ``name``, or None. Run folders from before the safetensors format
        (``<name>.ckpt``) are still read, tensors only (``weights_only``)."""
        state = load_state(self.root / stage, name)
        legacy = self.root / stage / f"{name}.ckpt"
        if state is None and legacy.exists():
            return torch.load(legacy, map_location="cpu", weights_only=True)
        return state

    def save_preview(self, stage: str, step: int, panels: list[np.ndarray]) -> Path:
        """Save a row of 2D panels (each scaled to its own 0.5..99.5 percentiles) as a PNG."""
        from PIL import Image

        tiles = []
        for panel in panels:
            low, high = np.percentile(panel, [0.5, 99.5])
            tiles.append((np.clip((panel - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8))
        height = max(t.shape[0] for t in tiles)
        row = np.concatenate([np.pad(t, ((0, height - t.shape[0]), (0, 2))) for t in tiles], axis=1)
        path = self.stage_dir(stage) / f"preview_{step:06d}.png"
        Image.fromarray(row[::-1]).save(path)
        return path


    def checkpoint(self, stage: str, step: int, scores: dict, best: float, model, optimizer, schedule,
                   preview: tuple) -> float:
        """Log validation ``scores``, keep ``best.json`` (highest ``val_psnr``) and ``last.json`` (full training
        state), save a preview of ``preview = (truth, output)`` ``(B, 1, z, y, x)`` tensors; returns the new best."""
        self.log(stage, {"step": step, **scores}, table="validation")
        if scores["val_psnr"] > best:
            best = scores["val_psnr"]
            self.save_checkpoint(stage, "best", {"model": model.state_dict(), "step": step, "val_psnr": best})
        truth, output = preview
        mid = truth.shape[2] // 2
        self.save_preview(stage, step, [truth[0, 0, mid].float().numpy(), output[0, 0, mid].detach().float().numpy()])
        self.save_checkpoint(stage, "last", {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                             "schedule": schedule.state_dict(), "step": step, "best": best})
        return best

    def load_best(self, stage: str, model):
        """Load ``best.json`` weights into ``model`` (if any) and return it in eval mode."""
        state = self.load_checkpoint(stage, "best")
        if state is not None:
            model.load_state_dict(state["model"])
        return model.eval()


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def _plain(value):
    """A logged value as a plain number: 0-dim tensors and numpy scalars are read with ``.item()``."""
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "ndim", 0) == 0 else value

