"""Stage 2, kind ``sscf``: segmentation-assisted any-subset synthesis with a memory bank (SSCF, in latent space).

Each sample is a random target among the contrasts a case has and a random non-empty subset of the
others as inputs, at a random latent window. One step:

1. encode the inputs (shared encoders + gated fusion), predict the tumour probability, condition on it;
2. retrieve the nearest bank entry by cross-image affinity (CITIM) and take its target-contrast
   prototype; with probability ``self_style_prob`` a sample uses its *own* target's statistics instead
   (the memory encoder learns only through those, the decoder learns to use retrieved ones);
3. region-wise AdaIN of the decoder features with the prototype (CCP), head → target latent;
4. loss = ``latent_weight`` L1(latent) + ``image_weight`` L1(decoded image) + ``segmentation_weight``
   (BCE + soft Dice against the tumour fraction of each latent voxel, only for samples whose case has
   labels; off otherwise) + ``gan.weight`` LSGAN generator term on the decoded image (PatchGAN of
   :class:`training.autoencoder.adversarial.PatchAdversary`, which is updated after the generator);
5. push every sample's multi-contrast memory features (descriptor + per-region statistics of each contrast
   it has, regions from its labels or, without labels, from the predicted mask) and its tumour fraction
   into the FIFO bank, which is saved with the weights.

Validation runs whole volumes through the inference driver and reports the PSNR in the brain and in the
tumour (labels ``tumour_labels``, :func:`MRSynthLib.quality.metrics.psnr`), and the Dice of the predicted mask
on the fixed held-out batch.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from MRSynthLib.networks.autoencoder import LatentAutoencoder
from MRSynthLib.networks.sscf import SSCFTranslator
from MRSynthLib.networks.sscf_adain import region_moments
from MRSynthLib.networks.sscf_memory import top_selection
from training.config import TrainConfig
from training.runtime.distributed import concat_across_ranks
from training.translators.stage2_latents import LatentCase, random_task, random_window, validation_engine

HELD_OUT_SEED = 987_658


def tumour_fraction(labels: np.ndarray, tumour_labels: tuple[int, ...], downsampling: int) -> np.ndarray:
    """``(Z, Y, X)`` label patch → ``(1, z, y, x)`` float32 share of tumour voxels in each latent voxel."""
    tumour = np.isin(labels, tumour_labels).astype(np.float32)
    z, y, x = (n // downsampling for n in tumour.shape)
    blocks = tumour[:z * downsampling, :y * downsampling, :x * downsampling]
    return blocks.reshape(z, downsampling, y, downsampling, x, downsampling).mean(axis=(1, 3, 5))[None]


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor | None:
    """BCE + soft Dice over the samples with labels; None when no sample has labels (the term is off).

    Args:
        logits: ``(B, 1, *s)``; target: ``(B, 1, *s)`` tumour fraction in [0, 1]; labelled: ``(B,)`` bool.
    """
    if not bool(labelled.any()):
        return None
    logits, target = logits[labelled], target[labelled]
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probability = torch.sigmoid(logits).flatten(1)
    truth = target.flatten(1)
    dice = 1.0 - (2.0 * (probability * truth).sum(1) + 1.0) / (probability.sum(1) + truth.sum(1) + 1.0)
    return bce + dice.mean()


def dice_score(probability: torch.Tensor, target: torch.Tensor) -> float:
    """Dice of the thresholded (0.5) prediction and target, pooled over the batch; NaN when both are empty."""
    predicted, truth = probability > 0.5, target > 0.5
    total = predicted.sum() + truth.sum()
    return float("nan") if int(total) == 0 else float(2.0 * (predicted & truth).sum() / total)


class SSCFTrainer:
    """Implements :class:`training.translators.stage2_loop.Trainer` for SSCF (labels from ``LatentCase.labels``)."""

    def __init__(self, config: TrainConfig, autoencoder: LatentAutoencoder, slots: tuple[str, ...],
                 train: list[LatentCase], val: list[LatentCase], device: torch.device = torch.device("cpu")) -> None:
        from training.autoencoder.adversarial import PatchAdversary

        sc = config.method.sscf
        self.network_config = sc.network_for(autoencoder.config, slots)
        self.config, self.sc, self.slots, self.device = config, sc, slots, device
        self.autoencoder = autoencoder.to(device)
        self.network = SSCFTranslator(self.network_config).to(device)
        self.train_cases, self.val_cases = train, val
        self.ds = autoencoder.config.downsampling
        self.patch = tuple(config.stage2.patch_size)
        self.selection = ("val_psnr", 1.0)
        self.modules: dict[str, torch.nn.Module] = {"sscf": self.network}
        self.optimizers = {"sscf": torch.optim.AdamW(self.network.parameters(), lr=config.stage2.lr,
                                                     weight_decay=config.stage2.weight_decay)}
        self.adversary = None
        if sc.gan.enabled:
            self.adversary = PatchAdversary(sc.gan, autoencoder.config.spatial_dims)
            self.adversary.discriminator.to(device)
            self.modules["discriminator"] = self.adversary.discriminator
            self.optimizers["discriminator"] = self.adversary.optimizer
        self.extra: dict[str, float] = {"steps": 0.0}
        self.held_out = self._batch(np.random.default_rng(HELD_OUT_SEED), val)

    def _batch(self, rng: np.random.Generator, cases: list[LatentCase]) -> dict[str, torch.Tensor]:
        m = len(self.slots)
        latents, given, present, target, image, tumour, labelled = [], [], [], [], [], [], []
        for _ in range(self.config.stage2.batch_size):
            case = cases[int(rng.integers(0, len(cases)))]
            goal, inputs = random_task(rng, case.present)
            image_where, where = random_window(case, self.patch, self.ds, self.ds, rng)
            latents.append(case.latents[(slice(None), slice(None)) + where])
            given.append(np.isin(np.arange(m), inputs))
            present.append(np.isin(np.arange(m), case.present))
            target.append(goal)
            image.append(torch.from_numpy(np.ascontiguousarray(case.images[(goal,) + image_where]))[None])
            labels = case.labels
            labelled.append(labels is not None)
            fraction = (tumour_fraction(labels[image_where], self.sc.tumour_labels, self.ds) if labels is not None
                        else np.zeros((1,) + tuple(s.stop - s.start for s in where), np.float32))
            tumour.append(torch.from_numpy(fraction))
        to = self.device
        return {"latents": torch.stack(latents).to(to), "mask": torch.tensor(np.array(given), dtype=torch.float32).to(to),
                "present": torch.tensor(np.array(present), dtype=torch.float32).to(to),
                "target_onehot": torch.eye(m)[target].to(to), "target_index": torch.tensor(target).to(to),
                "image": torch.stack(image).to(to), "tumour": torch.stack(tumour).to(to),
                "labelled": torch.tensor(labelled).to(to)}

    def _forward(self, batch: dict, own_style: torch.Tensor) -> dict[str, torch.Tensor]:
        """Prediction and what the losses and the bank need; ``own_style`` ``(B,)`` 1.0 = the sample's own target statistics."""
        net, b = self.network, batch["latents"].shape[0]
        eye = torch.eye(len(self.slots), device=self.device)
        hidden, weights, tumour, logits, memory = net.encode_parts(batch["latents"], eye, batch["target_onehot"],
                                                                   batch["mask"])
        spatial = tuple(range(3, memory.ndim))
        descriptors = memory.mean(dim=spatial)  # (B, M, H)
        with torch.no_grad():
            affinity = net.retrieve(descriptors, eye, batch["target_onehot"], batch["mask"])
        retrieved_mean, retrieved_std, strength = net.bank.prototype(top_selection(affinity), batch["target_onehot"])
        labelled = batch["labelled"].view(b, 1, *(1,) * len(spatial)).to(tumour.dtype)
        regions = labelled * batch["tumour"] + (1 - labelled) * tumour.detach()  # truth where known, else prediction
        own = memory[torch.arange(b, device=self.device), batch["target_index"]]  # (B, H, *s)
        own_mean, own_std = region_moments(own, regions)
        use = own_style.to(tumour.dtype).view(b, 1, 1)
        mean = use * own_mean + (1 - use) * retrieved_mean
        std = use * own_std + (1 - use) * retrieved_std
        strength = use[:, :, 0] + (1 - use[:, :, 0]) * strength
        latent = net.head_with_style(hidden, tumour, mean, std, strength)
        return {"latent": latent, "logits": logits, "tumour": tumour, "memory": memory, "descriptors": descriptors,
                "regions": regions, "retrieved": (affinity.max(dim=1).values > -1.0).float().mean()}

    def _losses(self, batch: dict, out: dict, adversarial: bool) -> tuple[torch.Tensor, dict[str, float], torch.Tensor | None]:
        sc = self.sc
        latent_l1 = F.l1_loss(out["latent"], batch["latents"][torch.arange(len(out["latent"])), batch["target_index"]])
        loss = sc.latent_weight * latent_l1
        nan = float("nan")  # a term that is off this step (the CSV columns stay the same)
        terms = {"latent_l1": latent_l1.item(), "retrieved": out["retrieved"].item(), "segmentation": nan,
                 "image_l1": nan, "gan_generator": nan}
        segmentation = segmentation_loss(out["logits"], batch["tumour"], batch["labelled"])
        if segmentation is not None:
            loss = loss + sc.segmentation_weight * segmentation
            terms["segmentation"] = segmentation.item()
        fake = None
        if sc.image_weight > 0 or adversarial:
            fake = self.autoencoder.decode(out["latent"])
            image_l1 = F.l1_loss(fake, batch["image"])
            loss = loss + sc.image_weight * image_l1
            terms["image_l1"] = image_l1.item()
        if adversarial:
            generator = self.adversary.generator_loss(fake)
            loss = loss + sc.gan.weight * generator
            terms["gan_generator"] = generator.item()
        return loss, terms, fake

    @torch.no_grad()
    def _remember(self, batch: dict, out: dict) -> None:
        """Push the batch's multi-contrast features, per-region prototypes and tumour fractions into the bank."""
        memory, b, m = out["memory"], *out["memory"].shape[:2]
        regions = out["regions"].repeat_interleave(m, dim=0)
        means, stds = region_moments(memory.flatten(0, 1), regions)
        entries = (out["descriptors"], batch["present"], means.view(b, m, *means.shape[1:]),
                   stds.view(b, m, *stds.shape[1:]), out["regions"].flatten(1).mean(1))
        # under torchrun every replica pushes every rank's entries (rank order), so the banks stay identical
        self.network.bank.push(*(concat_across_ranks(entry.contiguous()) for entry in entries))

    def step(self, rng: np.random.Generator) -> dict[str, float]:
        self.network.train()
        batch = self._batch(rng, self.train_cases)
        own_style = torch.from_numpy(rng.random(len(batch["latents"])) < self.sc.self_style_prob).to(self.device)
        out = self._forward(batch, own_style)
        adversarial = self.adversary is not None and self.adversary.active(int(self.extra["steps"]))
        loss, terms, fake = self._losses(batch, out, adversarial)
        optimizer = self.optimizers["sscf"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        terms["gan_discriminator"] = float("nan")
        if adversarial:
            terms["gan_discriminator"] = self.adversary.discriminator_step(batch["image"], fake)
        self._remember(batch, out)
        self.extra["steps"] += 1
        return {"loss": loss.item(), **terms, "bank": float(self.network.bank.size)}

    @torch.no_grad()
    def held_out_loss(self) -> dict[str, float]:
        """Losses of the fixed held-out batch with retrieved prototypes only (as at inference), no GAN term."""
        self.network.eval()
        out = self._forward(self.held_out, torch.zeros(len(self.held_out["latents"]), device=self.device))
        loss, terms, _ = self._losses(self.held_out, out, adversarial=False)
        del terms["gan_generator"]
        terms["dice"] = dice_score(out["tumour"][self.held_out["labelled"]],
                                   self.held_out["tumour"][self.held_out["labelled"]])
        return {"val_loss": loss.item(), **{f"val_{k}": v for k, v in terms.items()}}

    def engine(self):
        return validation_engine("sscf", self.autoencoder, {"sscf": (self.network, self.network_config)}, self.device)

    @torch.no_grad()
    def validate(self, final: bool):
        """Whole volumes through the inference driver: case ``i`` synthesizes its ``i``-th present contrast
        (cycling) from all its others; PSNR (clipped to [0, 1], data range 1) in the brain and in the tumour."""
        from MRSynthLib.quality.metrics import psnr
        from MRSynthLib.methods.translators.driver import predict_translator

        engine = self.engine()
        brain, tumour, preview = [], [], None
        for index, case in enumerate(self.val_cases):
            goal = case.present[index % len(case.present)]
            inputs = [i for i in case.present if i != goal]
            prediction = predict_translator(engine, case.arrays(self.slots, inputs), self.slots[goal], window=0,
                                            contributions=False)
            crop = tuple(slice(0, n) for n in case.shape)
            truth, synthetic = np.clip(case.images[(goal,) + crop], 0, 1), np.clip(prediction.synthetic, 0, 1)
            brain.append(psnr(truth, synthetic, mask=case.mask[crop], data_range=1.0))
            labels = case.labels
            if labels is not None and np.isin(labels[crop], self.sc.tumour_labels).any():
                tumour.append(psnr(truth, synthetic, mask=np.isin(labels[crop], self.sc.tumour_labels), data_range=1.0))
            if preview is None:
                mid = case.shape[0] // 2
                preview = (truth[mid], synthetic[mid])
        return {"val_psnr": float(np.mean(brain)),
                "val_tumour_psnr": float(np.mean(tumour)) if tumour else float("nan")}, preview


def sscf_example_inputs(graph: str, networks: dict) -> tuple[torch.Tensor, ...]:
    """Small random inputs for tracing an ``sscf_*`` graph (latent 8³, batch 2, two given slots)."""
    config = networks["sscf"]
    b, s, k = 2, (8, 8, 8), 2
    m, h, n, lat = len(config["contrasts"]), int(config["hidden"]), int(config["bank_size"]), int(config["latent_channels"])
    eye = torch.eye(m)
    codes, target, mask = eye[:k], eye[[m - 1] * b], torch.ones(b, k)
    if graph == "sscf_encode":
        return (torch.rand(b, k, lat, *s) * 2 - 1, codes, target, mask)
    if graph == "sscf_retrieve":
        return (torch.randn(b, k, h), codes, target, mask)
    if graph == "sscf_head":
        return (torch.randn(b, h, *s), torch.rand(b, 1, *s), F.one_hot(torch.tensor([0, n - 1]), n).float(), target,
                torch.ones(b, h))
    raise KeyError(graph)
