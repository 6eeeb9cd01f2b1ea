"""Stage 2, kind ``targetcode``: one shared translator with a one-hot target code (VQ-Seq2Seq's idea).

Each sample is a random pair (source, target) of contrasts the case has, at a random latent window.
The network predicts the target latent's mean and log-variance; the loss is the Gaussian negative
log-likelihood ``0.5 * (logvar + (z - mean)^2 / exp(logvar))`` (weight ``nll_weight``) plus the L1 of
the decoded mean image against the true image patch (``image_weight``; 0 skips the decoder). At
inference several inputs are combined by their predicted precision; validation runs exactly that.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from MRSynthLib.networks.autoencoder import LatentAutoencoder
from MRSynthLib.networks.targetcode import TargetCodeTranslator
from training.config import TrainConfig
from training.translators.stage2_latents import LatentCase, random_window, validation_engine
from training.translators.stage2_ldm import validate_cases

HELD_OUT_SEED = 987_656


class TargetCodeTrainer:
    """Implements :class:`training.translators.stage2_loop.Trainer` for the target-code translator."""

    def __init__(self, config: TrainConfig, autoencoder: LatentAutoencoder, slots: tuple[str, ...],
                 train: list[LatentCase], val: list[LatentCase], device: torch.device = torch.device("cpu")) -> None:
        tc = config.method.targetcode
        self.network_config = tc.network_for(autoencoder.config, slots)
        self.config, self.tc, self.slots, self.device = config, tc, slots, device
        self.autoencoder = autoencoder.to(device)
        self.network = TargetCodeTranslator(self.network_config).to(device)
        self.train_cases, self.val_cases = train, val
        self.ds = autoencoder.config.downsampling
        self.patch = tuple(config.stage2.patch_size)
        self.selection = ("val_psnr", 1.0)
        self.modules = {"targetcode": self.network}
        self.optimizers = {"targetcode": torch.optim.AdamW(self.network.parameters(), lr=config.stage2.lr,
                                                           weight_decay=config.stage2.weight_decay)}
        self.extra: dict[str, float] = {}
        self.held_out = self._batch(np.random.default_rng(HELD_OUT_SEED), val)

    def _batch(self, rng: np.random.Generator, cases: list[LatentCase]) -> dict[str, torch.Tensor]:
        m = len(self.slots)
        source, target, codes, image, source_id, target_id = [], [], [], [], [], []
        for _ in range(self.config.stage2.batch_size):
            case = cases[int(rng.integers(0, len(cases)))]
            goal = int(rng.choice(case.present))
            given = int(rng.choice([i for i in case.present if i != goal]))
            image_where, where = random_window(case, self.patch, self.ds, self.ds, rng)
            source.append(case.latents[(given, slice(None)) + where])
            codes.append(case.latents[(goal, slice(None)) + where])
            image.append(torch.from_numpy(np.ascontiguousarray(case.images[(goal,) + image_where]))[None])
            source_id.append(given)
            target_id.append(goal)
        onehot = torch.eye(m)
        return {"source": torch.stack(source).to(self.device), "target": torch.stack(codes).to(self.device),
                "image": torch.stack(image).to(self.device), "source_onehot": onehot[source_id].to(self.device),
                "target_onehot": onehot[target_id].to(self.device)}

    def _losses(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        mean, logvar = self.network(batch["source"], batch["source_onehot"], batch["target_onehot"])
        nll = 0.5 * (logvar + (batch["target"] - mean) ** 2 * torch.exp(-logvar)).mean()
        latent_l1 = F.l1_loss(mean, batch["target"])
        loss = self.tc.nll_weight * nll
        terms = {"nll": nll.item(), "latent_l1": latent_l1.item()}
        if self.tc.image_weight > 0:
            image_l1 = F.l1_loss(self.autoencoder.decode(mean), batch["image"])
            loss = loss + self.tc.image_weight * image_l1
            terms["image_l1"] = image_l1.item()
        return loss, terms

    def step(self, rng: np.random.Generator) -> dict[str, float]:
        self.network.train()
        loss, terms = self._losses(self._batch(rng, self.train_cases))
        optimizer = self.optimizers["targetcode"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), **terms}

    @torch.no_grad()
    def held_out_loss(self) -> dict[str, float]:
        self.network.eval()
        loss, terms = self._losses(self.held_out)
        return {"val_loss": loss.item(), **{f"val_{k}": v for k, v in terms.items()}}

    def engine(self):
        return validation_engine("targetcode", self.autoencoder, {"targetcode": (self.network, self.network_config)},
                                 self.device)

    @torch.no_grad()
    def validate(self, final: bool):
        return validate_cases(self.engine(), self.val_cases, self.slots)
