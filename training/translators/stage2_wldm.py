"""Stage 2, kind ``wldm`` (3D-WLDM): the latent split head and the DSCA denoiser on frozen stage-1 latents.

Each sample draws a case, a target among ``method.wldm.targets`` the case has, a random non-empty subset
of its ``sources`` (other than the target) as inputs, and a latent window. Per step:

- the **split head** (:class:`MRSynthLib.networks.latent_split.LatentSplit`) gets the cosine losses on
  pairs built inside the batch — (input ``a_i``, target ``b_i``): paired structure (same case and window),
  different modality; (``a_i``, ``b_{i+1}``): unpaired structure unless the two draws share case and
  window; (``a_i``, ``a_{i+1}``) and (``b_i``, ``b_{i+1}``): same modality when their contrasts agree,
  different otherwise — plus the MSE of re-merging both halves into the latent;
- the **denoiser** (:class:`MRSynthLib.networks.wldm.WLDMDenoiser`) gets the velocity MSE of the scaled
  target latent (schedule as the ``ldm`` kind), conditioned on the input latents and their halves
  (computed by the split head, detached).

The reported ``loss`` is their sum. Checkpoints are selected by the held-out loss of a fixed batch;
whole held-out volumes are sampled through the inference driver once, at the end (``val_psnr``; for a
``ct`` target also ``val_mae_hu``, the brain MAE in Hounsfield units through the card's HU window).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from MRSynthLib.quality.metrics import psnr
from MRSynthLib.networks.autoencoder import LatentAutoencoder
from MRSynthLib.networks.latent_split import LatentSplit, LatentSplitConfig, modality_loss, structure_loss
from MRSynthLib.networks.wldm import WLDMDenoiser
from MRSynthLib.methods.translators.samplers import Schedule
from training.config import ConfigError, TrainConfig
from training.kinds import KindExport
from training.translators.stage2_ldm import latent_scale
from training.translators.stage2_latents import LatentCase, random_window, validation_engine

HELD_OUT_SEED = 987_654


def split_config_for(denoiser) -> LatentSplitConfig:
    """The split head matching a :class:`WLDMDenoiserConfig` (same latent and half sizes)."""
    return LatentSplitConfig(spatial_dims=denoiser.spatial_dims, latent_channels=denoiser.latent_channels,
                             split_channels=denoiser.split_channels)


def split_losses(split: LatentSplit, pairs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cosine and merge losses of ``split`` on a batch of pairs.

    Args:
        pairs: ``a``, ``b`` latents ``(B, L, *s)`` (an input and the target of each draw),
            ``b_next`` = ``b`` of the next draw, ``a_next`` likewise; bool ``(B,)`` flags
            ``paired_next`` (draw and next share case and window), ``same_a`` / ``same_b`` (their
            contrasts agree).
    """
    s_a, m_a = split(pairs["a"])
    s_b, m_b = split(pairs["b"])
    s_bn, m_bn = split(pairs["b_next"])
    _, m_an = split(pairs["a_next"])
    every = torch.ones(len(s_a), dtype=torch.bool, device=s_a.device)
    structure = 0.5 * (structure_loss(s_a, s_b, every) + structure_loss(s_a, s_bn, pairs["paired_next"]))
    modality = (modality_loss(m_a, m_b, ~every) + modality_loss(m_a, m_an, pairs["same_a"])
                + modality_loss(m_b, m_bn, pairs["same_b"])) / 3.0
    merge = 0.5 * (F.mse_loss(split.merge(s_a, m_a), pairs["a"]) + F.mse_loss(split.merge(s_b, m_b), pairs["b"]))
    return {"structure": structure, "modality": modality, "merge": merge}


class WLDMTrainer:
    """Implements :class:`training.translators.stage2_loop.Trainer` for the split head and the DSCA denoiser."""

    def __init__(self, config: TrainConfig, autoencoder: LatentAutoencoder, slots: tuple[str, ...],
                 train: list[LatentCase], val: list[LatentCase], device: torch.device = torch.device("cpu")) -> None:
        wldm = config.method.wldm
        self.config, self.autoencoder, self.slots, self.device = config, autoencoder.to(device), slots, device
        try:
            sources, targets = wldm.slots_for(slots)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        self.sources = [slots.index(c) for c in sources]
        self.targets = [slots.index(c) for c in targets]
        self.train_cases, self.val_cases = self._usable(train, "training"), self._usable(val, "validation")
        self.denoiser_config = wldm.denoiser_for(autoencoder.config, slots)
        self.denoiser = WLDMDenoiser(self.denoiser_config).to(device)
        self.split = LatentSplit(split_config_for(self.denoiser_config)).to(device)
        self.ds = autoencoder.config.downsampling
        self.multiple = self.ds * self.denoiser_config.multiple
        self.patch = tuple(config.stage2.patch_size)
        self.extra = {"latent_scale": latent_scale(self.train_cases, wldm.sampling.latent_scale, wldm.measure_latent_scale)}
        self.schedule = Schedule(wldm.sampling.schedule)
        self.selection = ("val_loss", -1.0)
        self.modules = {"wldm_denoiser": self.denoiser, "wldm_split": self.split}
        optim = config.stage2
        self.optimizers = {name: torch.optim.AdamW(module.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
                           for name, module in self.modules.items()}
        rng = np.random.default_rng(HELD_OUT_SEED)
        self.held_out = self._batch(rng, self.val_cases)
        b = len(self.held_out["x0"])
        self.held_out_t = torch.from_numpy(np.linspace(0.05, 0.95, b).astype(np.float32))
        self.held_out_noise = torch.from_numpy(rng.standard_normal(tuple(self.held_out["x0"].shape)).astype(np.float32))

    def _usable(self, cases: list[LatentCase], what: str) -> list[LatentCase]:
        usable = [c for c in cases if any(any(s in c.present and s != t for s in self.sources)
                                          for t in self.targets if t in c.present)]
        if not usable:
            names = [self.slots[i] for i in self.sources], [self.slots[i] for i in self.targets]
            raise ConfigError(f"no {what} case has one of the targets {names[1]} and another of the sources {names[0]}: "
                              f"wldm cannot train (check method.wldm.sources / targets and the data's contrasts)")
        return usable

    def _task(self, rng: np.random.Generator, case: LatentCase) -> tuple[int, list[int]]:
        targets = [t for t in self.targets if t in case.present
                   and any(s in case.present and s != t for s in self.sources)]
        target = int(rng.choice(targets))
        others = [s for s in self.sources if s in case.present and s != target]
        chosen = [s for s in others if rng.random() < 0.5]
        return target, chosen or [int(rng.choice(others))]

    @torch.no_grad()
    def _batch(self, rng: np.random.Generator, cases: list[LatentCase]) -> dict[str, torch.Tensor]:
        """Scaled target ``x0`` ``(B, L, *w)``, conditioning, and the pair tensors of :func:`split_losses`."""
        m = len(self.slots)
        draws = []
        for _ in range(max(self.config.stage2.batch_size, 2)):  # pairs need a next draw
            case = cases[int(rng.integers(0, len(cases)))]
            target, inputs = self._task(rng, case)
            _, where = random_window(case, self.patch, self.ds, self.multiple, rng)
            given = torch.zeros(m)
            given[inputs] = 1.0
            window = case.latents[(slice(None), slice(None)) + where]
            partner = int(rng.choice(inputs))
            draws.append({"key": (case.case_id, tuple((w.start, w.stop) for w in where)), "target": target,
                          "partner": partner, "window": window, "given": given})
        latents = torch.stack([d["window"] * d["given"].view(m, 1, 1, 1, 1) for d in draws])
        available = torch.stack([d["given"] for d in draws])
        order = list(range(1, len(draws))) + [0]
        a = torch.stack([d["window"][d["partner"]] for d in draws])
        b = torch.stack([d["window"][d["target"]] for d in draws])
        scale = self.extra["latent_scale"]
        batch = {"x0": b * scale, "latents": latents * scale, "raw_latents": latents, "available": available,
                 "target_onehot": F.one_hot(torch.tensor([d["target"] for d in draws]), m).float(),
                 "a": a, "b": b, "a_next": a[order], "b_next": b[order],
                 "paired_next": torch.tensor([draws[i]["key"] == draws[j]["key"] for i, j in enumerate(order)]),
                 "same_a": torch.tensor([draws[i]["partner"] == draws[j]["partner"] for i, j in enumerate(order)]),
                 "same_b": torch.tensor([draws[i]["target"] == draws[j]["target"] for i, j in enumerate(order)])}
        return {k: v.to(self.device) for k, v in batch.items()}

    def _halves(self, raw_latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Structure and modality ``(B, M, C, *s)`` of every slot (detached: the denoiser does not train the split)."""
        b, m = raw_latents.shape[:2]
        with torch.no_grad():
            structure, modality = self.split(raw_latents.flatten(0, 1))
        return (structure.view(b, m, *structure.shape[1:]), modality.view(b, m, *modality.shape[1:]))

    def _diffusion_loss(self, batch: dict, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        view = (-1,) + (1,) * (noise.ndim - 1)
        tn = t.cpu().numpy().astype(np.float64)
        alpha, sigma = (torch.from_numpy(np.asarray(v, np.float32)).to(self.device).view(view)
                        for v in (self.schedule.alpha(tn), self.schedule.sigma(tn)))
        c_x0, c_eps = (torch.from_numpy(np.asarray(v, np.float32)).to(self.device).view(view)
                       for v in self.schedule.velocity_coefficients(tn))
        x_t = alpha * batch["x0"] + sigma * noise
        structure, modality = self._halves(batch["raw_latents"])
        predicted = self.denoiser(x_t, t.to(self.device), batch["latents"], batch["available"], batch["target_onehot"],
                                  structure, modality)
        return F.mse_loss(predicted, c_x0 * batch["x0"] + c_eps * noise)

    def _losses(self, batch: dict, t: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        wldm = self.config.method.wldm
        terms = split_losses(self.split, batch)
        split_total = (wldm.structure_weight * terms["structure"] + wldm.modality_weight * terms["modality"]
                       + wldm.merge_weight * terms["merge"])
        diffusion = self._diffusion_loss(batch, t, noise)
        return {"loss": diffusion + split_total, "diffusion": diffusion, "split": split_total, **terms}

    def step(self, rng: np.random.Generator) -> dict[str, float]:
        self.denoiser.train()
        self.split.train()
        batch = self._batch(rng, self.train_cases)
        t = torch.from_numpy(rng.uniform(0.0, 1.0, len(batch["x0"])).astype(np.float32))
        noise = torch.from_numpy(rng.standard_normal(tuple(batch["x0"].shape)).astype(np.float32)).to(self.device)
        losses = self._losses(batch, t, noise)
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        (losses["diffusion"] + losses["split"]).backward()  # the two parts share no gradient (halves are detached)
        for optimizer in self.optimizers.values():
            optimizer.step()
        return {k: v.item() for k, v in losses.items()}

    @torch.no_grad()
    def held_out_loss(self) -> dict[str, float]:
        self.denoiser.eval()
        self.split.eval()
        losses = self._losses(self.held_out, self.held_out_t, self.held_out_noise.to(self.device))
        return {f"val_{k}": v.item() for k, v in losses.items()}

    @property
    def sampling(self):
        return dataclasses.replace(self.config.method.wldm.sampling, latent_scale=self.extra["latent_scale"])

    def engine(self):
        """An inference engine over the networks in memory (validation goes through the real driver)."""
        parts = {"wldm_split": (self.split, self.split.config), "wldm_denoiser": (self.denoiser, self.denoiser_config)}
        return validation_engine("wldm", self.autoencoder, parts, self.device, self.sampling,
                                 self.config.method.wldm.validation_steps)

    @torch.no_grad()
    def validate(self, final: bool):
        columns = ["val_psnr"] + (["val_mae_hu"] if any(self.slots[t] == "ct" for t in self.targets) else [])
        if not final:
            return {k: float("nan") for k in columns}, None
        scores, preview = validate_wldm(self.engine(), self.val_cases, self.slots, self.sources, self.targets,
                                        self.config.preprocessing.normalization)
        return {k: scores.get(k, float("nan")) for k in columns}, preview


def validate_wldm(engine, cases: list[LatentCase], slots: tuple[str, ...], sources: list[int], targets: list[int],
                  normalization):
    """Whole-volume PSNR (model space, brain mask, clipped to [0, 1], data range 1; automatic windows as in
    ``mrsynth synthesize``, which bounds the attention memory): case ``i`` synthesizes
    its ``i``-th present target (cycling) from all its sources; a ``ct`` target also gives the brain MAE in
    HU (normalised error times the HU window's width, exact for the linear window)."""
    from MRSynthLib.methods.translators.driver import predict_translator

    scores, hu, preview = [], [], None
    for index, case in enumerate(cases):
        present = [t for t in targets if t in case.present and any(s in case.present and s != t for s in sources)]
        target = present[index % len(present)]
        inputs = [s for s in sources if s in case.present and s != target]
        prediction = predict_translator(engine, case.arrays(slots, inputs), slots[target], contributions=False)
        crop = tuple(slice(0, n) for n in case.shape)
        truth, mask = case.images[(target,) + crop], case.mask[crop]
        scores.append(psnr(np.clip(truth, 0, 1), np.clip(prediction.synthetic, 0, 1), mask=mask, data_range=1.0))
        if slots[target] == "ct":
            low, high = normalization.ct_window
            hu.append(float(np.abs(truth - prediction.synthetic)[mask].mean() * (high - low)))
        if preview is None:
            mid = case.shape[0] // 2
            preview = (truth[mid], prediction.synthetic[mid])
    result = {"val_psnr": float(np.mean(scores))}
    if hu:
        result["val_mae_hu"] = float(np.mean(hu))
    return result, preview


def export_wldm(config: TrainConfig, autoencoder: LatentAutoencoder, slots: tuple[str, ...], best: dict) -> KindExport:
    """The parts of a ``wldm`` bundle from the best checkpoint ``best`` (its registry export)."""
    wldm = config.method.wldm
    sources, targets = wldm.slots_for(slots)
    denoiser = WLDMDenoiser(wldm.denoiser_for(autoencoder.config, slots))
    denoiser.load_state_dict(best["modules"]["wldm_denoiser"])
    split = LatentSplit(split_config_for(denoiser.config))
    split.load_state_dict(best["modules"]["wldm_split"])
    sampling = dataclasses.replace(wldm.sampling, latent_scale=float(best["extra"]["latent_scale"]))
    networks = {"wldm_split": split.config.to_dict(), "wldm_denoiser": denoiser.config.to_dict(),
                "diffusion": sampling.to_dict()}
    return KindExport({"wldm_split": split, "wldm_denoiser": denoiser}, networks, sources, targets)


def wldm_card(card):
    """The card with its output unit (Hounsfield units for a ``ct`` output) and the protocol's sampler."""
    validation = dict(card.validation)
    validation["protocol"] = (validation["protocol"].replace("case i synthesizes its i-th contrast from all its others",
                                                             "case i synthesizes its i-th target from all its sources")
                              + "; DDIM, eta 0, seed 0; automatic windows (64 voxels)"
                              + ("; val_mae_hu: brain MAE of a ct target in Hounsfield units (normalised error x the "
                                 "HU window's width)" if "ct" in card.output_contrasts else ""))
    changes = {"validation": validation}
    if "ct" in card.output_contrasts:
        norm = card.preprocessing.normalization
        changes["output_intensity"] = (
            f"ct: Hounsfield units ({norm.describe_ct()}; the model output is mapped back through that window, "
            f"air {-1000:g} HU outside the head); MR outputs: {card.output_intensity}")
    return dataclasses.replace(card, **changes)
