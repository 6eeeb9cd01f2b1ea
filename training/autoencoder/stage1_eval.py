"""Reconstruction of held-out real volumes by a stage-1 autoencoder: ``python -m training.autoencoder.stage1_eval``.

Every validation and test case of the run's split (never trained on) is preprocessed into model space
(:class:`training.inputs.data_cache.PreprocessCache`), encoded and decoded whole, and scored against its own
model-space image with the project protocol (:func:`MRSynthLib.quality.metrics.evaluate_volumes`: each volume
scaled by its own 0.5-99.5th brain percentiles, brain = the case's foreground mask), plus the sharpness
ratio (:func:`MRSynthLib.quality.metrics.sharpness_ratio`). One row per volume, then means per contrast.

    python -m training.autoencoder.stage1_eval --config real-stage1-2x --run-dir runs/real-stage1-2x --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from MRSynthLib.quality.metrics import evaluate_volumes, sharpness_ratio
from MRSynthLib.networks.autoencoder import LatentAutoencoder
from training.runtime.acceleration import autocast
from training.config import TrainConfig, load_config
from training.inputs.data import list_cases
from training.inputs.data_cache import PreprocessCache
from training.inputs.data_split import recorded_split
from training.runtime.runs import RunFolder


@torch.no_grad()
def reconstruct(model: LatentAutoencoder, image: np.ndarray, bf16: bool = False) -> np.ndarray:
    """``(z, y, x)`` model-space image (axes multiples of the downsampling) → its reconstruction, float32."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    with autocast(bf16, torch.device("cpu")):
        out = model(x).reconstruction
    return out[0, 0].float().numpy()


def heldout_rows(config: TrainConfig, run: RunFolder, model: LatentAutoencoder, bf16: bool = False,
                 splits: tuple[str, ...] = ("val", "test")) -> list[dict]:
    """Score every volume of the run's ``splits`` cases; rows ``{case, contrast, split, psnr, ssim, sharpness}``."""
    split = recorded_split(run.root / "split.json")
    if split is None:
        raise SystemExit(f"{run.root} has no split.json: train stage 1 in that run folder first.")
    cache = PreprocessCache(Path(config.data.cache_dir) if config.data.cache_dir else run.root / "cache",
                            config.preprocessing)
    sources = {s.label: s for s in config.data.sources}
    rows = []
    for case in list_cases(config.data, config.seed, config.preprocessing.spacing):
        where = split.of(case.case_id)
        if where not in splits or case.phantom is not None:
            continue
        register = sources[case.source].register
        arrays = cache.load(case) if cache.is_fresh(case, register) else cache.build(case, register)
        for contrast in case.contrasts:
            image = np.asarray(arrays[contrast], dtype=np.float32)
            started = time.perf_counter()
            recon = reconstruct(model, image, bf16)
            scores = evaluate_volumes(image, recon, brain_mask=arrays["mask"])
            rows.append({"case": case.case_id, "contrast": contrast, "split": where,
                         "psnr": scores["brain"]["psnr"], "ssim": scores["brain"]["ssim"],
                         "sharpness": sharpness_ratio(image, recon, arrays["mask"]),
                         "shape": list(image.shape), "seconds": round(time.perf_counter() - started, 2)})
    return rows


def per_contrast(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean PSNR, SSIM and sharpness per contrast (and ``all``)."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["contrast"], []).append(row)
        groups.setdefault("all", []).append(row)
    return {c: {k: float(np.mean([r[k] for r in g])) for k in ("psnr", "ssim", "sharpness")} | {"volumes": len(g)}
            for c, g in groups.items()}


def load_autoencoder(config: TrainConfig, run: RunFolder, checkpoint: str = "best") -> tuple[LatentAutoencoder, int]:
    """The run's stage-1 autoencoder from ``checkpoint`` (eval mode) and the step it was saved at."""
    state = run.load_checkpoint("stage1", checkpoint)
    if state is None:
        raise SystemExit(f"{run.root} has no stage1/{checkpoint}.json: train stage 1 first.")
    model = LatentAutoencoder(config.autoencoder)
    model.load_state_dict(state["model"])
    return model.eval(), int(state.get("step") or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.autoencoder.stage1_eval", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="the run's YAML file or built-in config name")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--checkpoint", default="best", help="best | last (default best)")
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16 on the CPU (as in training)")
    parser.add_argument("--json", type=Path, help="write rows and means here")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    run = RunFolder(args.run_dir)
    model, step = load_autoencoder(config, run, args.checkpoint)
    rows = heldout_rows(config, run, model, args.bf16)
    if not rows:
        print("stage1_eval: the run's split holds no real validation or test volume", file=sys.stderr)
        return 2
    means = per_contrast(rows)
    for row in rows:
        print(f"{row['split']:4s} {row['case']:45s} {row['contrast']:6s} PSNR {row['psnr']:6.2f}  "
              f"SSIM {row['ssim']:.3f}  sharpness {row['sharpness']:.2f}")
    for contrast, mean in means.items():
        print(f"mean {contrast:6s} PSNR {mean['psnr']:6.2f}  SSIM {mean['ssim']:.3f}  sharpness {mean['sharpness']:.2f}"
              f"  ({mean['volumes']} volumes)")
    if args.json:
        record = {"config": config.name, "run": str(run.root), "checkpoint": args.checkpoint,
                  "step": step, "rows": rows, "means": means}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
