"""The training side of every generative translator kind, in one table (the library's is
:mod:`MRSynthLib.methods.translators.registry`).

Per kind: its settings section (``method.<kind>`` of a training config), its trainer, whether it builds on a
fusion translator, how its bundle's parts are made from the best checkpoint, its citation and card hook.
Everything a kind brings is named here as ``"module:attribute"`` and imported when used, so this table imports
nothing: parsing a config reads only the settings classes (torch-free), and the kind's own modules may live in
any layer. Adding a kind = its own files + one :class:`TrainKind` line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any


def resolve(reference: str) -> Any:
    """The attribute named by ``"package.module:attribute"``."""
    module, _, name = reference.partition(":")
    return getattr(import_module(module), name)


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
    """How ``mrsynth-train`` configures, trains and exports one kind.

    Attributes:
        name: the kind (``method.kind``); bundles of it have method ``<latent>-<name>``.
        settings: ``"module:Class"`` of the ``method.<name>`` section: a frozen dataclass whose module imports no
            torch; a ``network_multiple()`` method, when it has one, says what the kind's own network needs the
            latent patch to be divisible by (else 1).
        trainer: ``"module:Class"``; built as ``Class(config, autoencoder, fusion_or_slots, train, val, device)``
            where the third argument is the frozen fusion translator when ``uses_fusion`` else the slot order.
        export: ``"module:function"``, ``export(config, autoencoder, fusion_or_slots, best) -> KindExport`` from the
            best checkpoint (the third argument as for the trainer).
        citation: the card's citation.
        uses_fusion: the kind builds on a fusion translator (``ldm``: its structure guide).
        deterministic_sampler: the validation protocol samples with DDIM, eta 0, seed 0.
        card: optional ``"module:function"``, ``card(card) -> card`` last changes (units, protocol notes).
        label: the kind's name in comparison tables.
    """

    name: str
    settings: str
    trainer: str
    export: str
    citation: str
    uses_fusion: bool = False
    deterministic_sampler: bool = False
    card: str = ""
    label: str = ""

    def settings_class(self) -> type:
        return resolve(self.settings)

    def trainer_class(self) -> type:
        return resolve(self.trainer)

    def export_parts(self, config, autoencoder, fusion_or_slots, best) -> KindExport:
        return resolve(self.export)(config, autoencoder, fusion_or_slots, best)

    def finish_card(self, card):
        return resolve(self.card)(card) if self.card else card

    def network_multiple(self, config) -> int:
        """What this kind's own network needs the latent patch to be divisible by, under ``config``."""
        section = getattr(config.method, self.name)
        return int(section.network_multiple()) if hasattr(section, "network_multiple") else 1


_SETTINGS = "training.stage2_config"
_EXPORTS = "training.translators.kind_exports"

TRAIN_KINDS: dict[str, TrainKind] = {kind.name: kind for kind in (
    TrainKind("ldm", f"{_SETTINGS}:LDMTrainConfig", "training.translators.stage2_ldm:LDMTrainer", f"{_EXPORTS}:export_ldm",
              "MRSynth latent diffusion: MONAI DiffusionModelUNet denoiser on a frozen shared autoencoder's latents "
              "(after RSF's latent diffusion stage 2), conditioned on the available input latents and structure-guided "
              "by the gated fusion translator's prediction (after MSG-LDM).", uses_fusion=True,
              deterministic_sampler=True, label="latent diffusion"),
    TrainKind("cyclegan", f"{_SETTINGS}:CycleGANTrainConfig", "training.translators.stage2_cyclegan:CycleGANTrainer",
              f"{_EXPORTS}:export_cyclegan",
              "MRSynth latent CycleGAN on a frozen shared autoencoder's latents (RSF's stage-2 CycleGAN baseline).",
              label="latent CycleGAN"),
    TrainKind("targetcode", f"{_SETTINGS}:TargetCodeTrainConfig", "training.translators.stage2_targetcode:TargetCodeTrainer",
              f"{_EXPORTS}:export_targetcode",
              "MRSynth target-code translator: one shared latent translator driven by one-hot target codes "
              "(after VQ-Seq2Seq), inputs combined by predicted precision.", label="target code"),
    TrainKind("vqseq2seq", "training.vqseq2seq_config:VQSeq2SeqTrainConfig",
              "training.translators.stage2_vqseq2seq:VQSeq2SeqTrainer", f"{_EXPORTS}:export_vqseq2seq",
              "VQ-Seq2Seq (Non-Adversarial Learning: Vector-Quantized Common Latent Space for Multi-Sequence MRI, "
              "MICCAI 2024), re-implemented in 3D by MRSynth on a frozen shared autoencoder's latents: dynamic "
              "target-code translator over a VQ common latent, trained from partially paired cases.",
              label="VQ-Seq2Seq"),
    TrainKind("sscf", f"{_SETTINGS}:SSCFTrainConfig", "training.translators.stage2_sscf:SSCFTrainer",
              f"{_EXPORTS}:export_sscf",
              "MRSynth SSCF in latent space: shared encoders with gated fusion, a segmentation branch whose tumour "
              "masks condition synthesis, a FIFO memory bank of multi-contrast features and masks, cross-image "
              "affinity retrieval (CITIM) and AdaIN injection of the nearest prototype (CCP), LSGAN PatchGAN "
              "(after SSCF).", label="SSCF"),
    TrainKind("wldm", f"{_SETTINGS}:WLDMTrainConfig", "training.translators.stage2_wldm:WLDMTrainer",
              "training.translators.stage2_wldm:export_wldm",
              "3D-WLDM (3D wavelet latent diffusion model for MR-to-CT synthesis), re-implemented by MRSynth on a "
              "frozen shared autoencoder's latents: structure/modality latent split with cosine losses and DSCA skip "
              "attention in the latent denoiser.", card="training.translators.stage2_wldm:wldm_card", label="3D-WLDM"),
    TrainKind("msgldm", f"{_SETTINGS}:MSGLDMTrainConfig", "training.translators.stage2_msgldm:MSGLDMTrainer",
              f"{_EXPORTS}:export_msgldm",
              "MSG-LDM (CVPR 2026): multi-scale structure-guided latent diffusion for missing-modality MRI synthesis, "
              "re-implemented in 3D by MRSynth on a frozen shared autoencoder's latents.", deterministic_sampler=True,
              label="MSG-LDM"),
)}


def train_kind(name: str) -> TrainKind:
    """The kind's training spec.

    Raises:
        ValueError: ``name`` is not a registered kind (the message lists them).
    """
    if name not in TRAIN_KINDS:
        raise ValueError(f"method.kind {name!r} is not a generative translator kind: one of {', '.join(TRAIN_KINDS)}")
    return TRAIN_KINDS[name]


__all__ = ["KindExport", "TRAIN_KINDS", "TrainKind", "resolve", "train_kind"]
