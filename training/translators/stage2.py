"""Stage 2: train the any-subset fusion translator on frozen stage-1 latents.

Latents of every training volume are encoded once and cached; each step draws a random target
contrast and a random non-empty subset of the other contrasts as inputs (random input dropout),
so one model serves every subset.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from MRSynthLib.quality.metrics import psnr
from MRSynthLib.networks.autoencoder import FSQAutoencoder
from MRSynthLib.networks.fusion import FusionTranslator, pad_to_multiple
from MRSynthLib.networks.precision import full_precision
from training.runtime.acceleration import autocast, bf16_enabled
from training.inputs.augment import PatchAugmenter
from training.config import AugmentationConfig, ConfigError, TrainConfig
from training.inputs.data import Volume, random_patch_slices
from training.runtime.distributed import DistContext, barrier, data_parallel, rank_seed, select_device
from training.runtime.loop import check_replicas, is_log_step, mean_terms, progress_steps
from training.autoencoder.losses import ImageLoss
from training.runtime.placement import to_device
from training.runtime.runs import RunFolder, Timer

STAGE = "stage2"


def _encode(autoencoder: FSQAutoencoder, image: np.ndarray) -> torch.Tensor:
    """``(L, *s)`` codes of one ``(z, y, x)`` image, computed on the autoencoder's device, kept on the CPU."""
    parameter = next(iter(getattr(autoencoder, "parameters", lambda: [])()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    return autoencoder.encode(torch.from_numpy(np.ascontiguousarray(image))[None, None].to(device))[0].cpu()


@torch.no_grad()
def encode_volumes(autoencoder: FSQAutoencoder, volumes: list[Volume], slots: tuple[str, ...]) -> list[torch.Tensor]:
    """Per volume: ``(M, L, *s)`` codes for every slot (zeros where the volume lacks the contrast), on the CPU."""
    cached = []
    for volume in volumes:
        codes = []
        for name in slots:
            if name in volume.images:
                codes.append(_encode(autoencoder, volume.images[name]))
            else:
                codes.append(None)
        template = next(c for c in codes if c is not None)
        cached.append(torch.stack([c if c is not None else torch.zeros_like(template) for c in codes]))
    return cached


@torch.no_grad()
def encode_noise(autoencoder: FSQAutoencoder, volumes: list[Volume], seed: int) -> list[torch.Tensor]:
    """Per volume: ``(L, *s)`` codes of a corrupted input — uniform noise inside the head, of the volume's shape.

    Used to replace one input now and then (``corrupt_probability``), so the gates learn to give a
    broken or unrelated input little weight (the contribution maps then flag it)."""
    rng = np.random.default_rng(seed)
    cached = []
    for volume in volumes:
        noise = (rng.random(volume.mask.shape, dtype=np.float32) * volume.mask).astype(np.float32)
        cached.append(_encode(autoencoder, noise))
    return cached


@torch.no_grad()
def encode_augmented(autoencoder: FSQAutoencoder, volumes: list[Volume], slots: tuple[str, ...],
                     augmentation: AugmentationConfig, copies: int, seed: int, clip: tuple[float, float] = (0.0, 1.5),
                     progress: bool = False) -> list[list[torch.Tensor]]:
    """Per volume: ``copies`` float16 ``(M, L, *s)`` codes of its contrasts after a random intensity augmentation.

    Only the intensity transforms of ``augmentation`` apply (gamma, bias field, scale, shift, noise), drawn per
    contrast and copy, inside the volume's mask; nothing moves, so input codes stay aligned with the clean target.
    Scanner-like intensity variation reaches stage 2 this way although its latents are encoded once."""
    from tqdm import tqdm

    intensity_only = dataclasses.replace(augmentation, flip_probability=0.0, affine_probability=0.0)
    augmenter = PatchAugmenter(intensity_only, clip)
    if not augmenter.active or copies <= 0:
        return [[] for _ in volumes]
    out = []
    for number, volume in enumerate(tqdm(volumes, desc="augmented latents", disable=not progress)):
        present = [name for name in slots if name in volume.images]
        stack = np.stack([volume.images[name] for name in present])
        versions = []
        for copy in range(copies):
            images, _ = augmenter(stack, volume.mask, seed=int(seed * 100_003 + number * 101 + copy))
            codes = {name: _encode(autoencoder, images[i]) for i, name in enumerate(present)}
            template = next(iter(codes.values()))
            versions.append(torch.stack([codes.get(n, torch.zeros_like(template)) for n in slots]).half())
        out.append(versions)
    return out


def random_subset(rng: np.random.Generator, present: list[int]) -> tuple[int, list[int]]:
    """A random target among ``present`` slots and a random non-empty subset of the rest."""
    target = int(rng.choice(present))
    others = [i for i in present if i != target]
    chosen = [i for i in others if rng.random() < 0.5]
    if not chosen:
        chosen = [int(rng.choice(others))]
    return target, chosen


def decode_window(config: TrainConfig) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Latent and image index (spatial axes) of the central ``stage2.decode_size`` part of a ``patch_size`` patch.

    Raises:
        ConfigError: when the sizes do not fit the autoencoder's downsampling or the translator's latent multiple.
    """
    ds = config.autoencoder.downsampling
    patch = tuple(config.stage2.patch_size)
    decode = tuple(config.stage2.decode_size) or patch
    multiple = ds * config.translator.latent_multiple
    if any(n % multiple for n in patch):
        raise ConfigError(f"stage2.patch_size {list(patch)} must be multiples of {multiple} (autoencoder downsampling "
                         f"{ds} x translator latent multiple {config.translator.latent_multiple}); change patch_size.")
    if len(decode) != len(patch) or any(d % ds or not 0 < d <= n for d, n in zip(decode, patch)):
        raise ConfigError(f"stage2.decode_size {list(decode)} must be {len(patch)} multiples of {ds} no larger than "
                         f"patch_size {list(patch)}; change decode_size (or leave it out to decode the whole patch).")
    offsets = [(n // ds - d // ds) // 2 for d, n in zip(decode, patch)]
    latent = tuple(slice(o, o + d // ds) for o, d in zip(offsets, decode))
    image = tuple(slice(o * ds, o * ds + d) for o, d in zip(offsets, decode))
    return latent, image


def sample_batch(volumes, latents, config: TrainConfig, rng, slots, noise_latents=None, augmented=None):
    """Latent patches ``(B, M, L, *s)``, availability ``(B, M)``, targets ``(B,)``, target codes ``(B, L, *s)`` and
    image patches ``(B, 1, *d)`` (the central ``stage2.decode_size`` part of the patch).

    With ``augmented`` (per volume, a list of augmented codes from :func:`encode_augmented`), the inputs of a sample
    come from the clean codes or one of the augmented copies with equal chance; targets always from the clean ones.
    With ``noise_latents`` and ``config.stage2.corrupt_probability`` > 0, one of two or more inputs is
    replaced by the codes of a noise volume with that probability."""
    ds = config.autoencoder.downsampling
    _, image_crop = decode_window(config)
    out_latents, out_available, out_target, out_codes, out_images = [], [], [], [], []
    for _ in range(config.stage2.batch_size):
        index = int(rng.integers(0, len(volumes)))
        volume, codes = volumes[index], latents[index]
        present = [i for i, name in enumerate(slots) if name in volume.images]
        target, inputs = random_subset(rng, present)
        window = random_patch_slices(volume.mask.shape, config.stage2.patch_size, rng, ds, volume.foreground)
        lwindow = tuple(slice(w.start // ds, w.stop // ds) for w in window)
        available = torch.zeros(len(slots))
        available[inputs] = 1.0
        versions = [codes] + (list(augmented[index]) if augmented is not None else [])
        source = versions[int(rng.integers(0, len(versions)))]
        patch = source[(slice(None), slice(None)) + lwindow].to(torch.float32, copy=True)  # copies are float16
        patch[available == 0] = 0.0
        corrupt = config.stage2.corrupt_probability
        if noise_latents is not None and corrupt > 0 and len(inputs) >= 2 and rng.random() < corrupt:
            victim = int(rng.choice(inputs))
            patch[victim] = noise_latents[index][(slice(None),) + lwindow]
        out_latents.append(patch)
        out_available.append(available)
        out_target.append(target)
        out_codes.append(codes[target][(slice(None),) + lwindow])
        image = volume.images[slots[target]][window][image_crop]
        out_images.append(torch.from_numpy(np.ascontiguousarray(image))[None])
    return (torch.stack(out_latents), torch.stack(out_available), torch.tensor(out_target),
            torch.stack(out_codes), torch.stack(out_images))


@torch.no_grad()
def validate(autoencoder, translator, volumes, latents, slots) -> dict[str, float]:
    """Whole-volume PSNR (brain mask, range 1) for every target from all other contrasts (on the translator's device)."""
    translator.eval()
    device = next(translator.parameters()).device
    scores = {}
    for volume, codes in zip(volumes, latents):
        present = [i for i, name in enumerate(slots) if name in volume.images]
        for target in present:
            available = torch.zeros(1, len(slots))
            available[0, [i for i in present if i != target]] = 1.0
            z = codes[None].clone()
            z[0, available[0] == 0] = 0.0
            padded, crop = pad_to_multiple(z.flatten(1, 2), translator.config.latent_multiple)
            prediction, _ = translator(padded.view(1, z.shape[1], z.shape[2], *padded.shape[2:]).to(device),
                                       available.to(device), torch.tensor([target], device=device))
            image = autoencoder.decode(prediction[crop])[0, 0].float().cpu().numpy()
            truth = volume.images[slots[target]]
            value = psnr(np.clip(truth, 0, 1), np.clip(image, 0, 1), mask=volume.mask, data_range=1.0)
            scores.setdefault(slots[target], []).append(value)
    translator.train()
    result = {f"val_psnr_{name}": float(np.mean(v)) for name, v in scores.items()}
    result["val_psnr"] = float(np.mean(list(result.values())))
    return result


@dataclasses.dataclass
class FusionCodes:
    """The latents stage 2 trains on, encoded once by the frozen autoencoder and kept on the CPU.

    ``train``/``val``: per volume ``(M, L, *s)``; ``noise``: per training volume ``(L, *s)`` or None;
    ``augmented``: per training volume a list of float16 ``(M, L, *s)`` copies, or None."""

    train: list[torch.Tensor]
    val: list[torch.Tensor]
    noise: list[torch.Tensor] | None = None
    augmented: list[list[torch.Tensor]] | None = None


def encode_fusion_codes(config: TrainConfig, autoencoder: FSQAutoencoder, train: list[Volume], val: list[Volume],
                        validate_here: bool = True, progress: bool = False) -> FusionCodes:
    """Encode everything stage 2 needs on the autoencoder's device (validation codes only where ``validate_here``)."""
    slots = config.translator.contrasts
    autoencoder.eval().requires_grad_(False)
    return FusionCodes(
        train=encode_volumes(autoencoder, train, slots),
        val=encode_volumes(autoencoder, val, slots) if validate_here else [],
        noise=encode_noise(autoencoder, train, config.seed + 2) if config.stage2.corrupt_probability > 0 else None,
        augmented=(encode_augmented(autoencoder, train, slots, config.augmentation, config.stage2.augmented_copies,
                                    config.seed + 3, config.preprocessing.normalization.clip, progress)
                   if config.stage2.augmented_copies > 0 else None))


class FusionTrainer:
    """The fusion translator's training state on one device: frozen autoencoder, translator, optimiser.

    It trains on :class:`FusionCodes` (CPU); each step draws a batch there (numpy, seeded) and moves it to the
    device. Under ``torchrun`` every rank holds one replica; the optimiser averages gradients over the ranks
    (:func:`training.runtime.distributed.data_parallel`), so the replicas stay identical.
    """

    def __init__(self, config: TrainConfig, autoencoder: FSQAutoencoder, train: list[Volume], val: list[Volume],
                 codes: FusionCodes, ctx: DistContext) -> None:
        self.config, self.device = config, ctx.device
        self.slots = config.translator.contrasts
        self.latent_crop, _ = decode_window(config)
        self.autoencoder = autoencoder.to(self.device).eval().requires_grad_(False)
        self.train, self.val, self.codes = train, val, codes
        self.translator = FusionTranslator(config.translator).to(self.device)
        self.optimizer = torch.optim.AdamW(self.translator.parameters(), lr=config.stage2.lr,
                                           weight_decay=config.stage2.weight_decay)
        data_parallel(ctx, {"translator": self.translator}, [self.optimizer])
        self.image_loss = ImageLoss(config.autoencoder.spatial_dims, config.stage2.ssim_weight).to(self.device)
        self.bf16 = bf16_enabled(config.runtime.bf16, self.device, config.runtime.cpu_bf16)

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One training batch on the device (:func:`sample_batch`'s tensors by name)."""
        names = ("latents", "available", "target", "target_codes", "target_images")
        tensors = sample_batch(self.train, self.codes.train, self.config, rng, self.slots, self.codes.noise,
                               self.codes.augmented)
        return to_device(dict(zip(names, tensors)), self.device)

    def losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """``(loss, its terms as 0-dim tensors, decoded patches (B, 1, *d))`` of one batch."""
        with autocast(self.bf16, self.device):
            prediction, _ = self.translator(batch["latents"], batch["available"], batch["target"])
            decoded = self.autoencoder.decode(prediction[(slice(None), slice(None)) + self.latent_crop])
        with full_precision(prediction):
            latent_l1 = F.l1_loss(prediction.float(), batch["target_codes"].float())
        image_loss, terms = self.image_loss(decoded, batch["target_images"])  # float32 inside
        loss = self.config.stage2.latent_weight * latent_l1 + image_loss
        return loss, {"loss": loss.detach(), "latent_l1": latent_l1.detach(), **terms}, decoded

    def step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One optimisation step; ``(terms, decoded patches)``."""
        loss, terms, decoded = self.losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.stage2.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.translator.parameters(), self.config.stage2.grad_clip)
        self.optimizer.step()
        return terms, decoded

    def validate(self) -> dict[str, float]:
        return validate(self.autoencoder, self.translator, self.val, self.codes.val, self.slots)


def paired_volumes(config: TrainConfig, volumes: list[Volume]) -> list[Volume]:
    """The volumes with at least two of the translator's contrasts (stage 2 learns one from the others)."""
    slots = config.translator.contrasts
    return [v for v in volumes if sum(c in v.images for c in slots) >= 2]


def train_stage2(config: TrainConfig, run: RunFolder, autoencoder: FSQAutoencoder, train: list[Volume],
                 val: list[Volume], resume: bool = False, progress: bool = True,
                 ctx: DistContext | None = None) -> FusionTranslator:
    """Train (or resume) the translator with the autoencoder frozen on ``ctx.device`` (every rank of a ``torchrun``
    job runs this; rank 0 alone validates, logs and writes checkpoints); returns the best-validation translator
    on the CPU."""
    ctx = ctx or DistContext(device=select_device(config.runtime.device))
    torch.manual_seed(config.seed + 1)
    decode_window(config)  # checks the sizes before the slow encoding
    codes = encode_fusion_codes(config, autoencoder.to(ctx.device), train, val, ctx.is_main, progress and ctx.is_main)
    trainer = FusionTrainer(config, autoencoder, train, val, codes, ctx)
    translator, optimizer = trainer.translator, trainer.optimizer
    rng = np.random.default_rng(rank_seed(ctx, config.seed + 1))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.stage2.steps, 1))
    start, best = 0, -np.inf
    state = run.load_checkpoint(STAGE) if resume else None
    if state is not None:
        translator.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, best = int(state["step"]), float(state["best"])
        rng = np.random.default_rng(rank_seed(ctx, [config.seed + 1, start]))
    timer = Timer()
    bar = progress_steps(ctx, start, config.stage2.steps, "stage2 translator", progress)
    for step in bar:
        batch = trainer.batch(rng)
        terms, decoded = trainer.step(batch)
        schedule.step()
        done = step + 1
        if is_log_step(done, config.stage2.log_every, config.stage2.steps):
            row = {"step": done, **mean_terms(ctx, {k: float(v) for k, v in terms.items()}),
                   "lr": schedule.get_last_lr()[0], "seconds": timer.elapsed()}
            if ctx.is_main:
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                if is_log_step(done, config.stage2.checkpoint_every, config.stage2.steps):
                    preview = (batch["target_images"].float().cpu(), decoded.detach().float().cpu())
                    best = run.checkpoint(STAGE, done, trainer.validate(), best, translator, optimizer, schedule,
                                          preview)
                run.log(STAGE, row)
    check_replicas(ctx, run, STAGE, {"translator": translator}, config.stage2.steps)
    barrier(ctx)
    return run.load_best(STAGE, translator.cpu())
