"""Export a finished run as a model bundle (safetensors + ``bundle.json`` card)."""

from __future__ import annotations

import csv
import datetime as dt
import platform
import shutil
import tempfile
from pathlib import Path

import torch

import MRSynthLib
from MRSynthLib.bundle import ModelCard, sha256_file, write_card
from MRSynthLib.contrasts import MR_CONTRASTS
from training.config import TrainConfig
from training.data import training_data_record
from training.data_split import recorded_split
from training.runs import RunFolder, git_revision

CITATION = (
    "MRSynth fsq-fusion: FSQ latent autoencoder (after RSF, 'Recover Semantics First, Generate Better') "
    "with MSG-LDM-style gated any-subset fusion in latent space."
)


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
            raise SystemExit(f"Run {run.root} has no {stage}/best.ckpt: run `mrsynth-train {stage}` first.")
        states[stage] = state
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    staging.chmod(0o755)
    try:
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
            method="fsq-fusion",
            description=config.description,
            input_contrasts=tuple(c for c in config.translator.contrasts if c in MR_CONTRASTS),
            output_contrasts=tuple(c for c in config.translator.contrasts if c in MR_CONTRASTS),
            preprocessing=config.preprocessing,
            networks={"autoencoder": config.autoencoder.to_dict(), "translator": config.translator.to_dict()},
            weights=weights,
            training_data={
                **training_data_record(config, recorded_split(run.root / "split.json")),
                "stage1_steps": config.stage1.steps,
                "stage2_steps": config.stage2.steps,
            },
            validation={
                "protocol": (
                    "held-out phantom volumes (seeds disjoint from training), model space, brain mask, "
                    "normalised units clipped to [0, 1], PSNR with data range 1; translator: every target from "
                    "all other contrasts"
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
            citation=CITATION,
        )
        write_card(card, staging)
        if output.exists():
            shutil.rmtree(output)
        staging.replace(output)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return output
