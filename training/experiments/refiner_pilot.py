"""Pilot: a 3D U-Net that refines the regression default's output (a residual on top of it), on held-out real cases.

The per-voxel regression is the best model on real scans but smooth (flair sharpness 0.69-0.70). This pilot asks
whether a network that starts exactly at the regression's output (zero-initialised residual) and sees the inputs at
full model-space resolution learns the detail the trees miss, without losing their accuracy.

Training pairs: each case's out-of-fold regression prediction (by the leave-one-case-out fold bundle that never saw
the case, ``runs/real-eval-1p5mm/folds/<case>``) with the inputs and the real target, in the 1.5 mm model space of
the evaluation's preprocessing cache. The held-out cases are never trained on (their own fold bundles never saw
them either); the fold bundles of the training cases did see the held-out cases as regression training data (a
second-order leak of stacking without nested folds, noted with the results).

    python -m training.experiments.refiner_pilot --minutes 45 --out runs/refiner-pilot
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.experiments.image_unet_pilot import CONTRASTS, fold_prediction, load_cases, train_for_budget

TASKS = (("t1ce", ("t1", "t2", "flair")), ("flair", ("t1", "t2")), ("t2", ("t1",)))
CHANNELS = 1 + 2 * len(CONTRASTS) + len(CONTRASTS)  # regression output, inputs, availability, target code


def oof_predictions(cases: dict, folds: Path, cache: Path) -> dict:
    """(case, target) -> out-of-fold regression prediction ``(z, y, x)`` for every task the case has (cached)."""
    out = {}
    for name, arrays in cases.items():
        if not (folds / name).exists():
            continue
        for target, inputs in TASKS:
            if target not in arrays or not all(c in arrays for c in inputs):
                continue
            path = cache / name / f"{target}.npy"
            if not path.exists():
                prediction = fold_prediction(folds, name, arrays, inputs, target)
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, prediction.astype(np.float32))
            out[name, target] = np.load(path)
    return out


def refiner_input(arrays, prediction, inputs, target, slices) -> np.ndarray:
    """``(CHANNELS, *patch)``: the regression output, the given inputs (zeros elsewhere), their flags, the target code."""
    shape = arrays["mask"][slices].shape
    x = np.zeros((CHANNELS, *shape), dtype=np.float32)
    x[0] = prediction[slices]
    for i, contrast in enumerate(CONTRASTS):
        if contrast in inputs:
            x[1 + i] = arrays[contrast][slices]
            x[1 + len(CONTRASTS) + i] = 1.0
    x[1 + 2 * len(CONTRASTS) + CONTRASTS.index(target)] = 1.0
    return x


def network(width: int):
    from monai.networks.nets import BasicUNet
    import torch

    net = BasicUNet(spatial_dims=3, in_channels=CHANNELS, out_channels=1,
                    features=(width, width, 2 * width, 4 * width, 8 * width, width), norm=None, upsample="nontrainable")
    torch.nn.init.zeros_(net.final_conv.weight)
    torch.nn.init.zeros_(net.final_conv.bias)
    return net


def refine_whole(model, arrays, prediction, inputs, target, multiple: int = 16) -> np.ndarray:
    import torch

    shape = arrays["mask"].shape
    full = tuple(slice(0, s) for s in shape)
    x = refiner_input(arrays, prediction, inputs, target, full)
    x = np.pad(x, [(0, 0), *[(0, (-s) % multiple) for s in shape]])
    with torch.no_grad():
        residual = model(torch.from_numpy(x)[None]).float()[0, 0].numpy()
    return (prediction + residual[full]) * arrays["mask"]


def evaluate(model, held_out, predictions) -> list[dict]:
    from MRSynthLib.quality.metrics import evaluate_volumes, sharpness_ratio

    rows = []
    model.eval()
    for name, arrays in held_out.items():
        for target, inputs in TASKS:
            if (name, target) not in predictions:
                continue
            base = predictions[name, target]
            for label, image in (("regression", base), ("refined", refine_whole(model, arrays, base, inputs, target))):
                scores = evaluate_volumes(arrays[target], image, arrays["mask"])["brain"]
                rows.append({"case": name, "target": target, "model": label, "psnr": scores["psnr"],
                             "ssim": scores["ssim"], "sharpness": sharpness_ratio(arrays[target], image, arrays["mask"])})
    model.train()
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("runs/real-eval-1p5mm/cache/96eed81ae7d4/real"))
    parser.add_argument("--folds", type=Path, default=Path("runs/real-eval-1p5mm/folds"))
    parser.add_argument("--held-out", default="ms-ljubljana-p26,tcga-fg-6692")
    parser.add_argument("--minutes", type=float, default=45.0)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=400)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/refiner-pilot"))
    args = parser.parse_args(argv)

    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "log.jsonl").open("a")

    def write(record):
        log.write(json.dumps(record) + "\n")
        log.flush()
        print(json.dumps(record), flush=True)

    cases = load_cases(args.cache)
    predictions = oof_predictions(cases, args.folds, args.out / "oof")
    held_names = [c for c in args.held_out.split(",") if c]
    held_out = {n: cases[n] for n in held_names}
    pairs = [(name, target, inputs) for (name, target) in sorted(predictions) if name not in held_names
             for t, inputs in TASKS if t == target]
    write({"event": "start", "pairs": [f"{n}:{t}" for n, t, _ in pairs], "held_out": held_names,
           **{k: str(v) for k, v in vars(args).items()}})
    model = network(args.width)
    write({"event": "eval", "step": 0, "rows": evaluate(model, held_out, predictions)})
    p = args.patch

    def batch_loss():
        xs, ys, ws = [], [], []
        for _ in range(args.batch):
            name, target, inputs = pairs[rng.integers(len(pairs))]
            arrays, prediction = cases[name], predictions[name, target]
            fg = np.argwhere(arrays["mask"])
            centre = fg[rng.integers(len(fg))]
            start = [int(np.clip(c - p // 2, 0, max(0, s - p))) for c, s in zip(centre, arrays["mask"].shape)]
            slices = tuple(slice(s, s + p) for s in start)
            x = refiner_input(arrays, prediction, inputs, target, slices)
            y, w = arrays[target][slices][None], arrays["mask"][slices][None].astype(np.float32)
            pads = [(0, 0)] + [(0, p - s) for s in y.shape[1:]]
            x, y, w = (np.pad(a, pads) for a in (x, y, w))
            for axis in (1, 2, 3):
                if rng.random() < 0.5:
                    x, y, w = (np.flip(a, axis) for a in (x, y, w))
            xs.append(np.ascontiguousarray(x)); ys.append(np.ascontiguousarray(y)); ws.append(np.ascontiguousarray(w))
        x, y, w = (torch.from_numpy(np.stack(a)) for a in (xs, ys, ws))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            residual = model(x)
        return (torch.abs(x[:, :1] + residual.float() - y) * w).sum() / w.sum().clamp_min(1.0)

    train_for_budget(model, batch_loss, lambda: evaluate(model, held_out, predictions), args, write)

if __name__ == "__main__":
    main()
