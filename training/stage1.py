"""Stage 1: train the autoencoder shared by all contrasts (FSQ, VQ or KL latent) on random 3D patches."""

from __future__ import annotations

import numpy as np
import torch

from MRSynthLib.metrics import psnr
from MRSynthLib.networks.autoencoder import LatentAutoencoder
from training.config import TrainConfig
from training.data import Volume, random_patch_slices
from training.objective import Stage1Objective, measure_latent_scale
from training.runs import RunFolder, Timer

STAGE = "stage1"


def sample_batch(volumes: list[Volume], config: TrainConfig, rng: np.random.Generator) -> torch.Tensor:
    """``(B, 1, *patch)`` random single-contrast patches."""
    optim = config.stage1
    patches = []
    for _ in range(optim.batch_size):
        volume = volumes[int(rng.integers(0, len(volumes)))]
        contrast = list(volume.images)[int(rng.integers(0, len(volume.images)))]
        image = volume.images[contrast]
        window = random_patch_slices(image.shape, optim.patch_size, rng, config.autoencoder.downsampling, volume.foreground)
        patch = image[window]
        if rng.random() < 0.5:
            patch = patch[..., ::-1]
        patches.append(np.ascontiguousarray(patch))
    shape = np.max([p.shape for p in patches], axis=0)
    batch = np.zeros((len(patches), 1, *shape), dtype=np.float32)
    for i, p in enumerate(patches):
        batch[i, 0, : p.shape[0], : p.shape[1], : p.shape[2]] = p
    return torch.from_numpy(batch)


@torch.no_grad()
def validate(model: LatentAutoencoder, volumes: list[Volume]) -> dict[str, float]:
    """Mean whole-volume reconstruction PSNR (brain mask, data range 1) over contrasts and cases."""
    model.eval()
    scores = []
    for volume in volumes:
        for image in volume.images.values():
            x = torch.from_numpy(image)[None, None]
            recon = model(x)[0][0, 0].numpy()
            scores.append(psnr(np.clip(image, 0, 1), np.clip(recon, 0, 1), mask=volume.mask, data_range=1.0))
    model.train()
    return {"val_psnr": float(np.mean(scores))}


def train_stage1(config: TrainConfig, run: RunFolder, train: list[Volume], val: list[Volume],
                 resume: bool = False, progress: bool = True) -> LatentAutoencoder:
    """Train (or resume) the autoencoder; returns the best-validation model (weights also in the run folder)."""
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = LatentAutoencoder(config.autoencoder)
    objective = Stage1Objective(config)  # stops with a clear message when SRB is on but its teacher is missing
    parameters = list(model.parameters()) + objective.generator_parameters()
    optimizer = torch.optim.AdamW(parameters, lr=config.stage1.lr, weight_decay=config.stage1.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.stage1.steps, 1))
    start, best = 0, -np.inf
    state = run.load_checkpoint(STAGE) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, best = int(state["step"]), float(state["best"])
        rng = np.random.default_rng([config.seed, start])
        objective.load_state_dict(run.load_checkpoint(STAGE, "objective") or {})
    timer = Timer()
    bar = tqdm(range(start, config.stage1.steps), desc="stage1 autoencoder", disable=not progress, initial=start,
               total=config.stage1.steps)
    for step in bar:
        batch = sample_batch(train, config, rng)
        loss, terms, output = objective(model, batch, step)
        recon = output.reconstruction
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        terms.update(objective.discriminator_step(batch, recon, step))
        done = step + 1
        if done % config.stage1.log_every == 0 or done == config.stage1.steps:
            row = {"step": done, "loss": loss.item(), **terms, "lr": schedule.get_last_lr()[0], "seconds": timer.elapsed()}
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            if done % config.stage1.checkpoint_every == 0 or done == config.stage1.steps:
                best = run.checkpoint(STAGE, done, validate(model, val), best, model, optimizer, schedule, (batch, recon))
                if objective.state_dict():
                    run.save_checkpoint(STAGE, "objective", objective.state_dict())
            run.log(STAGE, row)
    model = run.load_best(STAGE, model)
    if config.autoencoder.latent == "kl":
        record_kl_scale(model, train, run)
    return model


def record_kl_scale(model: LatentAutoencoder, train: list[Volume], run: RunFolder, max_volumes: int = 4) -> float:
    """Measure the KL latent's scale factor on whole training volumes, set it in ``model`` and in ``best.ckpt``."""
    images = [torch.from_numpy(image)[None, None] for volume in train[:max_volumes] for image in volume.images.values()]
    scale = measure_latent_scale(model, images)
    model.bottleneck.set_scale_factor(scale)
    state = run.load_checkpoint(STAGE, "best") or {"step": None}
    run.save_checkpoint(STAGE, "best", {**state, "model": model.state_dict(), "kl_scale_factor": scale})
    return scale
