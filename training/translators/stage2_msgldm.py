"""Stage 2, kind ``msgldm``: train MSG-LDM end to end on frozen stage-1 latents.

Each sample draws a case, a target among its contrasts and a random input dropout: of the other
``n`` present slots, ``0 .. n - 1`` are dropped (uniformly many, at random), a latent window, a time
``t ~ U(0, 1)`` and noise. Every present slot (target included) goes through its own structure encoder;
only the kept inputs are fused (MMSF, MSSE) into the structure representation that conditions the
denoiser. Loss (weights in ``method.msgldm``)::

    diffusion (velocity MSE, :mod:`MRSynthLib.methods.translators.samplers`)
    + seg_weight       * segmentation CE of every present slot's scale-0 structure (cases with labels only)
    + style_weight     * style contrastive loss (style vectors of the present slots + the learned
                         per-modality prototypes the denoiser uses, labelled by modality)
    + structure_weight * structure-aware loss (L1 + SSIM of DCT amplitude spectra) between the fused
                         structure representation and the target slot's own scale-0 structure features

Validation samples whole held-out volumes through the inference driver with DDIM once, at the end;
checkpoints are selected by the held-out total loss (fixed batch, times and noise).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from MRSynthLib.networks.autoencoder import LatentAutoencoder
from MRSynthLib.networks.msgldm import MSGLDM
from MRSynthLib.methods.translators.samplers import Schedule
from training.config import TrainConfig
from training.translators.stage2_ldm import latent_scale
from training.translators.msgldm_losses import label_fractions, segmentation_loss, structure_loss, style_contrastive_loss
from training.translators.stage2_latents import LatentCase, random_window, validation_engine

HELD_OUT_SEED = 987_655


def drop_inputs(rng: np.random.Generator, present: list[int]) -> tuple[int, list[int]]:
    """A random target among ``present`` and the others minus ``0 .. n-1`` dropped ones (uniform count)."""
    target = int(rng.choice(present))
    others = [i for i in present if i != target]
    keep = int(rng.integers(1, len(others) + 1))
    return target, sorted(int(i) for i in rng.choice(others, size=keep, replace=False))


class MSGLDMTrainer:
    """Implements :class:`training.translators.stage2_loop.Trainer` for MSG-LDM."""

    def __init__(self, config: TrainConfig, autoencoder: LatentAutoencoder, slots: tuple[str, ...],
                 train: list[LatentCase], val: list[LatentCase], device: torch.device = torch.device("cpu")) -> None:
        settings = config.method.msgldm
        self.config, self.settings, self.autoencoder, self.device = config, settings, autoencoder.to(device), device
        self.slots = tuple(slots)
        self.network_config = settings.network_for(autoencoder.config, self.slots)
        self.network = MSGLDM(self.network_config).to(device)
        self.train_cases, self.val_cases = train, val
        self.ds = autoencoder.config.downsampling
        self.multiple = self.ds * self.network_config.multiple
        self.patch = tuple(config.stage2.patch_size)
        self.extra = {"latent_scale": latent_scale(train, settings.sampling.latent_scale, settings.measure_latent_scale)}
        self.schedule = Schedule(settings.sampling.schedule)
        self.selection = ("val_loss", -1.0)
        self.modules = {"msgldm": self.network}
        self.optimizers = {"msgldm": torch.optim.AdamW(self.network.parameters(), lr=config.stage2.lr,
                                                       weight_decay=config.stage2.weight_decay)}
        rng = np.random.default_rng(HELD_OUT_SEED)
        self.held_out = self._batch(rng, val)
        b = config.stage2.batch_size
        self.held_out_t = torch.from_numpy(np.linspace(0.05, 0.95, b).astype(np.float32))
        self.held_out_noise = torch.from_numpy(rng.standard_normal(tuple(self.held_out["x0"].shape)).astype(np.float32))

    @property
    def sampling(self):
        return dataclasses.replace(self.settings.sampling, latent_scale=self.extra["latent_scale"])

    def _batch(self, rng: np.random.Generator, cases: list[LatentCase]) -> dict[str, torch.Tensor]:
        """``batch_size`` random (case, target, input dropout, window) draws, latents scaled."""
        m = len(self.slots)
        scale = self.extra["latent_scale"]
        latents, present, available, target, labels, has_labels = [], [], [], [], [], []
        for _ in range(self.config.stage2.batch_size):
            case = cases[int(rng.integers(0, len(cases)))]
            goal, inputs = drop_inputs(rng, case.present)
            image_where, where = random_window(case, self.patch, self.ds, self.multiple, rng)
            latents.append(case.latents[(slice(None), slice(None)) + where] * scale)
            mask = torch.zeros(m)
            mask[case.present] = 1.0
            present.append(mask)
            given = torch.zeros(m)
            given[inputs] = 1.0
            available.append(given)
            target.append(goal)
            has_labels.append(case.labels is not None)
            window = case.labels[image_where] if case.labels is not None else np.zeros(self.patch, np.uint8)
            labels.append(torch.from_numpy(np.ascontiguousarray(window).astype(np.int64)))
        latents_t = torch.stack(latents)
        target_t = torch.tensor(target)
        fractions = label_fractions(torch.stack(labels), self.settings.seg_labels, self.ds)
        return {k: v.to(self.device) for k, v in {
            "latents": latents_t, "present": torch.stack(present), "available": torch.stack(available),
            "target": target_t, "target_onehot": F.one_hot(target_t, m).float(),
            "x0": latents_t[torch.arange(len(target)), target_t], "fractions": fractions,
            "has_labels": torch.tensor(has_labels)}.items()}

    def _losses(self, batch: dict, t: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        settings, net = self.settings, self.network
        view = (-1,) + (1,) * (noise.ndim - 1)
        tn = t.cpu().numpy().astype(np.float64)
        alpha, sigma = (torch.from_numpy(np.asarray(v, np.float32)).to(self.device).view(view)
                        for v in (self.schedule.alpha(tn), self.schedule.sigma(tn)))
        c_x0, c_eps = (torch.from_numpy(np.asarray(v, np.float32)).to(self.device).view(view)
                       for v in self.schedule.velocity_coefficients(tn))
        x0 = batch["x0"]
        scales = net.encode_slots(batch["latents"])  # every slot; missing ones are masked below
        structure, _ = net.fuse(scales, batch["available"], batch["target_onehot"])
        velocity = net.denoise(alpha * x0 + sigma * noise, t.to(self.device), structure, batch["target_onehot"])
        terms = {"diffusion": F.mse_loss(velocity, c_x0 * x0 + c_eps * noise)}

        rows, slots = torch.nonzero(batch["present"] > 0, as_tuple=True)  # every present (case, slot)
        top = scales[0][rows, slots]  # (P, C0, *s)
        labelled = batch["has_labels"][rows]
        if bool(labelled.any()):
            logits = net.segmentation(top[labelled])
            terms["segmentation"] = segmentation_loss(logits, batch["fractions"][rows[labelled]])
        else:
            terms["segmentation"] = top.sum() * 0.0
        styles = net.style_encoder(batch["latents"][rows, slots])
        m = len(self.slots)
        terms["style"] = style_contrastive_loss(torch.cat([styles, net.style_prototypes]),
                                                torch.cat([slots, torch.arange(m, device=self.device)]),
                                                settings.temperature)
        own = scales[0][torch.arange(len(x0), device=self.device), batch["target"]]
        terms["structure"] = structure_loss(structure, own)
        terms["loss"] = (terms["diffusion"] + settings.seg_weight * terms["segmentation"]
                         + settings.style_weight * terms["style"] + settings.structure_weight * terms["structure"])
        return terms

    def step(self, rng: np.random.Generator) -> dict[str, float]:
        self.network.train()
        batch = self._batch(rng, self.train_cases)
        t = torch.from_numpy(rng.uniform(0.0, 1.0, len(batch["x0"])).astype(np.float32))
        noise = torch.from_numpy(rng.standard_normal(tuple(batch["x0"].shape)).astype(np.float32)).to(self.device)
        terms = self._losses(batch, t, noise)
        optimizer = self.optimizers["msgldm"]
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        return {"loss": terms.pop("loss").item(), **{k: v.item() for k, v in terms.items()}}

    @torch.no_grad()
    def held_out_loss(self) -> dict[str, float]:
        self.network.eval()
        terms = self._losses(self.held_out, self.held_out_t, self.held_out_noise.to(self.device))
        return {"val_loss": terms.pop("loss").item(), **{f"val_{k}": v.item() for k, v in terms.items()}}

    def engine(self):
        """An inference engine over the networks in memory (the validation goes through the real driver)."""
        return validation_engine("msgldm", self.autoencoder, {"msgldm": (self.network, self.network_config)}, self.device,
                                 self.sampling, self.settings.validation_steps)

    @torch.no_grad()
    def validate(self, final: bool):
        from training.translators.stage2_ldm import validate_cases

        if not final:
            return {"val_psnr": float("nan")}, None
        return validate_cases(self.engine(), self.val_cases, self.slots)
