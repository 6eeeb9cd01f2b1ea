"""Stage 2, kind ``cyclegan``: latent CycleGAN between one source and one target contrast (unpaired).

Two generators (source→target ``G``, target→source ``F``) and two PatchGAN critics on frozen stage-1
latents. The training cases are split in two disjoint halves: source patches come only from the first,
target patches only from the second, at independent random windows, so no paired information is used
(with a single training case both draws come from it, still at independent windows). Losses: LSGAN
(critics push real → 1, fake → 0; generators push fake → 1), cycle L1 ``|F(G(a)) - a| + |G(F(b)) - b|``
and identity L1 ``|G(b) - b| + |F(a) - a|``. Model selection uses paired held-out cases (whole-volume
PSNR of ``G``), which the phantom validation set provides.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from MRSynthLib.quality.metrics import psnr
from MRSynthLib.networks.autoencoder import LatentAutoencoder
from MRSynthLib.networks.cyclegan import LatentGenerator, build_discriminator
from training.config import ConfigError, TrainConfig
from training.translators.stage2_latents import LatentCase, random_window, validation_engine

HELD_OUT_SEED = 987_655


class CycleGANTrainer:
    """Implements :class:`training.translators.stage2_loop.Trainer` for the latent CycleGAN."""

    def __init__(self, config: TrainConfig, autoencoder: LatentAutoencoder, slots: tuple[str, ...],
                 train: list[LatentCase], val: list[LatentCase], device: torch.device = torch.device("cpu")) -> None:
        cg = config.method.cyclegan
        latent = autoencoder.config.latent_channels
        self.generator_config = cg.generator_for(autoencoder.config)
        source, target = self.generator_config.source, self.generator_config.target
        for name in (source, target):
            if name not in slots:
                raise ConfigError(f"method.cyclegan.generator names {name!r}, which is not among translator.contrasts {list(slots)}")
        self.source, self.target = slots.index(source), slots.index(target)
        sources = [c for c in train if self.source in c.present]
        targets = [c for c in train if self.target in c.present]
        if not sources or not targets:
            raise ConfigError(f"the training cases need {source} in some and {target} in others for the cyclegan")
        self.sources = sources[0::2] if len(sources) > 1 else sources
        taken = {id(c) for c in self.sources}
        self.targets = [c for c in targets if id(c) not in taken] or targets  # disjoint halves when possible
        self.val_cases = [c for c in val if self.source in c.present and self.target in c.present]
        if not self.val_cases:
            raise ConfigError(f"no validation case has both {source} and {target}: the cyclegan cannot be validated")
        self.config, self.cg, self.device = config, cg, device
        self.autoencoder = autoencoder.to(device)
        self.ds = autoencoder.config.downsampling
        self.patch = tuple(config.stage2.patch_size)
        reverse = dataclasses.replace(self.generator_config, source=target, target=source)
        self.forward_net = LatentGenerator(self.generator_config).to(device)
        self.backward_net = LatentGenerator(reverse).to(device)
        dims = autoencoder.config.spatial_dims
        self.critic_target = build_discriminator(dims, latent, cg.discriminator_channels, cg.discriminator_layers).to(device)
        self.critic_source = build_discriminator(dims, latent, cg.discriminator_channels, cg.discriminator_layers).to(device)
        self.modules = {"generator": self.forward_net, "generator_reverse": self.backward_net,
                        "critic_target": self.critic_target, "critic_source": self.critic_source}
        lr, d_lr = config.stage2.lr, cg.discriminator_lr or config.stage2.lr
        wd = config.stage2.weight_decay
        generators = list(self.forward_net.parameters()) + list(self.backward_net.parameters())
        critics = list(self.critic_target.parameters()) + list(self.critic_source.parameters())
        self.optimizers = {"generators": torch.optim.AdamW(generators, lr=lr, betas=(0.5, 0.999), weight_decay=wd),
                           "critics": torch.optim.AdamW(critics, lr=d_lr, betas=(0.5, 0.999), weight_decay=wd)}
        self.extra: dict[str, float] = {}
        self.selection = ("val_psnr", 1.0)
        rng = np.random.default_rng(HELD_OUT_SEED)
        self.held_out = self._batch(rng, self.val_cases, self.val_cases)

    def _patches(self, rng, cases: list[LatentCase], slot: int) -> torch.Tensor:
        out = []
        for _ in range(self.config.stage2.batch_size):
            case = cases[int(rng.integers(0, len(cases)))]
            _, where = random_window(case, self.patch, self.ds, self.ds, rng)
            out.append(case.latents[(slot, slice(None)) + where])
        return torch.stack(out).to(self.device)

    def _batch(self, rng, sources, targets) -> dict[str, torch.Tensor]:
        return {"a": self._patches(rng, sources, self.source), "b": self._patches(rng, targets, self.target)}

    def _critic_score(self, critic, latents: torch.Tensor, rng: np.random.Generator | None) -> torch.Tensor:
        if rng is not None and self.cg.instance_noise > 0:
            noise = rng.standard_normal(tuple(latents.shape)).astype(np.float32) * self.cg.instance_noise
            latents = latents + torch.from_numpy(noise).to(self.device)
        return critic(latents)[-1]

    def _cycle_identity(self, a, b, fake_b, fake_a) -> tuple[torch.Tensor, torch.Tensor]:
        cycle = F.l1_loss(self.backward_net(fake_b), a) + F.l1_loss(self.forward_net(fake_a), b)
        identity = F.l1_loss(self.forward_net(b), b) + F.l1_loss(self.backward_net(a), a)
        return cycle, identity

    def step(self, rng: np.random.Generator) -> dict[str, float]:
        for net in self.modules.values():
            net.train()
        batch = self._batch(rng, self.sources, self.targets)
        a, b = batch["a"], batch["b"]
        fake_b, fake_a = self.forward_net(a), self.backward_net(b)
        scores = [self._critic_score(self.critic_target, fake_b, rng), self._critic_score(self.critic_source, fake_a, rng)]
        adversarial = sum(F.mse_loss(s, torch.ones_like(s)) for s in scores)
        cycle, identity = self._cycle_identity(a, b, fake_b, fake_a)
        loss = self.cg.adversarial_weight * adversarial + self.cg.cycle_weight * cycle + self.cg.identity_weight * identity
        generators = self.optimizers["generators"]
        generators.zero_grad(set_to_none=True)
        loss.backward()
        generators.step()
        critic_loss = 0.0
        for critic, real, fake in ((self.critic_target, b, fake_b), (self.critic_source, a, fake_a)):
            real_score = self._critic_score(critic, real, rng)
            fake_score = self._critic_score(critic, fake.detach(), rng)
            critic_loss = critic_loss + 0.5 * (F.mse_loss(real_score, torch.ones_like(real_score))
                                               + F.mse_loss(fake_score, torch.zeros_like(fake_score)))
        critics = self.optimizers["critics"]
        critics.zero_grad(set_to_none=True)
        critic_loss.backward()
        critics.step()
        return {"loss": loss.item(), "adversarial": adversarial.item(), "cycle": cycle.item(),
                "identity": identity.item(), "critic": critic_loss.item()}

    @torch.no_grad()
    def held_out_loss(self) -> dict[str, float]:
        for net in self.modules.values():
            net.eval()
        a, b = self.held_out["a"], self.held_out["b"]
        cycle, identity = self._cycle_identity(a, b, self.forward_net(a), self.backward_net(b))
        return {"val_cycle": cycle.item(), "val_identity": identity.item()}

    def engine(self):
        return validation_engine("cyclegan", self.autoencoder, {"generator": (self.forward_net, self.generator_config)},
                                 self.device)

    @torch.no_grad()
    def validate(self, final: bool):
        from MRSynthLib.methods.translators.driver import predict_translator

        engine = self.engine()
        slots_names = (self.generator_config.source, self.generator_config.target)
        scores, preview = [], None
        for case in self.val_cases:
            crop = tuple(slice(0, n) for n in case.shape)
            arrays = {slots_names[0]: case.images[(self.source,) + crop]}
            prediction = predict_translator(engine, arrays, slots_names[1], window=0, contributions=False)
            truth = case.images[(self.target,) + crop]
            scores.append(psnr(np.clip(truth, 0, 1), np.clip(prediction.synthetic, 0, 1), mask=case.mask[crop],
                               data_range=1.0))
            if preview is None:
                preview = (truth[case.shape[0] // 2], prediction.synthetic[case.shape[0] // 2])
        return {"val_psnr": float(np.mean(scores))}, preview
