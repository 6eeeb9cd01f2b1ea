"""Export a finished run as a model bundle (safetensors + ``bundle.json`` card)."""

from __future__ import annotations

import csv
import datetime as dt
import platform
from pathlib import Path

import torch

import MRSynthLib
from MRSynthLib.files.atomic import staged_folder
from MRSynthLib.models.bundle import ModelCard, sha256_file, write_card
from MRSynthLib.contrasts import MR_CONTRASTS
from training.autoencoder.stage1 import exported_autoencoder_config
from training.config import TrainConfig
from training.inputs.data import training_data_record
from training.inputs.data_split import recorded_split
from training.runtime.runs import RunFolder, git_revision

LATENT_NAMES = {"fsq": "FSQ", "vq": "VQ (EMA codebook)", "kl": "KL (Gaussian)"}


def citation(config: TrainConfig) -> str:
    """Which published methods the exported networks follow."""
    ae = config.autoencoder
    parts = [f"MRSynth {ae.latent}-fusion: {LATENT_NAMES[ae.latent]} latent autoencoder (after RSF, "
             "'Recover Semantics First, Generate Better'"]
    rsf = [name for name, on in (("LHE", ae.lhe.enabled), ("SRB", config.stage1_loss.srb.enabled),
                                 ("AFL", config.stage1_loss.afl_weight > 0)) if on]
    parts.append(f", with its {', '.join(rsf)})" if rsf else ")")
    if ae.wavelet:
        parts.append(", 3D-WLDM wavelet residual blocks")
    if ae.hfib:
        parts.append(", MSG-LDM high-frequency injection blocks")
    parts.append(", with MSG-LDM-style gated any-subset fusion in latent space.")
    return "".join(parts)


def _best_row(path: Path) -> dict:
    if not path.exists():
        return {}
    with open(path, newline="") as stream:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(stream)]
    if not rows:
        return {}
    best = max(rows, key=lambda r: r["val_psnr"])
    best["step"] = int(best["step"])
    return best


def stage1_summary(config: TrainConfig) -> dict:
    """The stage-1 choices a reader of the card needs: latent kind and every RSF / wavelet / HFIB switch."""
    ae, losses = config.autoencoder, config.stage1_loss
    return {
        "latent": ae.latent,
        "lhe": ae.lhe.enabled,
        "wavelet": ae.wavelet,
        "hfib": ae.hfib,
        "afl_weight": losses.afl_weight,
        "srb": ({"weight": losses.srb.weight, "teacher": losses.srb.teacher.timm_model or Path(losses.srb.teacher.path).name}
                if losses.srb.enabled else False),
        "patchgan": ({"weight": losses.gan.weight, "start_step": losses.gan.start_step} if losses.gan.enabled else False),
        "ssim_weight": config.stage1.ssim_weight,
    }


def _stage1_origin(run: RunFolder) -> dict:
    """``{"stage1_origin": ...}`` when stage 1 was taken from another bundle (``training.autoencoder.seed_stage1``), else ``{}``."""
    import json

    path = run.root / "stage1" / "origin.json"
    return {"stage1_origin": json.loads(path.read_text(encoding="utf-8"))} if path.exists() else {}


def export_bundle(config: TrainConfig, run: RunFolder, output: Path, overwrite: bool = False) -> Path:
    """Write ``output/`` (a bundle folder) from the run's best stage-1 and stage-2 weights.

    The folder is assembled in a temporary sibling and renamed into place, so a failed export
    never leaves a half-written bundle.
    """
    from safetensors.torch import save_file

    output = Path(output)
    if output.exists() and not overwrite:
        raise SystemExit(f"Bundle folder {output} already exists: pass --overwrite to replace it.")
    states = {}
    for stage in ("stage1", "stage2"):
        state = run.load_checkpoint(stage, "best")
        if state is None:
            raise SystemExit(f"Run {run.root} has no {stage}/best.json: run `mrsynth-train {stage}` first.")
        states[stage] = state
    with staged_folder(output) as staging:  # the old bundle stays whole until the new one is complete
        weights = {}
        for stage, file_name in (("stage1", "autoencoder.safetensors"), ("stage2", "translator.safetensors")):
            tensors = {k: v.contiguous() for k, v in states[stage]["model"].items()}
            save_file(tensors, str(staging / file_name), metadata={"format": "pt"})
            weights[file_name] = sha256_file(staging / file_name)
        stage1_val = _best_row(run.root / "stage1" / "validation.csv")
        stage2_val = _best_row(run.root / "stage2" / "validation.csv")
        card = ModelCard(
            name=config.name,
            version=config.version,
            method=f"{config.autoencoder.latent}-fusion",
            description=config.description,
            input_contrasts=tuple(c for c in config.translator.contrasts if c in MR_CONTRASTS),
            output_contrasts=tuple(c for c in config.translator.contrasts if c in MR_CONTRASTS),
            preprocessing=config.preprocessing,
            networks={"autoencoder": exported_autoencoder_config(config.autoencoder, states["stage1"]["model"]).to_dict(),
                      "translator": config.translator.to_dict()},
            weights=weights,
            training_data={
                **training_data_record(config, recorded_split(run.root / "split.json")),
                "stage1_steps": config.stage1.steps,
                "stage1": stage1_summary(config),
                "stage2_steps": config.stage2.steps,
                **_stage1_origin(run),
            },
            validation={
                "protocol": (
                    "the validation cases of the run's split (phantoms: seeds disjoint from training; real cases: "
                    "never trained on; for a stage 1 taken from another run, that run's validation cases, see "
                    "training_data.stage1_origin), whole volumes in model space, brain mask, normalised units "
                    "clipped to [0, 1], PSNR with data range 1; translator: every target from all other contrasts"
                ),
                "autoencoder_reconstruction": stage1_val,
                "translator": stage2_val,
            },
            provenance={
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "trained_by": "mrsynth-train (training/ package of this repository)",
                "git": git_revision(),
                "config": config.to_dict(),
                "mrsynth_version": MRSynthLib.__version__,
                "torch_version": torch.__version__,
                "python": platform.python_version(),
                "stage1_best_step": states["stage1"].get("step"),
                "stage2_best_step": states["stage2"].get("step"),
            },
            citation=citation(config),
            **config.card_licence(),
        )
        write_card(card, staging)
    return output
