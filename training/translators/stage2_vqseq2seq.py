"""Stage 2, kind ``vqseq2seq``: VQ-Seq2Seq on frozen stage-1 latents, from partially paired cases.

Each sample is a random pair ``(s, t)`` of two contrasts the case *has* (a case needs any two; cases with
other contrasts missing are used as they are), at a random window. The inputs may be domain-augmented
(:mod:`training.translators.vqseq2seq_augment`): intensity-augmented image patches re-encoded by the frozen encoder,
or the source replaced by the network's own translation into another code. Both inputs are encoded to
common latents ``q_s, q_t``; their Gaussian (:func:`~MRSynthLib.networks.vqseq2seq.common_gaussian`) is
sampled by reparameterisation; ``q_s``, ``q_t`` and the sample are each decoded to ``s`` and to ``t`` and
compared with the clean truth (:class:`training.vqseq2seq_config.VQSeq2SeqTrainConfig` lists the losses).
Validation runs whole held-out volumes through the inference driver; checkpoints are selected by its PSNR.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from MRSynthLib.networks.autoencoder import LatentAutoencoder
from MRSynthLib.networks.vqseq2seq import VQSeq2SeqTranslator, common_gaussian, reparameterise
from training.config import TrainConfig
from training.autoencoder.losses import ImageLoss
from training.translators.stage2_latents import LatentCase, random_window, validation_engine
from training.translators.stage2_ldm import validate_cases
from training.translators.vqseq2seq_augment import DomainAugmenter
from training.translators.vqseq2seq_losses import SlicePerceptualLoss, masked_consistency_mse, patch_contrastive

HELD_OUT_SEED = 987_658


def random_pair(rng: np.random.Generator, present: list[int]) -> tuple[int, int]:
    """Two different slots among the ones a case has: ``(source, target)``."""
    if len(present) < 2:
        raise ValueError(f"a training pair needs a case with two contrasts, not slots {present}")
    source, target = rng.choice(present, size=2, replace=False)
    return int(source), int(target)


class VQSeq2SeqTrainer:
    """Implements :class:`training.translators.stage2_loop.Trainer` for the VQ-Seq2Seq translator."""

    def __init__(self, config: TrainConfig, autoencoder: LatentAutoencoder, slots: tuple[str, ...],
                 train: list[LatentCase], val: list[LatentCase], device: torch.device = torch.device("cpu")) -> None:
        vc = config.method.vqseq2seq
        self.config, self.vc, self.slots, self.device = config, vc, slots, device
        self.network_config = vc.network_for(autoencoder.config, slots)
        self.autoencoder = autoencoder.to(device)
        self.network = VQSeq2SeqTranslator(self.network_config).to(device)
        self.train_cases, self.val_cases = train, val
        self.ds = autoencoder.config.downsampling
        self.patch = tuple(config.stage2.patch_size)
        self.selection = ("val_psnr", 1.0)
        self.modules = {"vqseq2seq": self.network}
        self.optimizers = {"vqseq2seq": torch.optim.AdamW(self.network.parameters(), lr=config.stage2.lr,
                                                          weight_decay=config.stage2.weight_decay)}
        self.extra: dict[str, float] = {}
        self.augmenter = DomainAugmenter(vc.augmentation)
        self.image_loss = ImageLoss(3, vc.ssim_weight, l1_weight=vc.pixel_weight) if vc.decodes else None
        self.perceptual = (SlicePerceptualLoss(vc.perceptual_network).to(device)
                           if vc.perceptual_network and vc.perceptual_weight > 0 else None)
        rng = np.random.default_rng(HELD_OUT_SEED)
        self.held_out = self._batch(rng, val, augment=False)
        self.held_out_noise = torch.from_numpy(rng.standard_normal(self._common_shape(self.held_out)).astype(np.float32))

    def _common_shape(self, batch: dict) -> tuple[int, ...]:
        b, _, *s = batch["source_latent"].shape
        return (b, self.network_config.common_channels, *s)

    @torch.no_grad()
    def _batch(self, rng: np.random.Generator, cases: list[LatentCase], augment: bool = True) -> dict[str, torch.Tensor]:
        """Pairs ``(s, t)`` at random windows: clean latents, images and masks of both, the (augmented) inputs,
        codes ``(B, M)``."""
        m = len(self.slots)
        keys = ("source_latent", "target_latent", "source_image", "target_image", "mask", "source_input",
                "target_input", "source_onehot", "target_onehot")
        out: dict[str, list] = {k: [] for k in keys}
        to_encode: list[tuple[str, int, np.ndarray]] = []
        translate: list[tuple[int, np.ndarray]] = []
        for i in range(self.config.stage2.batch_size):
            case = cases[int(rng.integers(0, len(cases)))]
            source, target = random_pair(rng, case.present)
            image_where, where = random_window(case, self.patch, self.ds, self.ds, rng)
            mask = np.ascontiguousarray(case.mask[image_where])
            for side, slot in (("source", source), ("target", target)):
                latent = case.latents[(slot, slice(None)) + where]
                image = np.ascontiguousarray(case.images[(slot,) + image_where])
                out[f"{side}_latent"].append(latent)
                out[f"{side}_image"].append(torch.from_numpy(image)[None])
                out[f"{side}_input"].append(latent.clone())
                if augment and self.augmenter.wants_intensity(rng):
                    to_encode.append((side, i, self.augmenter.intensity(image, mask, int(rng.integers(2**31)))))
            out["mask"].append(torch.from_numpy(mask)[None])
            out["source_onehot"].append(torch.eye(m)[source])
            out["target_onehot"].append(torch.eye(m)[target])
            if augment and self.augmenter.wants_code(rng):
                translate.append((i, self.augmenter.code(rng, m, source)))
        batch = {k: torch.stack(v).to(self.device) for k, v in out.items()}
        if to_encode:  # intensity-augmented patches through the frozen stage-1 encoder
            images = torch.from_numpy(np.stack([image for _, _, image in to_encode]))[:, None].to(self.device)
            latents = self.autoencoder.encode(images)
            for (side, i, _), latent in zip(to_encode, latents):
                batch[f"{side}_input"][i] = latent
        if translate:  # the source translated by the network itself into another (or a random) code
            rows = [i for i, _ in translate]
            codes = torch.from_numpy(np.stack([c for _, c in translate])).to(self.device)
            was_training = self.network.training
            self.network.eval()
            common, _ = self.network.encode_common(batch["source_input"][rows])
            batch["source_input"][rows] = self.network.decode_common(common, codes)
            self.network.train(was_training)
        return batch

    def _losses(self, batch: dict, noise: torch.Tensor,
                generator: torch.Generator | None) -> tuple[torch.Tensor, dict[str, float]]:
        vc, net = self.vc, self.network
        b = len(batch["source_onehot"])
        common, logvar, commitment = net.encode_train(torch.cat([batch["source_input"], batch["target_input"]]))
        q_s, q_t, lv_s, lv_t = common[:b], common[b:], logvar[:b], logvar[b:]
        mean, sample_logvar, _ = common_gaussian(torch.stack([q_s, q_t], 1), torch.stack([lv_s, lv_t], 1))
        sample = reparameterise(mean, sample_logvar, noise.to(self.device))
        codes = torch.cat([batch["source_onehot"], batch["target_onehot"]] * 3)
        predicted = net.decode_common(torch.cat([q_s, q_s, q_t, q_t, sample, sample]), codes)
        truth = torch.cat([batch["source_latent"], batch["target_latent"]] * 3)
        latent_l1 = F.l1_loss(predicted, truth)
        mask = F.avg_pool3d(batch["mask"].float(), self.ds) > 0.5
        consistency_mse = masked_consistency_mse(q_s, q_t, mask)
        contrast = patch_contrastive(q_s, q_t, mask, vc.contrastive_patches, vc.contrastive_temperature, generator)
        nll = 0.5 * (lv_s + (q_t.detach() - q_s.detach()) ** 2 * torch.exp(-lv_s)
                     + lv_t + (q_s.detach() - q_t.detach()) ** 2 * torch.exp(-lv_t)).mean()
        loss = (vc.latent_weight * latent_l1 + vc.consistency_weight * (consistency_mse + contrast)
                + vc.vq_weight * commitment + vc.nll_weight * nll)
        terms = {"latent_l1": latent_l1.item(), "consistency_mse": consistency_mse.item(),
                 "contrastive": contrast.item(), "commitment": commitment.item(), "nll": nll.item()}
        if vc.decodes:
            images = self.autoencoder.decode(predicted)
            truth_images = torch.cat([batch["source_image"], batch["target_image"]] * 3)
            pixel, pixel_terms = self.image_loss(images, truth_images)
            loss = loss + pixel
            terms.update({f"pixel_{k}": v for k, v in pixel_terms.items()})
            if self.perceptual is not None:
                perceptual = self.perceptual(images, truth_images)
                loss = loss + vc.perceptual_weight * perceptual
                terms["perceptual"] = perceptual.item()
        return loss, terms

    def step(self, rng: np.random.Generator) -> dict[str, float]:
        self.network.train()
        batch = self._batch(rng, self.train_cases)
        noise = torch.from_numpy(rng.standard_normal(self._common_shape(batch)).astype(np.float32))
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        loss, terms = self._losses(batch, noise, generator)
        optimizer = self.optimizers["vqseq2seq"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), **terms, "codebook_usage": self.network.quantizer.usage()}

    @torch.no_grad()
    def held_out_loss(self) -> dict[str, float]:
        self.network.eval()
        loss, terms = self._losses(self.held_out, self.held_out_noise, torch.Generator().manual_seed(HELD_OUT_SEED))
        return {"val_loss": loss.item(), **{f"val_{k}": v for k, v in terms.items()}}

    def engine(self):
        return validation_engine("vqseq2seq", self.autoencoder, {"vqseq2seq": (self.network, self.network_config)},
                                 self.device)

    @torch.no_grad()
    def validate(self, final: bool):
        return validate_cases(self.engine(), self.val_cases, self.slots)
