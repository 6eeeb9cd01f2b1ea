"""``mrsynth-train stage2`` / ``export`` for the generative translator kinds (``method.kind`` ldm, cyclegan,
targetcode): frozen stage 1 → cached latents → the kind's trainer → a complete bundle.

The fusion kind keeps its own trainer (:mod:`training.stage2`) and exporter (:mod:`training.export`).
"""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path
from typing import Callable

import torch

import MRSynthLib
from training.config import ConfigError, TrainConfig
from training.runs import RunFolder, git_revision
from training.stage2_latents import encode_cases, frozen_autoencoder, frozen_fusion, paired_cases

CITATIONS = {
    "ldm": ("MRSynth latent diffusion: MONAI DiffusionModelUNet denoiser on a frozen shared autoencoder's latents "
            "(after RSF's latent diffusion stage 2), conditioned on the available input latents and structure-guided by "
            "the gated fusion translator's prediction (after MSG-LDM)."),
    "cyclegan": "MRSynth latent CycleGAN on a frozen shared autoencoder's latents (RSF's stage-2 CycleGAN baseline).",
    "targetcode": ("MRSynth target-code translator: one shared latent translator driven by one-hot target codes "
                   "(after VQ-Seq2Seq), inputs combined by predicted precision."),
    "vqseq2seq": ("VQ-Seq2Seq (Non-Adversarial Learning: Vector-Quantized Common Latent Space for Multi-Sequence MRI, "
                  "MICCAI 2024), re-implemented in 3D by MRSynth on a frozen shared autoencoder's latents: dynamic "
                  "target-code translator over a VQ common latent, trained from partially paired cases."),
    "sscf": ("MRSynth SSCF in latent space: shared encoders with gated fusion, a segmentation branch whose tumour "
             "masks condition synthesis, a FIFO memory bank of multi-contrast features and masks, cross-image "
             "affinity retrieval (CITIM) and AdaIN injection of the nearest prototype (CCP), LSGAN PatchGAN "
             "(after SSCF)."),
    "wldm": ("3D-WLDM (3D wavelet latent diffusion model for MR-to-CT synthesis), re-implemented by MRSynth on a "
             "frozen shared autoencoder's latents: structure/modality latent split with cosine losses and DSCA skip "
             "attention in the latent denoiser."),
    "msgldm": ("MSG-LDM (CVPR 2026): multi-scale structure-guided latent diffusion for missing-modality MRI synthesis, "
               "re-implemented in 3D by MRSynth on a frozen shared autoencoder's latents."),
}


def _network_multiple(config: TrainConfig) -> int:
    if config.method.kind == "ldm":
        return config.method.ldm.denoiser.multiple
    if config.method.kind == "wldm":
        return config.method.wldm.denoiser.multiple
    if config.method.kind == "msgldm":
        return config.method.msgldm.network.multiple
    return 1


def _device(config: TrainConfig) -> torch.device:
    from training.distributed import select_device

    return select_device(config.runtime.device)


def _slots(config: TrainConfig, fusion) -> tuple[str, ...]:
    return fusion.config.contrasts if fusion is not None else config.translator.contrasts


def train_method(config: TrainConfig, run: RunFolder, train, val, resume: bool = False, progress: bool = True,
                 train_fusion: Callable[[], torch.nn.Module] | None = None) -> dict:
    """Train the kind's networks on frozen latents of ``train``/``val`` (``training.data.Volume`` lists).

    ``train_fusion`` trains the fusion translator in this run when ``ldm`` needs one and has none.
    Returns the best checkpoint (``modules``, ``step``, the selection score, ``extra``).
    """
    from training.stage2_loop import run_training

    kind = config.method.kind
    device = _device(config)
    autoencoder = frozen_autoencoder(config, run).to(device)
    fusion = None
    if kind == "ldm":
        fusion = frozen_fusion(config, run, train_fusion or (lambda: _train_fusion(config, run, autoencoder, train, val,
                                                                                    progress)))
    slots = _slots(config, fusion)
    multiple = autoencoder.config.downsampling * _network_multiple(config)
    patch = tuple(config.stage2.patch_size)
    if any(p % multiple for p in patch):
        raise ConfigError(f"stage2.patch_size {list(patch)} must be a multiple of {multiple} (autoencoder downsampling "
                          f"x the {kind} network's own multiple) on every axis")
    latent_cache = (Path(config.data.cache_dir).expanduser() if config.data.cache_dir else run.root / "cache") / "latents"
    train_cases = paired_cases(encode_cases(autoencoder, train, slots, multiple, patch, device, latent_cache), "training")
    val_cases = paired_cases(encode_cases(autoencoder, val, slots, multiple, patch, device, latent_cache), "validation")
    torch.manual_seed(config.seed + 2)  # initial weights and dropout masks
    if kind == "ldm":
        from training.stage2_ldm import LDMTrainer

        trainer = LDMTrainer(config, autoencoder, fusion, train_cases, val_cases, device)
    elif kind == "cyclegan":
        from training.stage2_cyclegan import CycleGANTrainer

        trainer = CycleGANTrainer(config, autoencoder, slots, train_cases, val_cases, device)
    elif kind == "targetcode":
        from training.stage2_targetcode import TargetCodeTrainer

        trainer = TargetCodeTrainer(config, autoencoder, slots, train_cases, val_cases, device)
    elif kind == "vqseq2seq":
        from training.stage2_vqseq2seq import VQSeq2SeqTrainer

        trainer = VQSeq2SeqTrainer(config, autoencoder, slots, train_cases, val_cases, device)
    elif kind == "wldm":
        from training.stage2_wldm import WLDMTrainer

        trainer = WLDMTrainer(config, autoencoder, slots, train_cases, val_cases, device)
    elif kind == "msgldm":
        from training.stage2_msgldm import MSGLDMTrainer

        trainer = MSGLDMTrainer(config, autoencoder, slots, train_cases, val_cases, device)
    elif kind == "sscf":
        from training.stage2_sscf import SSCFTrainer

        trainer = SSCFTrainer(config, autoencoder, slots, train_cases, val_cases, device)
    else:
        raise ConfigError(f"method.kind {kind!r} is not a generative translator kind")
    return run_training(trainer, config.stage2, run, config.method.stage, config.seed + 2, resume, progress,
                        description=f"stage2 {kind}", max_minutes=config.method.max_minutes)


def _train_fusion(config: TrainConfig, run: RunFolder, autoencoder, train, val, progress: bool):
    """Train the fusion translator of this run (``stage2``) on the frozen autoencoder, for ``ldm`` to build on."""
    from training.stage2 import train_stage2

    slots = config.translator.contrasts
    paired = [[v for v in volumes if sum(c in v.images for c in slots) >= 2] for volumes in (train, val)]
    return train_stage2(config, run, autoencoder.cpu(), paired[0], paired[1], resume=False, progress=progress)


def _no_fusion(run: RunFolder):
    raise ConfigError(f"{run.root} has no stage2/best.json (the fusion guide of ldm): run `mrsynth-train stage2` first "
                      f"or set method.fusion_from")


def _validation_record(run: RunFolder, stage: str, best_step: int) -> dict:
    """The validation rows of the best checkpoint's step and of the last evaluation (numbers only)."""
    import csv
    import math

    with open(run.root / stage / "validation.csv", newline="") as stream:
        rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(stream)]

    def clean(row: dict) -> dict:
        return {k: (int(v) if k == "step" else v) for k, v in row.items() if not math.isnan(v)}

    best = next((r for r in rows if int(r["step"]) == best_step), rows[-1])
    return {"best": clean(best), "last": clean(rows[-1])}


def export_method(config: TrainConfig, run: RunFolder, output: Path, overwrite: bool = False) -> Path:
    """Write the kind's bundle (safetensors, ONNX graphs, card) from the run's best checkpoint."""
    from MRSynthLib.bundle import ModelCard
    from MRSynthLib.contrasts import MR_CONTRASTS
    from MRSynthLib.errors import MRSynthError
    from MRSynthLib.networks.cyclegan import LatentGenerator
    from MRSynthLib.networks.denoiser import LatentDenoiser
    from MRSynthLib.networks.targetcode import TargetCodeTranslator
    from training.data import training_data_record
    from training.data_split import recorded_split
    from training.stage2_bundle import write_translator_bundle

    kind, stage = config.method.kind, config.method.stage
    best = run.load_checkpoint(stage, "best")
    if best is None:
        raise ConfigError(f"{run.root} has no {stage}/best.json: run `mrsynth-train stage2 --config ...` first")
    autoencoder = frozen_autoencoder(config, run)
    parts: dict[str, torch.nn.Module] = {"autoencoder": autoencoder}
    networks: dict = {"autoencoder": autoencoder.config.to_dict()}
    if kind == "ldm":
        fusion = frozen_fusion(config, run, lambda: _no_fusion(run))
        slots = fusion.config.contrasts
        denoiser = LatentDenoiser(config.method.ldm.denoiser_for(autoencoder.config, slots))
        denoiser.load_state_dict(best["modules"]["denoiser"])
        sampling = config.method.ldm.sampling
        sampling = type(sampling)(**{**sampling.to_dict(), "latent_scale": float(best["extra"]["latent_scale"])})
        parts.update(translator=fusion, denoiser=denoiser)
        networks.update(translator=fusion.config.to_dict(), denoiser=denoiser.config.to_dict(), diffusion=sampling.to_dict())
        inputs = outputs = tuple(c for c in slots if c in MR_CONTRASTS)
    elif kind == "cyclegan":
        generator = LatentGenerator(config.method.cyclegan.generator_for(autoencoder.config))
        generator.load_state_dict(best["modules"]["generator"])
        parts["generator"] = generator
        networks["generator"] = generator.config.to_dict()
        inputs, outputs = (generator.config.source,), (generator.config.target,)
    elif kind == "targetcode":
        slots = config.translator.contrasts
        network = TargetCodeTranslator(config.method.targetcode.network_for(autoencoder.config, slots))
        network.load_state_dict(best["modules"]["targetcode"])
        parts["targetcode"] = network
        networks["targetcode"] = network.config.to_dict()
        inputs = outputs = tuple(c for c in slots if c in MR_CONTRASTS)
    elif kind == "vqseq2seq":
        from MRSynthLib.networks.vqseq2seq import VQSeq2SeqTranslator

        slots = config.translator.contrasts
        network = VQSeq2SeqTranslator(config.method.vqseq2seq.network_for(autoencoder.config, slots))
        network.load_state_dict(best["modules"]["vqseq2seq"])
        parts["vqseq2seq"] = network
        networks["vqseq2seq"] = network.config.to_dict()
        inputs = outputs = tuple(c for c in slots if c in MR_CONTRASTS)
    elif kind == "wldm":
        from training.stage2_wldm import wldm_parts

        slots = config.translator.contrasts
        inputs, outputs, wldm_networks, wldm_modules = wldm_parts(config, autoencoder, slots, best)
        parts.update(wldm_modules)
        networks.update(wldm_networks)
    elif kind == "msgldm":
        from MRSynthLib.networks.msgldm import MSGLDM

        slots = config.translator.contrasts
        network = MSGLDM(config.method.msgldm.network_for(autoencoder.config, slots))
        network.load_state_dict(best["modules"]["msgldm"])
        sampling = config.method.msgldm.sampling
        sampling = type(sampling)(**{**sampling.to_dict(), "latent_scale": float(best["extra"]["latent_scale"])})
        parts["msgldm"] = network
        networks.update(msgldm=network.config.to_dict(), diffusion=sampling.to_dict())
        inputs = outputs = tuple(c for c in slots if c in MR_CONTRASTS)
    elif kind == "sscf":
        from MRSynthLib.networks.sscf import SSCFTranslator

        slots = config.translator.contrasts
        network = SSCFTranslator(config.method.sscf.network_for(autoencoder.config, slots))
        network.load_state_dict(best["modules"]["sscf"])
        parts["sscf"] = network
        networks["sscf"] = network.config.to_dict()
        inputs = outputs = tuple(c for c in slots if c in MR_CONTRASTS)
    else:
        raise ConfigError(f"method.kind {kind!r} is not a generative translator kind")
    card = ModelCard(
        name=config.name, version=config.version, method=f"{autoencoder.config.latent}-{kind}",
        description=config.description, input_contrasts=inputs, output_contrasts=outputs,
        preprocessing=config.preprocessing, networks=networks, weights={},
        training_data={**training_data_record(config, recorded_split(run.root / "split.json")),
                       "stage1": (f"frozen autoencoder of bundle {config.method.stage1_from}" if config.method.stage1_from
                                  else f"this run's stage 1 ({config.stage1.steps} steps)"),
                       "stage2_steps": config.stage2.steps},
        validation={"protocol": ("held-out volumes, model space, brain mask, normalised units clipped to [0, 1], PSNR "
                                 "with data range 1, whole volumes through the inference driver; "
                                 + ("cyclegan: its source -> target" if kind == "cyclegan" else
                                    "case i synthesizes its i-th contrast from all its others")
                                 + ("; DDIM, eta 0, seed 0" if kind in ("ldm", "msgldm") else "")),
                    "translator": _validation_record(run, stage, int(best.get("step", -1)))},
        provenance={"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "trained_by": "mrsynth-train (training/ package of this repository)", "git": git_revision(),
                    "config": config.to_dict(), "mrsynth_version": MRSynthLib.__version__,
                    "torch_version": torch.__version__, "python": platform.python_version(),
                    "stage2_best_step": best.get("step")},
        citation=CITATIONS[kind],
        **config.card_licence(),
    )
    if kind == "wldm":
        from training.stage2_wldm import wldm_card

        card = wldm_card(card)
    try:
        return write_translator_bundle(Path(output), card, parts, overwrite=overwrite)
    except MRSynthError as error:
        raise SystemExit(f"mrsynth-train: {error}") from None
