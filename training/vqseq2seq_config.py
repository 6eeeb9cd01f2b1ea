"""The ``method.vqseq2seq`` section of a training config (stage-2 kind ``vqseq2seq``, :mod:`training.translators.stage2_vqseq2seq`).

Loss weights follow VQ-Seq2Seq where it states them (pixel L1 x10, SSIM x1, perceptual x0.1); the latent L1,
the common-latent NLL and the augmentation probabilities are MRSynth's choices (see docs/methods/vqseq2seq.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from MRSynthLib.networks.configs.autoencoder import AutoencoderConfig
from MRSynthLib.networks.configs.vqseq2seq import VQSeq2SeqConfig


@dataclass(frozen=True)
class DomainAugmentConfig:
    """Random domain augmentation of the *inputs* of a training pair (targets stay clean).

    ``intensity_probability``: chance that an input image patch is augmented (then each of gamma, Gaussian
    noise and a bias field with probability 1/2, random strengths), the patch being encoded by the frozen
    stage-1 encoder instead of using its cached latent;
    ``code_probability``: chance that a sample's source is replaced by the network's own translation of it
    (no gradient) into another code: a random one-hot contrast, or with ``random_code_probability`` a
    random code vector uniform in [0, 1]^M.
    """

    intensity_probability: float = 0.5  # the paper's code augments half of its inputs
    gamma_range: tuple[float, float] = (0.7, 1.5)
    noise_std: float = 0.03
    bias_coefficients: tuple[float, float] = (0.0, 0.1)
    code_probability: float = 0.2
    random_code_probability: float = 0.5

    def __post_init__(self) -> None:
        for name in ("intensity_probability", "code_probability", "random_code_probability"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], not {value}")


@dataclass(frozen=True)
class VQSeq2SeqTrainConfig:
    """Losses of one training pair ``(s, t)``: both inputs are encoded to common latents ``q_s, q_t``; six
    predictions (``q_s`` and ``q_t`` and a reparameterised sample of their Gaussian, each decoded to ``s``
    and to ``t``) are compared with the true latents (``latent_weight``, L1) and, decoded by the frozen
    stage-1 decoder, with the true images (``pixel_weight`` L1, ``ssim_weight`` 1 - SSIM,
    ``perceptual_weight`` with a local ``perceptual_network``); ``consistency_weight`` (masked MSE + patch
    contrastive between ``q_s`` and ``q_t``), ``vq_weight`` (codebook commitment), ``nll_weight``
    (each sequence's Gaussian explains the other sequence's common latent).
    ``pixel_weight = ssim_weight = perceptual_weight = 0`` skips the decoder (faster, latent losses only).
    """

    network: VQSeq2SeqConfig = field(default_factory=VQSeq2SeqConfig)
    latent_weight: float = 1.0
    pixel_weight: float = 10.0
    ssim_weight: float = 1.0
    perceptual_weight: float = 0.1
    perceptual_network: str = ""  # local TorchScript 2D network (slices -> features); "" = no perceptual loss
    consistency_weight: float = 1.0
    contrastive_patches: int = 64  # foreground latent voxels per sample in the patch contrastive loss
    contrastive_temperature: float = 0.1
    vq_weight: float = 0.25
    nll_weight: float = 0.1
    augmentation: DomainAugmentConfig = field(default_factory=DomainAugmentConfig)

    def __post_init__(self) -> None:
        weights = ("latent_weight", "pixel_weight", "ssim_weight", "perceptual_weight", "consistency_weight",
                   "vq_weight", "nll_weight")
        for name in weights:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        if self.contrastive_patches < 2:
            raise ValueError(f"contrastive_patches must be at least 2, not {self.contrastive_patches}")
        if not self.contrastive_temperature > 0:
            raise ValueError(f"contrastive_temperature must be > 0, not {self.contrastive_temperature}")

    @property
    def decodes(self) -> bool:
        """True when a pixel loss needs the predictions decoded to images."""
        return self.pixel_weight > 0 or self.ssim_weight > 0 or (self.perceptual_weight > 0 and bool(self.perceptual_network))

    def network_for(self, autoencoder: AutoencoderConfig, slots: tuple[str, ...]) -> VQSeq2SeqConfig:
        """The architecture with the autoencoder's latent size (``tanh`` output for FSQ codes) and the slot order."""
        return dataclasses.replace(self.network, spatial_dims=autoencoder.spatial_dims,
                                   latent_channels=autoencoder.latent_channels, contrasts=tuple(slots),
                                   bounded=autoencoder.latent == "fsq")
