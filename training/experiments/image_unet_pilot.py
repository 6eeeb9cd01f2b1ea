"""Pilot: an image-space 3D U-Net for any-subset synthesis, against the regression default.

Every latent model so far measured below the per-voxel regression on held-out real cases. This pilot asks
whether a network that works on the images themselves (no autoencoder) does better with the same data.

One network for every task: input channels are the five contrasts (zero where not given) plus five
availability channels; the output is every contrast. Each training sample draws a random non-empty proper
subset of the case's contrasts as inputs; the loss is L1 inside the brain on the contrasts the case has but
were not given. Data: the preprocessing cache of the leave-one-case-out evaluation (1.5 mm model space,
percentile normalised, ``runs/real-eval-1p5mm/cache``); the held-out cases are never trained on.

Evaluation (model space, the library's brain protocol): the held-out cases' tasks of ``benchmarks.real_eval``,
for this network and for the regression fold bundle that never saw the case (``runs/real-eval-1p5mm/folds``).

    python -m training.experiments.image_unet_pilot --minutes 70 --out runs/image-unet-pilot
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

CONTRASTS = ("t1", "t1ce", "t2", "flair", "pd")
TASKS = (("t1ce", ("t1", "t2", "flair")), ("flair", ("t1", "t2")), ("t2", ("t1",)), ("pd", ("t2",)))


def load_cases(cache: Path) -> dict[str, dict[str, np.ndarray]]:
    """case -> {contrast or 'mask': (z, y, x) array} from a preprocessing cache folder of real cases."""
    cases = {}
    for folder in sorted(p for p in cache.iterdir() if p.is_dir()):
        arrays = {c: np.load(folder / f"{c}.npy") for c in CONTRASTS if (folder / f"{c}.npy").exists()}
        arrays["mask"] = np.load(folder / "mask.npy")
        cases[folder.name] = arrays
    return cases


def network(width: int):
    """MONAI BasicUNet: two convolutions per level from full resolution down to 1/16, no normalisation layers
    (patches in training, whole volumes at inference), interpolation upsampling (no checkerboard)."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=3, in_channels=2 * len(CONTRASTS), out_channels=len(CONTRASTS),
                     features=(width, width, 2 * width, 4 * width, 8 * width, width), norm=None,
                     upsample="nontrainable")


def network_input(arrays: dict[str, np.ndarray], given: tuple[str, ...], slices) -> np.ndarray:
    """``(10, *patch)`` float32: the given contrasts (zeros elsewhere), then their availability flags."""
    some = arrays["mask"][slices]
    x = np.zeros((2 * len(CONTRASTS), *some.shape), dtype=np.float32)
    for i, contrast in enumerate(CONTRASTS):
        if contrast in given:
            x[i] = arrays[contrast][slices]
            x[len(CONTRASTS) + i] = 1.0
    return x


def padded(arrays: dict[str, np.ndarray], patch: int) -> dict[str, np.ndarray]:
    """Zero-pad every array so that each axis is at least ``patch``."""
    shape = arrays["mask"].shape
    pads = [(0, max(0, patch - s)) for s in shape]
    return {k: np.pad(v, pads) for k, v in arrays.items()}


def sample(cases, names, rng, patch: int):
    name = names[rng.integers(len(names))]
    arrays = cases[name]
    have = [c for c in CONTRASTS if c in arrays]
    count = rng.integers(1, len(have))
    given = tuple(sorted(rng.choice(have, size=count, replace=False), key=CONTRASTS.index))
    wanted = [c for c in have if c not in given]
    fg = np.argwhere(arrays["mask"])
    centre = fg[rng.integers(len(fg))]
    shape = arrays["mask"].shape
    start = [int(np.clip(c - patch // 2, 0, s - patch)) for c, s in zip(centre, shape)]
    slices = tuple(slice(s, s + patch) for s in start)
    x = network_input(arrays, given, slices)
    y = np.zeros((len(CONTRASTS), patch, patch, patch), dtype=np.float32)
    w = np.zeros_like(y)
    brain = arrays["mask"][slices].astype(np.float32)
    for contrast in wanted:
        i = CONTRASTS.index(contrast)
        y[i] = arrays[contrast][slices]
        w[i] = brain
    for axis in range(3):
        if rng.random() < 0.5:
            x, y, w = (np.flip(a, axis + 1) for a in (x, y, w))
    return np.ascontiguousarray(x), np.ascontiguousarray(y), np.ascontiguousarray(w)


def predict_whole(model, arrays, given, multiple: int = 16) -> dict[str, np.ndarray]:
    import torch

    shape = arrays["mask"].shape
    full = tuple(slice(0, s) for s in shape)
    x = network_input(arrays, given, full)
    pads = [(0, (-s) % multiple) for s in shape]
    x = np.pad(x, [(0, 0), *pads])
    with torch.no_grad():
        y = model(torch.from_numpy(x)[None]).float()[0].numpy()
    y = y[(slice(None), *full)] * arrays["mask"]
    return {c: y[i] for i, c in enumerate(CONTRASTS)}


def evaluate(model, held_out, baseline) -> list[dict]:
    from MRSynthLib.quality.metrics import evaluate_volumes, sharpness_ratio

    rows = []
    model.eval()
    for name, arrays in held_out.items():
        for target, inputs in TASKS:
            if target not in arrays or not all(c in arrays for c in inputs):
                continue
            prediction = predict_whole(model, arrays, inputs)[target]
            scores = evaluate_volumes(arrays[target], prediction, arrays["mask"])["brain"]
            rows.append({"case": name, "target": target, "inputs": list(inputs), "model": "unet",
                         "psnr": scores["psnr"], "ssim": scores["ssim"],
                         "sharpness": sharpness_ratio(arrays[target], prediction, arrays["mask"])})
            if (name, target) in baseline:
                rows.append({**rows[-1], "model": "regression", **baseline[name, target]})
    model.train()
    return rows


def fold_prediction(folds: Path, case: str, arrays: dict, inputs: tuple[str, ...], target: str) -> np.ndarray:
    """``target`` of ``case`` predicted from ``inputs`` (model space) by the regression fold bundle that never saw it."""
    from MRSynthLib.methods.regression import load_engine, predict
    from MRSynthLib.models.bundle import load_bundle

    engine = load_engine(load_bundle(folds / case))
    return predict(engine, {c: arrays[c] for c in inputs}, target, mask=arrays["mask"], contributions=False).synthetic


def regression_baseline(held_out, folds: Path) -> dict:
    """(case, target) -> scores of the regression fold bundle that never saw the case, in model space."""
    from MRSynthLib.quality.metrics import evaluate_volumes, sharpness_ratio

    out = {}
    for name, arrays in held_out.items():
        if not (folds / name).exists():
            continue
        for target, inputs in TASKS:
            if target not in arrays or not all(c in arrays for c in inputs):
                continue
            prediction = fold_prediction(folds, name, arrays, inputs, target)
            scores = evaluate_volumes(arrays[target], prediction, arrays["mask"])["brain"]
            out[name, target] = {"psnr": scores["psnr"], "ssim": scores["ssim"],
                                 "sharpness": sharpness_ratio(arrays[target], prediction, arrays["mask"])}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("runs/real-eval-1p5mm/cache/96eed81ae7d4/real"))
    parser.add_argument("--folds", type=Path, default=Path("runs/real-eval-1p5mm/folds"))
    parser.add_argument("--held-out", default="ms-ljubljana-p26,tcga-fg-6692")
    parser.add_argument("--exclude", default="", help="cases not to train on (comma-separated)")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=200, help="steps of linear learning-rate warm-up")
    parser.add_argument("--eval-every", type=int, default=400)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/image-unet-pilot"))
    args = parser.parse_args(argv)

    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    cases = load_cases(args.cache)
    held_names = [c for c in args.held_out.split(",") if c]
    excluded = set(held_names) | {c for c in args.exclude.split(",") if c}
    held_out = {n: cases[n] for n in held_names}
    train = {n: padded(a, args.patch) for n, a in cases.items() if n not in excluded and len(
        [c for c in CONTRASTS if c in a]) >= 2}
    names = sorted(train)
    log = (args.out / "log.jsonl").open("a")

    def write(record):
        log.write(json.dumps(record) + "\n")
        log.flush()
        print(json.dumps(record), flush=True)

    write({"event": "start", "train": names, "held_out": held_names, **{k: str(v) for k, v in vars(args).items()}})
    baseline = regression_baseline(held_out, args.folds)
    model = network(args.width)
    write({"event": "network", "parameters": sum(p.numel() for p in model.parameters())})

    def batch_loss():
        batch = [sample(train, names, rng, args.patch) for _ in range(args.batch)]
        x, y, w = (torch.from_numpy(np.stack(parts)) for parts in zip(*batch))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            out = model(x)
        return (torch.abs(out.float() - y) * w).sum() / w.sum().clamp_min(1.0)

    train_for_budget(model, batch_loss, lambda: evaluate(model, held_out, baseline), args, write)


def train_for_budget(model, batch_loss: Callable, evaluate_now: Callable[[], list], args, write: Callable) -> int:
    """Train ``model`` on ``batch_loss()`` for ``args.minutes`` of wall clock: AdamW (weight decay 1e-4), ``args.lr``
    with ``args.warmup`` steps of linear warm-up, then a cosine decay over the time budget, gradient clipping 1.
    Logs the mean loss every 50 steps; evaluates (``evaluate_now()`` rows) and writes ``args.out/last.safetensors``
    every ``args.eval_every`` steps and at the end. Returns the number of steps."""
    import torch
    from safetensors.torch import save_file

    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    started, budget, step, running = time.monotonic(), args.minutes * 60, 0, []
    while time.monotonic() - started < budget:
        elapsed = time.monotonic() - started
        warmup = min(1.0, (step + 1) / args.warmup)
        lr = args.lr * warmup * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget)))
        for group in optimiser.param_groups:
            group["lr"] = lr
        loss = batch_loss()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        step += 1
        running.append(float(loss.detach()))
        if step % 50 == 0:
            write({"event": "train", "step": step, "loss": float(np.mean(running)), "lr": lr,
                   "seconds": round(time.monotonic() - started, 1)})
            running = []
        if step % args.eval_every == 0:
            write({"event": "eval", "step": step, "rows": evaluate_now()})
            save_file(dict(model.state_dict()), str(args.out / "last.safetensors"))
    write({"event": "eval", "step": step, "final": True, "rows": evaluate_now()})
    save_file(dict(model.state_dict()), str(args.out / "last.safetensors"))
    return step

if __name__ == "__main__":
    main()
