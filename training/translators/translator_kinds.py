"""The training side of every generative translator kind, in one table (the library's is
:mod:`MRSynthLib.methods.translators.registry`).

Per kind: its trainer (``"module:Class"``, imported when used), whether it builds on a fusion translator, the
multiple its own network needs on top of the autoencoder's downsampling, how its bundle's parts are made from
the best checkpoint, its citation and card hooks. :mod:`training.translators.stage2_methods` reads it for
``mrsynth-train stage2`` / ``export``; adding a kind = its trainer module + one :class:`TrainKind` line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable

from training.config import TrainConfig


@dataclass
class KindExport:
    """What a kind adds to its bundle: network modules and card entries (besides the autoencoder), and the
    contrasts the bundle takes and gives."""

    parts: dict
    networks: dict
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class TrainKind:
    """How ``mrsynth-train`` trains and exports one kind.

    Attributes:
        trainer: ``"module:Class"``; built as ``Class(config, autoencoder, fusion_or_slots, train, val, device)``
            where the third argument is the frozen fusion translator when ``uses_fusion`` else the slot order.
        uses_fusion: the kind builds on a fusion translator (``ldm``: its structure guide).
        network_multiple: ``network_multiple(config)``: what the kind's own network needs the latent patch to
            be divisible by (1 = nothing).
        export: ``export(config, autoencoder, fusion_or_slots, best) -> KindExport`` from the best checkpoint (the
            third argument as for the trainer).
        citation: the card's citation.
        deterministic_sampler: the validation protocol samples with DDIM, eta 0, seed 0.
        card: optional ``card(card) -> card`` last changes (units, protocol notes).
    """

    name: str
    trainer: str
    uses_fusion: bool
    network_multiple: Callable[[TrainConfig], int]
    export: Callable
    citation: str
    deterministic_sampler: bool = False
    card: Callable | None = None

    def trainer_class(self) -> type:
        module, _, name = self.trainer.partition(":")
        return getattr(import_module(module), name)


def _mr(slots) -> tuple[str, ...]:
    from MRSynthLib.contrasts import MR_CONTRASTS

    return tuple(c for c in slots if c in MR_CONTRASTS)


def _with_latent_scale(sampling, best: dict):
    return type(sampling)(**{**sampling.to_dict(), "latent_scale": float(best["extra"]["latent_scale"])})


def _export_ldm(config, autoencoder, fusion, best) -> KindExport:
    from MRSynthLib.networks.denoiser import LatentDenoiser

    slots = fusion.config.contrasts
    denoiser = LatentDenoiser(config.method.ldm.denoiser_for(autoencoder.config, slots))
    denoiser.load_state_dict(best["modules"]["denoiser"])
    sampling = _with_latent_scale(config.method.ldm.sampling, best)
    return KindExport({"translator": fusion, "denoiser": denoiser},
                      {"translator": fusion.config.to_dict(), "denoiser": denoiser.config.to_dict(),
                       "diffusion": sampling.to_dict()}, _mr(slots), _mr(slots))


def _export_cyclegan(config, autoencoder, slots, best) -> KindExport:
    from MRSynthLib.networks.cyclegan import LatentGenerator

    generator = LatentGenerator(config.method.cyclegan.generator_for(autoencoder.config))
    generator.load_state_dict(best["modules"]["generator"])
    return KindExport({"generator": generator}, {"generator": generator.config.to_dict()},
                      (generator.config.source,), (generator.config.target,))


def _single_network(part: str, network: str, settings: str) -> Callable:
    """Export of a kind with one network part ``part`` (class ``"module:Class"``) whose config comes from
    ``config.method.<settings>.network_for(autoencoder_config, slots)``."""

    def export(config, autoencoder, slots, best) -> KindExport:
        module, _, name = network.partition(":")
        network_class = getattr(import_module(module), name)
        trained = network_class(getattr(config.method, settings).network_for(autoencoder.config, slots))
        trained.load_state_dict(best["modules"][part])
        return KindExport({part: trained}, {part: trained.config.to_dict()}, _mr(slots), _mr(slots))

    return export


def _export_msgldm(config, autoencoder, slots, best) -> KindExport:
    exported = _single_network("msgldm", "MRSynthLib.networks.msgldm:MSGLDM", "msgldm")(config, autoencoder, slots, best)
    exported.networks["diffusion"] = _with_latent_scale(config.method.msgldm.sampling, best).to_dict()
    return exported


def _export_wldm(config, autoencoder, slots, best) -> KindExport:
    from training.translators.stage2_wldm import wldm_parts

    inputs, outputs, networks, modules = wldm_parts(config, autoencoder, slots, best)
    return KindExport(modules, networks, inputs, outputs)


def _wldm_card(card):
    from training.translators.stage2_wldm import wldm_card

    return wldm_card(card)


TRAIN_KINDS: dict[str, TrainKind] = {kind.name: kind for kind in (
    TrainKind("ldm", "training.translators.stage2_ldm:LDMTrainer", True, lambda c: c.method.ldm.denoiser.multiple, _export_ldm,
              "MRSynth latent diffusion: MONAI DiffusionModelUNet denoiser on a frozen shared autoencoder's latents "
              "(after RSF's latent diffusion stage 2), conditioned on the available input latents and structure-guided "
              "by the gated fusion translator's prediction (after MSG-LDM).", deterministic_sampler=True),
    TrainKind("cyclegan", "training.translators.stage2_cyclegan:CycleGANTrainer", False, lambda c: 1, _export_cyclegan,
              "MRSynth latent CycleGAN on a frozen shared autoencoder's latents (RSF's stage-2 CycleGAN baseline)."),
    TrainKind("targetcode", "training.translators.stage2_targetcode:TargetCodeTrainer", False, lambda c: 1,
              _single_network("targetcode", "MRSynthLib.networks.targetcode:TargetCodeTranslator", "targetcode"),
              "MRSynth target-code translator: one shared latent translator driven by one-hot target codes "
              "(after VQ-Seq2Seq), inputs combined by predicted precision."),
    TrainKind("vqseq2seq", "training.translators.stage2_vqseq2seq:VQSeq2SeqTrainer", False, lambda c: 1,
              _single_network("vqseq2seq", "MRSynthLib.networks.vqseq2seq:VQSeq2SeqTranslator", "vqseq2seq"),
              "VQ-Seq2Seq (Non-Adversarial Learning: Vector-Quantized Common Latent Space for Multi-Sequence MRI, "
              "MICCAI 2024), re-implemented in 3D by MRSynth on a frozen shared autoencoder's latents: dynamic "
              "target-code translator over a VQ common latent, trained from partially paired cases."),
    TrainKind("sscf", "training.translators.stage2_sscf:SSCFTrainer", False, lambda c: 1,
              _single_network("sscf", "MRSynthLib.networks.sscf:SSCFTranslator", "sscf"),
              "MRSynth SSCF in latent space: shared encoders with gated fusion, a segmentation branch whose tumour "
              "masks condition synthesis, a FIFO memory bank of multi-contrast features and masks, cross-image "
              "affinity retrieval (CITIM) and AdaIN injection of the nearest prototype (CCP), LSGAN PatchGAN "
              "(after SSCF)."),
    TrainKind("wldm", "training.translators.stage2_wldm:WLDMTrainer", False, lambda c: c.method.wldm.denoiser.multiple,
              _export_wldm,
              "3D-WLDM (3D wavelet latent diffusion model for MR-to-CT synthesis), re-implemented by MRSynth on a "
              "frozen shared autoencoder's latents: structure/modality latent split with cosine losses and DSCA skip "
              "attention in the latent denoiser.", card=_wldm_card),
    TrainKind("msgldm", "training.translators.stage2_msgldm:MSGLDMTrainer", False, lambda c: c.method.msgldm.network.multiple,
              _export_msgldm,
              "MSG-LDM (CVPR 2026): multi-scale structure-guided latent diffusion for missing-modality MRI synthesis, "
              "re-implemented in 3D by MRSynth on a frozen shared autoencoder's latents.", deterministic_sampler=True),
)}

def train_kind(name: str) -> TrainKind:
    """The kind's training spec, or a clear error."""
    from training.config import ConfigError

    if name not in TRAIN_KINDS:
        raise ConfigError(f"method.kind {name!r} is not a generative translator kind: one of {', '.join(TRAIN_KINDS)}")
    return TRAIN_KINDS[name]


__all__ = ["KindExport", "TRAIN_KINDS", "TrainKind", "train_kind"]
