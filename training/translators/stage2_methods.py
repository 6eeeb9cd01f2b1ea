"""``mrsynth-train stage2`` for the generative translator kinds (``method.kind``, one of
:data:`training.kinds.TRAIN_KINDS`): frozen stage 1 → cached latents → the kind's trainer
(export: :mod:`training.bundles.kind_export`).

The fusion kind keeps its own trainer (:mod:`training.translators.stage2`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from training.config import ConfigError, TrainConfig
from training.runtime.distributed import DistContext, select_device
from training.runtime.runs import RunFolder
from training.translators.stage2_latents import encode_cases, frozen_autoencoder, frozen_fusion, paired_cases
from training.kinds import train_kind

def kind_slots(config: TrainConfig, fusion) -> tuple[str, ...]:
    return fusion.config.contrasts if fusion is not None else config.translator.contrasts


def train_method(config: TrainConfig, run: RunFolder, train, val, resume: bool = False, progress: bool = True,
                 train_fusion: Callable[[], torch.nn.Module] | None = None, ctx: DistContext | None = None) -> dict:
    """Train the kind's networks on frozen latents of ``train``/``val`` (``training.inputs.data.Volume`` lists) on
    ``ctx.device`` (``runtime.device`` when no context is given); every rank of a ``torchrun`` job runs this.

    ``train_fusion`` trains the fusion translator in this run when ``ldm`` needs one and has none.
    Returns the best checkpoint (``modules``, ``step``, the selection score, ``extra``).
    """
    from training.translators.stage2_loop import run_training

    kind = config.method.kind
    spec = train_kind(kind)
    ctx = ctx or DistContext(device=select_device(config.runtime.device))
    device = ctx.device
    autoencoder = frozen_autoencoder(config, run).to(device)
    fusion = None
    if spec.uses_fusion:
        fusion = frozen_fusion(config, run, train_fusion or (lambda: _train_fusion(config, run, autoencoder, train, val,
                                                                                    progress, ctx)))
    slots = kind_slots(config, fusion)
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
    from training.translators.stage2 import paired_volumes, train_stage2

    return train_stage2(config, run, autoencoder, paired_volumes(config, train), paired_volumes(config, val),
                        resume=False, progress=progress, ctx=ctx)
