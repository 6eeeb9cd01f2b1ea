"""Stage-1 ablation: train autoencoder variants with the same data, seed and step budget, measure their
reconstruction on held-out phantom volumes, and write a Markdown table into a docs file between the
markers ``<!-- ablation:start -->`` and ``<!-- ablation:end -->``.

    python -m training.experiments.ablation --budget-steps 150 --output docs/TRAINING.md

Held-out volumes are phantoms with seeds disjoint from training (those of :mod:`training.bundles.validate`),
brought into model space by the inference preprocessing, encoded and decoded whole, and scored with
:func:`MRSynthLib.quality.metrics.evaluate_volumes` (its default protocol) in the phantom's brain mask and tumour.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

START, END = "<!-- ablation:start -->", "<!-- ablation:end -->"
HELDOUT_SEEDS = (900, 901)
TUMOUR_LABELS = (4, 5, 6)


@dataclass(frozen=True)
class Variant:
    """One ablation arm: overrides of the base config's ``autoencoder`` and ``stage1_loss`` sections."""

    name: str
    description: str
    autoencoder: dict = field(default_factory=dict)
    stage1_loss: dict = field(default_factory=dict)


VARIANTS: tuple[Variant, ...] = (
    Variant("fsq", "FSQ (baseline)"),
    Variant("vq", "VQ, EMA codebook of 512", {"latent": "vq"}),
    Variant("kl", "KL (Gaussian)", {"latent": "kl"}),
    Variant("fsq+lhe", "FSQ + LHE (slice transformer)", {"lhe": {"enabled": True}}),
    Variant("fsq+afl", "FSQ + AFL (weight 1)", stage1_loss={"afl_weight": 1.0}),
    Variant("fsq+wavelet", "FSQ + wavelet residual blocks", {"wavelet": True}),
    Variant("fsq+hfib", "FSQ + HFIB", {"hfib": True}),
)


def variant_config(base, variant: Variant, steps: int):
    """``base`` (a :class:`training.config.TrainConfig`) with the variant's switches and ``steps`` steps,
    validated once at the end."""
    from training.config import config_from_dict

    data = base.to_dict()
    for section in ("autoencoder", "stage1_loss"):
        for key, value in getattr(variant, section).items():
            data[section][key] = {**data[section][key], **value} if isinstance(value, dict) else value
    data["stage1"].update(steps=steps, checkpoint_every=steps, log_every=max(1, steps // 10))
    data["name"] = f"{base.name}-{variant.name.replace('+', '-')}"
    return config_from_dict(data, where=f"ablation variant {variant.name}")


@dataclass
class HeldOut:
    """One held-out case in model space: contrast -> ``(z, y, x)`` arrays, brain mask and tumour mask."""

    seed: int
    arrays: dict[str, np.ndarray]
    brain: np.ndarray
    tumour: np.ndarray


def heldout_cases(config, seeds=HELDOUT_SEEDS) -> list[HeldOut]:
    """Phantoms of the base config's phantom source settings with ``seeds``, in model space."""
    from MRSynthLib.phantom import PhantomConfig, generate_phantom
    from MRSynthLib.preprocessing.preprocess import to_model_space
    from training.inputs.data_cache import labels_to_model_space

    source = next(s for s in config.data.sources if s.kind == "phantom")
    cases = []
    for seed in seeds:
        phantom = generate_phantom(PhantomConfig(size=source.size, spacing=config.preprocessing.spacing, seed=seed,
                                                 tumour=True, ms_lesions=source.ms_lesions,
                                                 field_strength=1.5 if seed % 2 else 3.0))
        space = to_model_space(dict(phantom.images), config.preprocessing)
        labels = labels_to_model_space(space, phantom.labels)
        cases.append(HeldOut(seed, space.arrays, labels > 0, np.isin(labels, TUMOUR_LABELS)))
    return cases


def evaluate(model, cases: list[HeldOut]) -> dict[str, float]:
    """Means over cases and contrasts of brain PSNR / SSIM / MAE and tumour PSNR of ``decode(encode(x))``."""
    import torch

    from MRSynthLib.quality.metrics import evaluate_volumes

    model.eval()
    scores: dict[str, list[float]] = {}
    with torch.no_grad():
        for case in cases:
            for image in case.arrays.values():
                recon = model.decode(model.encode(torch.from_numpy(image)[None, None]))[0, 0].numpy()
                report = evaluate_volumes(image, recon, brain_mask=case.brain, regions={"tumour": case.tumour})
                for key, value in (("brain_psnr", report["brain"]["psnr"]), ("brain_ssim", report["brain"]["ssim"]),
                                   ("brain_mae", report["brain"]["mae"]),
                                   ("tumour_psnr", report["regions"].get("tumour", {}).get("psnr"))):
                    if value is not None:
                        scores.setdefault(key, []).append(float(value))
    result = {key: float(np.mean(values)) for key, values in scores.items()}
    result.update({f"{key}_std": float(np.std(values)) for key, values in scores.items()})
    result["volumes"] = len(scores.get("brain_psnr", []))
    return result


def run_ablation(base, variants: tuple[Variant, ...], steps: int, run_root: Path, progress: bool = False,
                 seeds: tuple[int, ...] = HELDOUT_SEEDS) -> dict:
    """Train and evaluate every variant (run folders ``run_root/<variant>-<steps>steps``); returns a JSON-able
    record, also written to ``run_root/ablation.json``."""
    import torch

    from training.inputs.data import prepare_data
    from training.runtime.runs import RunFolder, git_revision
    from training.autoencoder.stage1 import train_stage1

    if base.threads:
        torch.set_num_threads(base.threads)
    run_root.mkdir(parents=True, exist_ok=True)
    data = prepare_data(base.data, base.preprocessing, base.seed, cache_dir=run_root / "cache")
    cases = heldout_cases(base, seeds)
    rows = []
    for variant in variants:
        config = variant_config(base, variant, steps)
        run = RunFolder(run_root / f"{variant.name.replace('+', '-')}-{steps}steps")
        run.prepare(config)
        start = time.perf_counter()
        model = train_stage1(config, run, data.train, data.val, progress=progress, weights=data.weights)
        seconds = time.perf_counter() - start
        scores = evaluate(model, cases)
        rows.append({"variant": variant.name, "description": variant.description, "latent": config.autoencoder.latent,
                     "parameters": int(sum(p.numel() for p in model.parameters())),
                     "train_seconds": round(seconds, 1), **scores})
        print(json.dumps(rows[-1]), file=sys.stderr)
    from MRSynthLib.quality.metrics import EvaluationProtocol

    record = {
        "command": f"python -m training.experiments.ablation --budget-steps {steps}",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
        "git": git_revision(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU",
        "steps": steps,
        "batch_size": base.stage1.batch_size,
        "patch_size": list(base.stage1.patch_size),
        "seed": base.seed,
        "train_volumes": len(data.train),
        "heldout_seeds": [c.seed for c in cases],
        "protocol": EvaluationProtocol().describe(),
        "rows": rows,
    }
    (run_root / "ablation.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def markdown(record: dict) -> str:
    """The table and the facts needed to read it."""
    patch = "x".join(str(p) for p in record["patch_size"])
    lines = [
        f"Produced by `{record['command']} --output docs/TRAINING.md` on {record['date']} (git {record['git']}; "
        f"{record['machine']}).",
        f"Budget: **{record['steps']} steps** per variant (batch {record['batch_size']} of {patch} patches, "
        f"lr and data of `training/configs/ablation-stage1.yaml`), seed {record['seed']}, the same "
        f"{record['train_volumes']} training phantoms for every variant. Held-out: phantom seeds "
        f"{record['heldout_seeds']} x 5 contrasts, whole volumes through `encode` -> `decode`, mean (std) over "
        "volumes. " + record["protocol"],
        "",
        "`train s`: wall-clock seconds of `train_stage1` (final validation included).",
        "",
        "| variant | parameters | train s | brain PSNR dB | brain SSIM | brain MAE | tumour PSNR dB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        def cell(key, fmt):
            if key not in row:
                return "-"
            return f"{fmt.format(row[key])} ({fmt.format(row[key + '_std'])})"

        lines.append(f"| {row['description']} | {row['parameters']:,} | {row['train_seconds']:.0f} | "
                     f"{cell('brain_psnr', '{:.2f}')} | {cell('brain_ssim', '{:.3f}')} | "
                     f"{cell('brain_mae', '{:.4f}')} | {cell('tumour_psnr', '{:.2f}')} |")
    lines += ["", "A budget this small shows how fast each variant starts to reconstruct, not where it converges; "
              "rerun with a larger `--budget-steps` (on a GPU) before drawing conclusions."]
    return "\n".join(lines)


def write_between_markers(path: Path, text: str) -> None:
    """Replace what lies between the ablation markers of ``path`` (append a section with them if absent)."""
    from MRSynthLib.files.atomic import write_text

    old = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{START}\n{text}\n{END}"
    if START in old and END in old:
        new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, old, count=1, flags=re.S)
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + "## Stage-1 ablation\n\n" + block + "\n"
    write_text(path, new, overwrite=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.experiments.ablation", description=__doc__.splitlines()[0])
    parser.add_argument("--budget-steps", type=int, required=True, help="training steps of every variant")
    parser.add_argument("--output", type=Path, required=True, help="Markdown file to write the table into")
    parser.add_argument("--config", default="ablation-stage1", help="base config (YAML file or built-in name)")
    parser.add_argument("--variants", help=f"comma-separated subset of {', '.join(v.name for v in VARIANTS)}")
    parser.add_argument("--run-root", type=Path, default=Path("runs/ablation"), help="run folders of the variants")
    parser.add_argument("--progress", action="store_true", help="progress bars")
    args = parser.parse_args(argv)
    from training.config import ConfigError, load_config

    chosen = VARIANTS
    if args.variants:
        names = [n.strip() for n in args.variants.split(",")]
        unknown = sorted(set(names) - {v.name for v in VARIANTS})
        if unknown:
            parser.error(f"--variants has unknown names {unknown}: choose from {', '.join(v.name for v in VARIANTS)}")
        chosen = tuple(v for v in VARIANTS if v.name in names)
    if args.budget_steps < 1:
        parser.error("--budget-steps must be at least 1")
    try:
        base = load_config(args.config)
    except ConfigError as error:
        print(f"training.experiments.ablation: {error}", file=sys.stderr)
        return 2
    record = run_ablation(base, chosen, args.budget_steps, args.run_root, progress=args.progress)
    write_between_markers(args.output, markdown(record))
    print(f"ablation table written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
