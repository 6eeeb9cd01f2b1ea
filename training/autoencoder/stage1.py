"""Stage 1: train the autoencoder shared by all contrasts (FSQ, VQ or KL latent) on random 3D patches.

Single process or ``torchrun`` data-parallel (:mod:`training.runtime.distributed`); bf16 autocast and gradient
checkpointing on CUDA when the config's ``runtime`` asks for them (:mod:`training.runtime.acceleration`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from MRSynthLib.quality.metrics import psnr
from MRSynthLib.networks.autoencoder import AutoencoderConfig, LatentAutoencoder
from training.runtime.acceleration import autocast, bf16_enabled, enable_gradient_checkpointing
from training.inputs.augment import PatchAugmenter
from training.config import TrainConfig
from training.inputs.data import Volume, training_contrasts
from training.inputs.data_patches import PatchSampler, batch_stream
from training.runtime.distributed import DistContext, barrier, wrap_model
from training.runtime.loop import check_replicas, is_log_step, mean_terms, progress_steps, restore
from training.autoencoder.objective import Stage1Objective, measure_latent_scale
from training.runtime.runs import RunFolder, Timer

STAGE = "stage1"


def patch_sampler(config: TrainConfig, train: list[Volume], weights: np.ndarray | None, rank: int) -> PatchSampler:
    """Single-contrast training patches (``(B, 1, *patch)``), augmented, seeded per step and rank."""
    return PatchSampler(
        train, weights, patch_size=config.stage1.patch_size, batch_size=config.stage1.batch_size,
        slots=training_contrasts(train), seed=config.seed, rank=rank, multiple=config.autoencoder.downsampling,
        foreground_probability=config.data.foreground_probability,
        augmenter=PatchAugmenter(config.augmentation, config.preprocessing.normalization.clip),
    )


@torch.no_grad()
def validate(model: LatentAutoencoder, volumes: list[Volume], device: torch.device = torch.device("cpu"),
             bf16: bool = False) -> dict[str, float]:
    """Mean whole-volume reconstruction PSNR (brain mask, data range 1) over contrasts and cases."""
    model.eval()
    scores = []
    for volume in volumes:
        for image in volume.images.values():
            x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(device)
            with autocast(bf16, device):
                recon = model(x)[0]
            recon = recon[0, 0].float().cpu().numpy()
            scores.append(psnr(np.clip(image, 0, 1), np.clip(recon, 0, 1), mask=volume.mask, data_range=1.0))
    model.train()
    return {"val_psnr": float(np.mean(scores))}


def train_stage1(config: TrainConfig, run: RunFolder, train: list[Volume], val: list[Volume],
                 resume: bool = False, progress: bool = True, *, ctx: DistContext | None = None,
                 weights: np.ndarray | None = None) -> LatentAutoencoder:
    """Train (or resume) the autoencoder; returns the best-validation model on the CPU (weights also in
    the run folder).

    Every rank of ``ctx`` runs this; rank 0 alone validates, logs and writes checkpoints. ``weights``:
    per-volume sampling probabilities (source mixture), uniform when None.
    """
    ctx = ctx or DistContext()
    device, runtime, steps = ctx.device, config.runtime, config.stage1.steps
    bf16 = bf16_enabled(runtime.bf16, device, runtime.cpu_bf16)
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    memory_format = torch.channels_last_3d if runtime.channels_last else torch.contiguous_format
    model = LatentAutoencoder(config.autoencoder).to(device, memory_format=memory_format)
    objective = Stage1Objective(config).to(device)  # stops with a clear message when SRB is on but its teacher is missing
    if runtime.gradient_checkpointing and device.type == "cuda":
        enable_gradient_checkpointing(model)
    parameters = list(model.parameters()) + objective.generator_parameters()
    optimizer = torch.optim.AdamW(parameters, lr=config.stage1.lr, weight_decay=config.stage1.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    start, best = restore(run, STAGE, model, optimizer, schedule, resume)
    if start:
        objective.load_state_dict(run.load_checkpoint(STAGE, "objective") or {})
    torch.manual_seed(config.seed * 1000 + 7919 * ctx.rank + start)  # stochastic layers differ per rank and step
    net = wrap_model(model, ctx, runtime.find_unused_parameters)
    if ctx.distributed:
        if objective.srb is not None:
            objective.srb.projector = wrap_model(objective.srb.projector, ctx, runtime.find_unused_parameters)
        if objective.adversary is not None:
            objective.adversary.discriminator = wrap_model(objective.adversary.discriminator, ctx)
    batches = batch_stream(patch_sampler(config, train, weights, ctx.rank), start, steps, runtime.workers,
                           pin_memory=device.type == "cuda")
    timer = Timer()
    bar = progress_steps(ctx, start, steps, "stage1 autoencoder", progress)
    for step, batch in zip(bar, batches):
        images = batch["image"].to(device, non_blocking=True, memory_format=memory_format)
        with autocast(bf16, device):
            loss, terms, output = objective(net, images, step)
        recon = output.reconstruction
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"stage 1 loss is {loss.item()} at step {step + 1}: lower stage1.lr, set stage1.grad_clip (e.g. 1.0), "
                f"or resume from the last checkpoint with --resume")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.stage1.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(parameters, config.stage1.grad_clip)
        optimizer.step()
        schedule.step()
        with autocast(bf16, device):
            terms.update(objective.discriminator_step(images, recon, step))
        done = step + 1
        if is_log_step(done, config.stage1.log_every, steps):
            row = {"step": done, **mean_terms(ctx, {"loss": loss.item(), **terms}), "lr": schedule.get_last_lr()[0],
                   "seconds": timer.elapsed()}
            if ctx.is_main:
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                if is_log_step(done, config.stage1.checkpoint_every, steps):
                    preview = (images.float().cpu(), recon.detach().float().cpu())
                    best = run.checkpoint(STAGE, done, validate(model, val, device, bf16), best, model, optimizer,
                                          schedule, preview)
                    if objective.state_dict():
                        run.save_checkpoint(STAGE, "objective", objective.state_dict())
                run.log(STAGE, row)
    trained = {"autoencoder": model}
    if objective.srb is not None:
        trained["srb_projector"] = objective.srb.projector
    if objective.adversary is not None:
        trained["discriminator"] = objective.adversary.discriminator
    check_replicas(ctx, run, STAGE, trained, steps)
    model = model.cpu()
    barrier(ctx)
    model = run.load_best(STAGE, model)
    if config.autoencoder.latent == "kl":
        if ctx.is_main:
            record_kl_scale(model, train, run)
        barrier(ctx)
        model = run.load_best(STAGE, model)
    return model


def record_kl_scale(model: LatentAutoencoder, train: list[Volume], run: RunFolder, max_volumes: int = 4) -> float:
    """Measure the KL latent's scale factor on whole training volumes, set it in ``model`` and in ``best.json``."""
    images = [torch.from_numpy(image)[None, None] for volume in train[:max_volumes] for image in volume.images.values()]
    scale = measure_latent_scale(model, images)
    model.bottleneck.set_scale_factor(scale)
    state = run.load_checkpoint(STAGE, "best") or {"step": None}
    run.save_checkpoint(STAGE, "best", {**state, "model": model.state_dict(), "kl_scale_factor": scale})
    return scale


def exported_autoencoder_config(config: AutoencoderConfig, state: dict) -> AutoencoderConfig:
    """``config`` with the KL scale factor measured in training (the ``bottleneck.scale_factor`` weight)."""
    if config.latent != "kl":
        return config
    scale = float(state["bottleneck.scale_factor"])
    return dataclasses.replace(config, kl=dataclasses.replace(config.kl, scale_factor=scale))
