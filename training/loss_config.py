"""Typed configuration of the stage-1 objective (the ``stage1_loss`` section of a training config).

The total stage-1 loss is ``l1_weight * L1 + stage1.ssim_weight * (1 - SSIM) + afl_weight * AFL``
``+ commitment_weight * VQ commitment (vq latent) + kl_weight * KL (kl latent)``
``+ srb.weight * (1 - cos) + gan.weight * adversarial (after gan.start_step)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TeacherConfig:
    """SRB's frozen 2D teacher, from a local file only (nothing is downloaded).

    ``path``: a TorchScript file (``torch.jit.save``) or a ``torch.export`` program (``.pt2``, batch
    dimension dynamic) mapping ``(N, 3, S, S)`` images to ``(N, D)`` embeddings, or to a tuple
    ``(embeddings (N, D), attention maps (N, h, w))``; with ``timm_model``
    set (e.g. ``vit_base_patch16_224.dino``, needs the optional ``timm`` package), ``path`` is that
    model's weight file instead. Slices are scaled to ``input_size`` and normalised with ``mean``/``std``.
    """

    path: str = ""
    timm_model: str = ""
    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SRBConfig:
    """RSF's SRB: a projector maps the latent of a random axial slice to the teacher's embedding of it."""

    enabled: bool = False
    weight: float = 0.5
    projector_hidden: int = 256
    teacher: TeacherConfig = field(default_factory=TeacherConfig)


@dataclass(frozen=True)
class GANConfig:
    """Optional PatchGAN (MONAI ``PatchDiscriminator``, least-squares loss)."""

    enabled: bool = False
    weight: float = 0.1
    start_step: int = 0  # warm-up: reconstruction-only steps before the discriminator and its loss start
    channels: int = 32
    layers: int = 3
    lr: float = 2e-4


@dataclass(frozen=True)
class Stage1LossConfig:
    l1_weight: float = 1.0
    afl_weight: float = 0.0  # RSF's adaptive frequency loss; 0 = off
    afl_sigma: float = 1.0  # Gaussian smoothing (voxels) whose residual is the high-frequency part
    commitment_weight: float = 0.25  # vq latent only
    kl_weight: float = 1e-3  # kl latent only (KL is averaged over latent elements)
    srb: SRBConfig = field(default_factory=SRBConfig)
    gan: GANConfig = field(default_factory=GANConfig)
