"""The stage-1 objective: reconstruction, latent regulariser, AFL, SRB and PatchGAN terms, weighted by
the config's ``stage1_loss`` section (see :mod:`training.loss_config` for the formula)."""

from __future__ import annotations

import torch

from MRSynthLib.networks.autoencoder import AutoencoderOutput
from training.autoencoder.adversarial import PatchAdversary
from training.config import TrainConfig
from training.autoencoder.losses import AdaptiveFrequencyLoss, ImageLoss
from training.autoencoder.srb import SemanticAlignment
from training.autoencoder.teachers import FrozenTeacher, load_teacher

REGULARIZER_NAMES = {"fsq": None, "vq": "commitment", "kl": "kl"}


class Stage1Objective:
    """``objective(model, batch, step) -> (loss, terms, output)`` for ``batch`` ``(B, 1, *S)``.

    ``terms`` always has the same keys for a given config (they become metrics.csv columns).
    Trainable parts outside the autoencoder: the SRB projector (:meth:`generator_parameters`, to be
    optimised with the autoencoder) and the discriminator (its own optimiser, :meth:`discriminator_step`).
    With ``torch.distributed``, wrap ``objective.srb.projector`` and ``objective.adversary.discriminator``
    in ``DistributedDataParallel`` like the autoencoder.
    """

    def __init__(self, config: TrainConfig, teacher: FrozenTeacher | None = None) -> None:
        losses, ae = config.stage1_loss, config.autoencoder
        self.config = losses
        self.image_loss = ImageLoss(ae.spatial_dims, config.stage1.ssim_weight, l1_weight=losses.l1_weight)
        self.afl = AdaptiveFrequencyLoss(losses.afl_sigma) if losses.afl_weight > 0 else None
        self.regularizer_name = REGULARIZER_NAMES[ae.latent]
        self.regularizer_weight = {"fsq": 0.0, "vq": losses.commitment_weight, "kl": losses.kl_weight}[ae.latent]
        self.srb: SemanticAlignment | None = None
        if losses.srb.enabled:
            teacher = teacher if teacher is not None else load_teacher(losses.srb.teacher)
            self.srb = SemanticAlignment(teacher, ae.latent_channels, losses.srb.projector_hidden, ae.downsampling)
        self.adversary = PatchAdversary(losses.gan, ae.spatial_dims) if losses.gan.enabled else None

    def to(self, device: torch.device | str) -> Stage1Objective:
        if self.srb is not None:
            self.srb.to(device)
        if self.adversary is not None:
            self.adversary.discriminator.to(device)
        return self

    def generator_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters to optimise together with the autoencoder's (the SRB projector)."""
        return list(self.srb.projector.parameters()) if self.srb is not None else []

    def __call__(self, model, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float], AutoencoderOutput]:
        output: AutoencoderOutput = model(batch)
        recon = output.reconstruction
        loss, terms = self.image_loss(recon, batch)
        if self.regularizer_name is not None:
            loss = loss + self.regularizer_weight * output.regularizer
            terms[self.regularizer_name] = output.regularizer.item()
        teacher_attention = None
        if self.srb is not None:
            srb_loss, teacher_attention = self.srb(output.latent, batch, self.srb.sample_slices(batch))
            loss = loss + self.config.srb.weight * srb_loss
            terms["srb"] = srb_loss.item()
        if self.afl is not None:
            afl = self.afl(recon, batch, teacher_attention)
            loss = loss + self.config.afl_weight * afl
            terms["afl"] = afl.item()
        if self.adversary is not None:
            adversarial = self.adversary.generator_loss(recon) if self.adversary.active(step) else recon.new_zeros(())
            loss = loss + self.config.gan.weight * adversarial
            terms["gan_g"] = adversarial.item()
        network = getattr(model, "module", model)
        if hasattr(network.bottleneck, "usage"):
            terms["codebook_usage"] = network.bottleneck.usage()
        return loss, terms, output

    def discriminator_step(self, batch: torch.Tensor, reconstruction: torch.Tensor, step: int) -> dict[str, float]:
        """Update the discriminator once (after its warm-up); ``{"gan_d": loss}`` when the GAN is on."""
        if self.adversary is None:
            return {}
        if not self.adversary.active(step):
            return {"gan_d": 0.0}
        return {"gan_d": self.adversary.discriminator_step(batch, reconstruction)}

    def state_dict(self) -> dict:
        """Training state outside the autoencoder and its optimiser (for resume; never exported)."""
        state = {}
        if self.srb is not None:
            state["projector"] = getattr(self.srb.projector, "module", self.srb.projector).state_dict()
        if self.adversary is not None:
            state["adversary"] = self.adversary.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.srb is not None and "projector" in state:
            getattr(self.srb.projector, "module", self.srb.projector).load_state_dict(state["projector"])
        if self.adversary is not None and "adversary" in state:
            self.adversary.load_state_dict(state["adversary"])


def central_crop(image: torch.Tensor, max_size: int, multiple: int) -> torch.Tensor:
    """The centre of ``image`` ``(B, C, *S)``: at most ``max_size`` voxels per axis, a multiple of ``multiple``
    (axes already smaller are kept whole)."""
    window = []
    for size in image.shape[2:]:
        keep = size if size <= max_size else max(multiple, max_size // multiple * multiple)
        start = (size - keep) // 2
        window.append(slice(start, start + keep))
    return image[(slice(None), slice(None)) + tuple(window)]


@torch.no_grad()
def measure_latent_scale(model, images: list[torch.Tensor], max_size: int = 128) -> float:
    """``1 / std`` of the unscaled inference latents of ``images`` (each ``(1, 1, *S)``, central crops of at
    most ``max_size`` voxels per axis), pooled over all voxels and channels: the KL latent's scale factor
    (latents of about unit variance)."""
    network = getattr(model, "module", model)
    was_training = network.training
    network.eval()
    multiple = network.config.downsampling
    try:
        values = [network.bottleneck.split(network.encoder(central_crop(image, max_size, multiple)))[0].flatten().double()
                  for image in images]
    finally:
        network.train(was_training)
    std = float(torch.cat(values).std())
    if not std > 0:
        raise ValueError("the training latents are constant, so no scale factor can be measured; train longer")
    return 1.0 / std
