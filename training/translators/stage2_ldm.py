"""Stage 2, kind ``ldm``: train the latent denoiser on frozen stage-1 latents, guided by a frozen fusion translator.

Each sample draws a target contrast and a random non-empty subset of the others (as the fusion
translator does, so one denoiser serves every subset), a latent window, a time ``t ~ U(0, 1)`` and
noise (a drawn batch, whose fusion guide costs more than the denoiser step, serves ``batch_reuse``
steps, each with fresh times and noise); the loss is the mean squared error of the predicted velocity (``cosine`` schedule: DDPM with
v-prediction; ``linear``: rectified flow), see :mod:`MRSynthLib.methods.translators.samplers`. Latents are scaled by
``latent_scale`` (1 / std of the training latents, measured once). Validation samples whole held-out
volumes through the inference driver (:mod:`MRSynthLib.methods.translators.driver`) with DDIM once, at the
end; checkpoints are selected by the velocity loss on a fixed held-out batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from MRSynthLib.quality.metrics import psnr
from MRSynthLib.networks.autoencoder import LatentAutoencoder
from MRSynthLib.networks.denoiser import LatentDenoiser
from MRSynthLib.networks.fusion import FusionTranslator
from MRSynthLib.methods.translators.samplers import Schedule
from training.config import TrainConfig
from training.translators.stage2_latents import LatentCase, random_task, random_window, validation_engine

HELD_OUT_SEED = 987_654


def latent_scale(cases: list[LatentCase], configured: float, measure: bool) -> float:
    """The diffusion's latent scale: 1 / std of the present latents of ``cases`` when ``measure``, else ``configured``."""
    if not measure:
        return configured
    values = torch.cat([c.latents[c.present].flatten() for c in cases])
    return float(1.0 / max(values.std().item(), 1e-3))


class LDMTrainer:
    """Implements :class:`training.translators.stage2_loop.Trainer` for the latent denoiser."""

    def __init__(self, config: TrainConfig, autoencoder: LatentAutoencoder, fusion: FusionTranslator,
                 train: list[LatentCase], val: list[LatentCase], device: torch.device = torch.device("cpu")) -> None:
        ldm = config.method.ldm
        self.config, self.autoencoder, self.fusion, self.device = config, autoencoder.to(device), fusion.to(device), device
        self.slots = fusion.config.contrasts
        self.denoiser_config = ldm.denoiser_for(autoencoder.config, self.slots)
        self.denoiser = LatentDenoiser(self.denoiser_config).to(device)
        self.train_cases, self.val_cases = train, val
        self.ds = autoencoder.config.downsampling
        self.multiple = self.ds * self.denoiser_config.multiple
        self.patch = tuple(config.stage2.patch_size)
        self.extra = {"latent_scale": latent_scale(train, ldm.sampling.latent_scale, ldm.measure_latent_scale)}
        self.schedule = Schedule(ldm.sampling.schedule)
        self.selection = ("val_loss", -1.0)  # sampling whole volumes is costly: it runs at the end only
        self.modules = {"denoiser": self.denoiser}
        self.optimizers = {"denoiser": torch.optim.AdamW(self.denoiser.parameters(), lr=config.stage2.lr,
                                                         weight_decay=config.stage2.weight_decay)}
        rng = np.random.default_rng(HELD_OUT_SEED)
        self.held_out = self._batch(rng, val)
        b = config.stage2.batch_size
        self.held_out_t = torch.from_numpy(np.linspace(0.05, 0.95, b).astype(np.float32))
        self.held_out_noise = torch.from_numpy(rng.standard_normal(tuple(self.held_out["x0"].shape)).astype(np.float32))
        self._reused, self._current = 0, None

    @property
    def sampling(self):
        return dataclasses.replace(self.config.method.ldm.sampling, latent_scale=self.extra["latent_scale"])

    @torch.no_grad()
    def _batch(self, rng: np.random.Generator, cases: list[LatentCase]) -> dict[str, torch.Tensor]:
        """Scaled latents ``x0`` ``(B, L, *w)`` and conditioning of ``batch_size`` random (case, task, window) draws."""
        m = len(self.slots)
        latents, available, target, x0 = [], [], [], []
        for _ in range(self.config.stage2.batch_size):
            case = cases[int(rng.integers(0, len(cases)))]
            goal, inputs = random_task(rng, case.present)
            _, where = random_window(case, self.patch, self.ds, self.multiple, rng)
            given = torch.zeros(m)
            given[inputs] = 1.0
            window = case.latents[(slice(None), slice(None)) + where]
            latents.append(window * given.view(m, 1, 1, 1, 1))
            available.append(given)
            target.append(goal)
            x0.append(window[goal])
        batch = {"latents": torch.stack(latents).to(self.device), "available": torch.stack(available).to(self.device),
                 "target": torch.tensor(target, device=self.device)}
        guide, _ = self.fusion(batch["latents"], batch["available"], batch["target"])
        scale = self.extra["latent_scale"]
        return {"x0": torch.stack(x0).to(self.device) * scale, "latents": batch["latents"] * scale,
                "available": batch["available"], "target_onehot": F.one_hot(batch["target"], m).float(),
                "guide": guide * scale}

    def _loss(self, batch: dict, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        view = (-1,) + (1,) * (noise.ndim - 1)
        tn = t.cpu().numpy().astype(np.float64)
        alpha, sigma = (torch.from_numpy(np.asarray(v, np.float32)).to(self.device).view(view)
                        for v in (self.schedule.alpha(tn), self.schedule.sigma(tn)))
        c_x0, c_eps = (torch.from_numpy(np.asarray(v, np.float32)).to(self.device).view(view)
                       for v in self.schedule.velocity_coefficients(tn))
        x_t = alpha * batch["x0"] + sigma * noise
        target = c_x0 * batch["x0"] + c_eps * noise
        predicted = self.denoiser(x_t, t.to(self.device), batch["latents"], batch["available"], batch["target_onehot"],
                                  batch["guide"])
        return F.mse_loss(predicted, target)

    def step(self, rng: np.random.Generator) -> dict[str, float]:
        self.denoiser.train()
        if self._reused % self.config.method.ldm.batch_reuse == 0:  # draw new cases, tasks, windows and guide
            self._current = self._batch(rng, self.train_cases)
        self._reused += 1
        batch = self._current
        t = torch.from_numpy(rng.uniform(0.0, 1.0, len(batch["x0"])).astype(np.float32))
        noise = torch.from_numpy(rng.standard_normal(tuple(batch["x0"].shape)).astype(np.float32)).to(self.device)
        loss = self._loss(batch, t, noise)
        optimizer = self.optimizers["denoiser"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def held_out_loss(self) -> dict[str, float]:
        self.denoiser.eval()
        return {"val_loss": self._loss(self.held_out, self.held_out_t, self.held_out_noise.to(self.device)).item()}

    def engine(self):
        """An inference engine over the networks in memory (the validation goes through the real driver)."""
        parts = {"translator": (self.fusion, self.fusion.config), "denoiser": (self.denoiser, self.denoiser_config)}
        return validation_engine("ldm", self.autoencoder, parts, self.device, self.sampling,
                                 self.config.method.ldm.validation_steps)

    @torch.no_grad()
    def validate(self, final: bool):
        if not final:
            return {"val_psnr": float("nan")}, None
        return validate_cases(self.engine(), self.val_cases, self.slots)


def validate_cases(engine, cases: list[LatentCase], slots: tuple[str, ...]):
    """Whole-volume PSNR (model space, brain mask, clipped to [0, 1], data range 1): case ``i`` synthesizes
    its ``i``-th present contrast (cycling) from all its others, through :func:`predict_translator`."""
    from MRSynthLib.methods.translators.driver import predict_translator

    scores, preview = [], None
    for index, case in enumerate(cases):
        target = case.present[index % len(case.present)]
        inputs = [i for i in case.present if i != target]
        prediction = predict_translator(engine, case.arrays(slots, inputs), slots[target], window=0, contributions=False)
        crop = tuple(slice(0, n) for n in case.shape)
        truth = case.images[(target,) + crop]
        scores.append(psnr(np.clip(truth, 0, 1), np.clip(prediction.synthetic, 0, 1), mask=case.mask[crop],
                           data_range=1.0))
        if preview is None:
            mid = case.shape[0] // 2
            preview = (truth[mid], prediction.synthetic[mid])
    return {"val_psnr": float(np.mean(scores))}, preview
