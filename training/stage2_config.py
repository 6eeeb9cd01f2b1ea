"""The ``method`` section of a training config: which stage-2 translator kind to train, and how.

``kind``: ``fusion`` (the any-subset gated fusion translator, :mod:`training.translators.stage2`), ``ldm`` (latent
diffusion guided by a fusion translator), ``cyclegan`` (unpaired, one source → one target) or
``targetcode`` (one shared translator with a one-hot target code). The bundle's method is
``<autoencoder latent>-<kind>``, e.g. ``fsq-ldm``.

``stage1_from`` names a bundle (built-in name or folder) whose autoencoder is used frozen instead of
this run's stage 1; ``fusion_from`` (``ldm`` only) names a bundle whose fusion translator provides the
structure guide instead of training one in this run first. The networks' ``latent_channels``,
``spatial_dims`` and slot order (``contrasts``) always follow the autoencoder and ``translator.contrasts``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from MRSynthLib.networks.configs.autoencoder import AutoencoderConfig
from MRSynthLib.networks.configs.cyclegan import GeneratorConfig
from MRSynthLib.networks.configs.denoiser import DenoiserConfig
from MRSynthLib.networks.configs.sscf import SSCFConfig
from MRSynthLib.networks.configs.msgldm import MSGLDMConfig
from MRSynthLib.networks.configs.targetcode import TargetCodeConfig
from MRSynthLib.networks.configs.wldm import WLDMDenoiserConfig
from MRSynthLib.methods.translators.samplers import SamplingConfig
from training.kinds import TRAIN_KINDS
from training.loss_config import GANConfig

KINDS = ("fusion", *TRAIN_KINDS)


@dataclass(frozen=True)
class LDMTrainConfig:
    """Latent diffusion: the denoiser architecture, the noise path and the default sampler.

    ``sampling.schedule``: ``cosine`` = DDPM (continuous-time, variance preserving) with v-prediction;
    ``linear`` = rectified flow. ``sampling.latent_scale`` is measured on the training latents (1 / std)
    when ``measure_latent_scale`` is on. Validation samples with ``validation_steps`` DDIM steps.
    """

    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    measure_latent_scale: bool = True
    validation_steps: int = 10
    batch_reuse: int = 1  # steps per drawn batch (fresh t and noise each step); the fusion guide is costly

    def __post_init__(self) -> None:
        if self.batch_reuse < 1:
            raise ValueError(f"batch_reuse must be at least 1, not {self.batch_reuse}")

    def network_multiple(self) -> int:
        return self.denoiser.multiple

    def denoiser_for(self, autoencoder: AutoencoderConfig, slots: tuple[str, ...]) -> DenoiserConfig:
        """The denoiser's architecture with the latent size and slot order of the networks it works with."""
        return dataclasses.replace(self.denoiser, spatial_dims=autoencoder.spatial_dims,
                                   latent_channels=autoencoder.latent_channels, contrasts=tuple(slots))


@dataclass(frozen=True)
class CycleGANTrainConfig:
    """Latent CycleGAN: LSGAN + cycle + identity losses; ``instance_noise`` (std) is added to real and
    fake latents before the critics, so quantised real codes cannot be told from continuous fakes by
    their rounding alone."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator_channels: int = 32
    discriminator_layers: int = 2
    adversarial_weight: float = 1.0
    cycle_weight: float = 10.0
    identity_weight: float = 5.0
    instance_noise: float = 0.1
    discriminator_lr: float = 0.0  # 0 = stage2.lr

    def generator_for(self, autoencoder: AutoencoderConfig) -> GeneratorConfig:
        return dataclasses.replace(self.generator, spatial_dims=autoencoder.spatial_dims,
                                   latent_channels=autoencoder.latent_channels)

    def __post_init__(self) -> None:
        if self.generator.source == self.generator.target:
            raise ValueError(f"generator.source and generator.target must differ, not both {self.generator.source!r}")


@dataclass(frozen=True)
class TargetCodeTrainConfig:
    """Target-code translator: Gaussian negative log-likelihood of the target latent (mean and
    log-variance) on random (source, target) pairs, plus L1 of the decoded mean image."""

    network: TargetCodeConfig = field(default_factory=TargetCodeConfig)
    nll_weight: float = 1.0
    image_weight: float = 1.0

    def network_for(self, autoencoder: AutoencoderConfig, slots: tuple[str, ...]) -> TargetCodeConfig:
        return dataclasses.replace(self.network, spatial_dims=autoencoder.spatial_dims,
                                   latent_channels=autoencoder.latent_channels, contrasts=tuple(slots))


@dataclass(frozen=True)
class MSGLDMTrainConfig:
    """MSG-LDM: the network, the noise path and sampler, and the weights of its losses (added to the
    diffusion loss). ``seg_labels``: label values that are segmentation classes (1..K; every other value,
    and cases without labels, contribute nothing but background / no loss); ``temperature`` of the style
    contrastive loss. ``sampling.latent_scale`` is measured on the training latents when
    ``measure_latent_scale`` is on."""

    network: MSGLDMConfig = field(default_factory=MSGLDMConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    seg_labels: tuple[int, ...] = (1, 2, 4)
    seg_weight: float = 1.0
    style_weight: float = 0.1
    structure_weight: float = 0.1
    temperature: float = 0.1
    measure_latent_scale: bool = True
    validation_steps: int = 10

    def __post_init__(self) -> None:
        if not self.seg_labels or 0 in self.seg_labels:
            raise ValueError(f"seg_labels must list label values other than 0 (background), not {list(self.seg_labels)}")
        if min(self.seg_weight, self.style_weight, self.structure_weight) < 0 or self.temperature <= 0:
            raise ValueError("seg_weight, style_weight and structure_weight must be >= 0 and temperature > 0")

    def network_multiple(self) -> int:
        return self.network.multiple

    def network_for(self, autoencoder: AutoencoderConfig, slots: tuple[str, ...]) -> MSGLDMConfig:
        return dataclasses.replace(self.network, spatial_dims=autoencoder.spatial_dims,
                                   latent_channels=autoencoder.latent_channels, contrasts=tuple(slots),
                                   seg_classes=len(self.seg_labels) + 1)


@dataclass(frozen=True)
class SSCFTrainConfig:
    """SSCF (segmentation-assisted synthesis with memory retrieval): latent L1, image L1 of the decoded
    prediction, segmentation (BCE + soft Dice on the tumour fraction of each latent voxel, only for cases
    with labels; ``tumour_labels`` are the label values counted as tumour: phantom 4/5/6, BraTS 1/2/4) and
    the least-squares PatchGAN on decoded images (``gan``, :class:`training.autoencoder.adversarial.PatchAdversary`).
    ``self_style_prob``: share of samples whose AdaIN statistics come from their own target (so the memory
    encoder learns) instead of the retrieved prototype."""

    network: SSCFConfig = field(default_factory=SSCFConfig)
    latent_weight: float = 1.0
    image_weight: float = 1.0
    segmentation_weight: float = 1.0
    tumour_labels: tuple[int, ...] = (4, 5, 6)
    self_style_prob: float = 0.5
    gan: GANConfig = field(default_factory=lambda: GANConfig(enabled=True, weight=0.05, channels=16, layers=2))

    def __post_init__(self) -> None:
        if not 0.0 <= self.self_style_prob <= 1.0:
            raise ValueError(f"self_style_prob must be in [0, 1], not {self.self_style_prob}")
        if not self.tumour_labels:
            raise ValueError("tumour_labels must name at least one label value (phantom: [4, 5, 6], BraTS: [1, 2, 4])")

    def network_for(self, autoencoder: AutoencoderConfig, slots: tuple[str, ...]) -> SSCFConfig:
        return dataclasses.replace(self.network, spatial_dims=autoencoder.spatial_dims,
                                   latent_channels=autoencoder.latent_channels, contrasts=tuple(slots))


@dataclass(frozen=True)
class WLDMTrainConfig:
    """3D-WLDM: latent diffusion with the structure/modality latent split and DSCA skip attention
    (:mod:`training.translators.stage2_wldm`).

    ``sources`` / ``targets``: the contrasts a task may take as inputs / synthesize (empty: every MR slot of
    ``translator.contrasts`` / every slot), e.g. sources ``[t1, t2, flair]`` and targets ``[ct]`` for MR→CT.
    The split head is trained with ``structure_weight`` and ``modality_weight`` times the cosine losses and
    ``merge_weight`` times the latent reconstruction error of its merge; the denoiser with the velocity MSE.
    """

    denoiser: WLDMDenoiserConfig = field(default_factory=WLDMDenoiserConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    sources: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    structure_weight: float = 1.0
    modality_weight: float = 1.0
    merge_weight: float = 1.0
    measure_latent_scale: bool = True
    validation_steps: int = 10

    def slots_for(self, slots: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(sources, targets)`` among ``slots`` (defaults filled in).

        Raises:
            ValueError: a named contrast is not a slot, or no source/target is left.
        """
        from MRSynthLib.contrasts import MR_CONTRASTS

        for name, chosen in (("sources", self.sources), ("targets", self.targets)):
            missing = [c for c in chosen if c not in slots]
            if missing:
                raise ValueError(f"method.wldm.{name} {missing} must be among translator.contrasts {list(slots)}")
        sources = self.sources or tuple(c for c in slots if c in MR_CONTRASTS)
        targets = self.targets or tuple(slots)
        if not sources or not targets or (len(targets) == 1 and set(sources) == set(targets)):
            raise ValueError(f"method.wldm needs source and target contrasts that differ, not sources {list(sources)} "
                             f"and targets {list(targets)}")
        return sources, targets

    def network_multiple(self) -> int:
        return self.denoiser.multiple

    def denoiser_for(self, autoencoder: AutoencoderConfig, slots: tuple[str, ...]) -> WLDMDenoiserConfig:
        return dataclasses.replace(self.denoiser, spatial_dims=autoencoder.spatial_dims,
                                   latent_channels=autoencoder.latent_channels, contrasts=tuple(slots))


def default_sections() -> tuple[tuple[str, Any], ...]:
    """``((kind, its default settings), ...)`` for every kind of :data:`training.kinds.TRAIN_KINDS`, in its order."""
    return tuple((name, kind.settings_class()()) for name, kind in TRAIN_KINDS.items())


@dataclass(frozen=True)
class MethodConfig:
    """The ``method`` section: the kind, where its frozen parts come from, and every kind's settings section.

    ``sections``: ``((kind, settings), ...)`` for every registered kind in registry order (defaults where the
    config gives none); ``config.method.<kind>`` reads one. YAML: ``method: {kind: ldm, ldm: {...}}``.
    """

    kind: str = "fusion"
    stage1_from: str = ""
    fusion_from: str = ""
    max_minutes: float = 0.0  # > 0: also stop the kind's training at this wall-clock budget (not used by fusion)
    sections: tuple[tuple[str, Any], ...] = field(default_factory=default_sections)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.fusion_from and self.kind != "ldm":
            raise ValueError(f"fusion_from is only used by kind ldm, not {self.kind!r}: remove it")

    def __getattr__(self, name: str) -> Any:
        for kind, settings in self.__dict__.get("sections", ()):
            if kind == name:
                return settings
        raise AttributeError(f"MethodConfig has no attribute or kind section {name!r}")

    @classmethod
    def from_mapping(cls, data: dict, where: str, build: Callable[[type, dict, str], Any]) -> MethodConfig:
        """Parse a ``method`` mapping: its own keys, plus one settings section per kind (built by ``build``)."""
        own = {f.name for f in dataclasses.fields(cls)} - {"sections"}
        unknown = sorted(set(data) - own - set(TRAIN_KINDS))
        if unknown:
            raise ValueError(f"{where} has unknown keys {unknown}: allowed keys are {sorted(own | set(TRAIN_KINDS))}")
        sections = tuple((name, build(kind.settings_class(), data[name], f"{where}.{name}") if name in data
                          else kind.settings_class()()) for name, kind in TRAIN_KINDS.items())
        return build(cls, {k: v for k, v in data.items() if k in own}, where, sections=sections)

    def to_dict(self) -> dict:
        """Plain values: the own keys, then one mapping per kind section."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "sections"}
        out.update({name: dataclasses.asdict(settings) for name, settings in self.sections})
        return out

    @property
    def stage(self) -> str:
        """The run-folder stage of this kind's translator."""
        return "stage2" if self.kind == "fusion" else f"stage2_{self.kind}"
