"""Peak tensor memory of one stage-1 training step, measured on the CPU and extrapolated to larger patches.

``python -m benchmarks.training_memory --config brats-fsq [--sizes 24 32 40 48] [--output FILE.json]``

What is measured: one steady-state training step (forward, loss, backward, AdamW step; the optimiser
state already exists) of the config's stage-1 network and objective on random ``B x 1 x S^3`` patches,
under PyTorch's ``MemTracker`` (``torch.distributed._tools.mem_tracker``, PyTorch >= 2.5). It follows
every tensor storage the step creates or holds (parameters, gradients, optimiser state, activations
saved for backward, temporaries) and reports the peak of their sum. Storages allocated inside an
operator and never returned (the CPU convolution's im2col buffers, cuDNN workspaces on a GPU) are not
tensors and are not counted, so the number is the device-independent part: what a GPU's
``torch.cuda.max_memory_allocated`` would show minus convolution workspaces. Modes: float32, bf16
autocast (the CPU autocast op lists cast convolutions like CUDA's) and float32 with gradient
checkpointing, and both together.

Extrapolation: in a convolutional network every activation scales with the number of voxels in the
batch, so the peak is fitted as ``static + per_voxel * B * S^3`` (least squares over the measured sizes;
the largest relative residual is reported) and evaluated at the sizes of interest. It is an ESTIMATE for
a GPU: cuDNN workspaces, the caching allocator's slack and the CUDA context come on top.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time

import numpy as np
import torch

MODES = ("float32", "bf16-autocast", "float32+checkpointing", "bf16+checkpointing")


def measure_step(config, size: int, batch: int, mode: str, seed: int = 0) -> dict:
    """Peak tensor bytes (total and per category) of one steady-state stage-1 training step on ``batch``
    patches of ``size^3`` voxels."""
    from torch.distributed._tools.mem_tracker import MemTracker

    from MRSynthLib.networks.autoencoder import LatentAutoencoder
    from training.runtime.acceleration import enable_gradient_checkpointing
    from training.autoencoder.objective import Stage1Objective

    torch.manual_seed(seed)
    model = LatentAutoencoder(config.autoencoder)
    objective = Stage1Objective(config)
    if mode.endswith("+checkpointing"):
        enable_gradient_checkpointing(model)
    optimizer = torch.optim.AdamW(list(model.parameters()) + objective.generator_parameters(), lr=1e-4)
    use_bf16 = mode.startswith("bf16")

    def step(images: torch.Tensor) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            loss, _, output = objective(model, images, 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        del loss, output

    shape = (batch, 1, size, size, size)
    step(torch.rand(shape))  # warm-up: creates the optimiser state
    tracker = MemTracker()
    tracker.track_external(model, optimizer)
    started = time.perf_counter()
    with tracker:
        step(torch.rand(shape))
    seconds = time.perf_counter() - started
    (peak,) = tracker.get_tracker_snapshot("peak").values()
    categories = {str(k).rsplit(".", 1)[-1].lower(): int(v) for k, v in peak.items() if str(k) != "Total"}
    return {"size": size, "batch": batch, "mode": mode, "voxels": batch * size**3, "peak_bytes": int(peak["Total"]),
            "at_peak": categories, "seconds": round(seconds, 2)}


def fit(rows: list[dict]) -> dict:
    """``peak_bytes = static + per_voxel * voxels`` by least squares; the largest relative residual."""
    voxels = np.array([r["voxels"] for r in rows], dtype=float)
    peaks = np.array([r["peak_bytes"] for r in rows], dtype=float)
    design = np.stack([np.ones_like(voxels), voxels], axis=1)
    (static, per_voxel), *_ = np.linalg.lstsq(design, peaks, rcond=None)
    residual = np.max(np.abs(design @ [static, per_voxel] - peaks) / peaks)
    return {"static_bytes": float(static), "bytes_per_voxel": float(per_voxel), "max_relative_residual": float(residual)}


def estimate(model: dict, size: tuple[int, int, int], batch: int) -> float:
    """Estimated peak bytes at a patch ``size`` and ``batch`` from a :func:`fit` result."""
    return model["static_bytes"] + model["bytes_per_voxel"] * batch * float(np.prod(size))


def main(argv: list[str] | None = None) -> int:
    from training.config import load_config

    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="brats-fsq", help="training config (name or YAML file)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[24, 32, 40, 48], help="cubic patch edges to measure")
    parser.add_argument("--batch-check", type=int, default=32, help="edge measured again at batch 2 (0: skip)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--lhe", action="store_true", help="measure with RSF's LHE branch switched on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", help="write the measurements, fits and estimates as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    if args.lhe:
        ae = config.autoencoder
        config = dataclasses.replace(config, autoencoder=dataclasses.replace(ae, lhe=dataclasses.replace(ae.lhe, enabled=True)))
    multiple = config.autoencoder.downsampling
    if any(s % multiple for s in args.sizes):
        parser.error(f"--sizes must be multiples of the network's downsampling ({multiple})")
    rows, fits = [], {}
    for mode in args.modes:
        points = [(s, 1) for s in args.sizes] + ([(args.batch_check, 2)] if args.batch_check else [])
        measured = []
        for size, batch in points:
            row = measure_step(config, size, batch, mode)
            measured.append(row)
            print(f"{mode:22s} {batch} x {size}^3: peak {row['peak_bytes'] / 2**20:8.1f} MiB "
                  f"({', '.join(f'{k} {v / 2**20:.1f}' for k, v in row['at_peak'].items() if v)}; {row['seconds']} s)",
                  file=sys.stderr)
        rows += measured
        fits[mode] = fit(measured)
    patch, batch = config.stage1.patch_size, config.stage1.batch_size
    targets = sorted({(tuple(patch), batch), (tuple(patch), 1), ((96, 96, 96), 2), ((160, 192, 160), 1)})
    estimates = [{"patch": list(p), "batch": b, **{m: estimate(fits[m], p, b) for m in fits}} for p, b in targets]
    result = {
        "config": config.name, "lhe": config.autoencoder.lhe.enabled, "autoencoder": config.autoencoder.to_dict(),
        "stage1_loss": dataclasses.asdict(config.stage1_loss), "ssim_weight": config.stage1.ssim_weight,
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "measurements": rows, "fits": fits, "estimates": estimates,
    }
    print("| patch | batch | " + " | ".join(f"{m} (GiB)" for m in fits) + " |")
    print("|---|---|" + "---|" * len(fits))
    for e in estimates:
        print(f"| {'x'.join(map(str, e['patch']))} | {e['batch']} | "
              + " | ".join(f"{e[m] / 2**30:.1f}" for m in fits) + " |")
    for mode, f in fits.items():
        print(f"{mode}: {f['bytes_per_voxel']:.0f} bytes per batch voxel + {f['static_bytes'] / 2**20:.0f} MiB, "
              f"largest relative fit residual {f['max_relative_residual']:.1%}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as stream:
            json.dump(result, stream, indent=1)
            stream.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
