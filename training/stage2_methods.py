"""``mrsynth-train stage2`` / ``export`` for the generative translator kinds (``method.kind``, one of
:data:`training.translator_kinds.TRAIN_KINDS`): frozen stage 1 → cached latents → the kind's trainer → a
complete bundle.

The fusion kind keeps its own trainer (:mod:`training.stage2`) and exporter (:mod:`training.export`).
"""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path
from typing import Callable

import torch

import MRSynthLib
from training.config import ConfigError, TrainConfig
from training.distributed import DistContext, select_device
from training.runs import RunFolder, git_revision
from training.stage2_latents import encode_cases, frozen_autoencoder, frozen_fusion, paired_cases
from training.translator_kinds import train_kind

def _slots(config: TrainConfig, fusion) -> tuple[str, ...]:
    return fusion.config.contrasts if fusion is not None else config.translator.contrasts


def train_method(config: TrainConfig, run: RunFolder, train, val, resume: bool = False, progress: bool = True,
                 train_fusion: Callable[[], torch.nn.Module] | None = None, ctx: DistContext | None = None) -> dict:
    """Train the kind's networks on frozen latents of ``train``/``val`` (``training.data.Volume`` lists) on
    ``ctx.device`` (``runtime.device`` when no context is given); every rank of a ``torchrun`` job runs this.

    ``train_fusion`` trains the fusion translator in this run when ``ldm`` needs one and has none.
    Returns the best checkpoint (``modules``, ``step``, the selection score, ``extra``).
    """
    from training.stage2_loop import run_training

    kind = config.method.kind
    spec = train_kind(kind)
    ctx = ctx or DistContext(device=select_device(config.runtime.device))
    device = ctx.device
    autoencoder = frozen_autoencoder(config, run).to(device)
    fusion = None
    if spec.uses_fusion:
        fusion = frozen_fusion(config, run, train_fusion or (lambda: _train_fusion(config, run, autoencoder, train, val,
                                                                                    progress, ctx)))
    slots = _slots(config, fusion)
    multiple = autoencoder.config.downsampling * spec.network_multiple(config)
    patch = tuple(config.stage2.patch_size)
    if any(p % multiple for p in patch):
        raise ConfigError(f"stage2.patch_size {list(patch)} must be a multiple of {multiple} (autoencoder downsampling "
                          f"x the {kind} network's own multiple) on every axis")
    latent_cache = (Path(config.data.cache_dir).expanduser() if config.data.cache_dir else run.root / "cache") / "latents"
    train_cases = paired_cases(encode_cases(autoencoder, train, slots, multiple, patch, device, latent_cache), "training")
    val_cases = paired_cases(encode_cases(autoencoder, val, slots, multiple, patch, device, latent_cache), "validation")
    torch.manual_seed(config.seed + 2)  # initial weights and dropout masks
    trainer = spec.trainer_class()(config, autoencoder, fusion if spec.uses_fusion else slots, train_cases, val_cases,
                                   device)
    return run_training(trainer, config.stage2, run, config.method.stage, config.seed + 2, resume, progress,
                        description=f"stage2 {kind}", max_minutes=config.method.max_minutes, ctx=ctx)


def _train_fusion(config: TrainConfig, run: RunFolder, autoencoder, train, val, progress: bool, ctx: DistContext):
    """Train the fusion translator of this run (``stage2``) on the frozen autoencoder, for ``ldm`` to build on."""
    from training.stage2 import train_stage2

    slots = config.translator.contrasts
    paired = [[v for v in volumes if sum(c in v.images for c in slots) >= 2] for volumes in (train, val)]
    return train_stage2(config, run, autoencoder, paired[0], paired[1], resume=False, progress=progress, ctx=ctx)


def _no_fusion(run: RunFolder):
    raise ConfigError(f"{run.root} has no stage2/best.json (the fusion guide of ldm): run `mrsynth-train stage2` first "
                      f"or set method.fusion_from")


def _validation_record(run: RunFolder, stage: str, best_step: int) -> dict:
    """The validation rows of the best checkpoint's step and of the last evaluation (numbers only)."""
    import csv
    import math

    with open(run.root / stage / "validation.csv", newline="") as stream:
        rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(stream)]

    def clean(row: dict) -> dict:
        return {k: (int(v) if k == "step" else v) for k, v in row.items() if not math.isnan(v)}

    best = next((r for r in rows if int(r["step"]) == best_step), rows[-1])
    return {"best": clean(best), "last": clean(rows[-1])}


def export_method(config: TrainConfig, run: RunFolder, output: Path, overwrite: bool = False) -> Path:
    """Write the kind's bundle (safetensors, ONNX graphs, card) from the run's best checkpoint."""
    from MRSynthLib.models.bundle import ModelCard
    from MRSynthLib.errors import MRSynthError
    from training.data import training_data_record
    from training.data_split import recorded_split
    from training.stage2_bundle import write_translator_bundle

    kind, stage = config.method.kind, config.method.stage
    spec = train_kind(kind)
    best = run.load_checkpoint(stage, "best")
    if best is None:
        raise ConfigError(f"{run.root} has no {stage}/best.json: run `mrsynth-train stage2 --config ...` first")
    autoencoder = frozen_autoencoder(config, run)
    fusion = frozen_fusion(config, run, lambda: _no_fusion(run)) if spec.uses_fusion else None
    exported = spec.export(config, autoencoder, fusion if spec.uses_fusion else _slots(config, None), best)
    parts: dict[str, torch.nn.Module] = {"autoencoder": autoencoder, **exported.parts}
    networks: dict = {"autoencoder": autoencoder.config.to_dict(), **exported.networks}
    inputs, outputs = exported.inputs, exported.outputs
    card = ModelCard(
        name=config.name, version=config.version, method=f"{autoencoder.config.latent}-{kind}",
        description=config.description, input_contrasts=inputs, output_contrasts=outputs,
        preprocessing=config.preprocessing, networks=networks, weights={},
        training_data={**training_data_record(config, recorded_split(run.root / "split.json")),
                       "stage1": (f"frozen autoencoder of bundle {config.method.stage1_from}" if config.method.stage1_from
                                  else f"this run's stage 1 ({config.stage1.steps} steps)"),
                       "stage2_steps": config.stage2.steps},
        validation={"protocol": ("held-out volumes, model space, brain mask, normalised units clipped to [0, 1], PSNR "
                                 "with data range 1, whole volumes through the inference driver; "
                                 + ("cyclegan: its source -> target" if kind == "cyclegan" else
                                    "case i synthesizes its i-th contrast from all its others")
                                 + ("; DDIM, eta 0, seed 0" if spec.deterministic_sampler else "")),
                    "translator": _validation_record(run, stage, int(best.get("step", -1)))},
        provenance={"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "trained_by": "mrsynth-train (training/ package of this repository)", "git": git_revision(),
                    "config": config.to_dict(), "mrsynth_version": MRSynthLib.__version__,
                    "torch_version": torch.__version__, "python": platform.python_version(),
                    "stage2_best_step": best.get("step")},
        citation=spec.citation,
        **config.card_licence(),
    )
    if spec.card is not None:
        card = spec.card(card)
    try:
        return write_translator_bundle(Path(output), card, parts, overwrite=overwrite)
    except MRSynthError as error:
        raise SystemExit(f"mrsynth-train: {error}") from None
