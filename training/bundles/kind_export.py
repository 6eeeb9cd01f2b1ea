"""``mrsynth-train export`` for the generative translator kinds: the run's best checkpoint → a complete bundle
(safetensors, ONNX graphs with their parity check, card). The fusion kind has its own exporter (:mod:`training.bundles.export`)."""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path

import torch

import MRSynthLib
from training.config import ConfigError, TrainConfig
from training.runtime.runs import RunFolder, git_revision
from training.translators.stage2_latents import frozen_autoencoder, frozen_fusion
from training.translators.stage2_methods import kind_slots
from training.kinds import train_kind


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


def export_method(config: TrainConfig, run: RunFolder, output: Path, overwrite: bool = False,
                  onnx_graphs: bool = True) -> Path:
    """Write the kind's bundle (safetensors, ONNX graphs, card) from the run's best checkpoint."""
    from MRSynthLib.models.bundle import ModelCard
    from MRSynthLib.errors import MRSynthError
    from training.inputs.data import training_data_record
    from training.inputs.data_split import recorded_split
    from training.bundles.stage2_bundle import write_translator_bundle

    kind, stage = config.method.kind, config.method.stage
    spec = train_kind(kind)
    best = run.load_checkpoint(stage, "best")
    if best is None:
        raise ConfigError(f"{run.root} has no {stage}/best.json: run `mrsynth-train stage2 --config ...` first")
    autoencoder = frozen_autoencoder(config, run)
    fusion = frozen_fusion(config, run, lambda: _no_fusion(run)) if spec.uses_fusion else None
    exported = spec.export_parts(config, autoencoder, fusion if spec.uses_fusion else kind_slots(config, None), best)
    parts: dict[str, torch.nn.Module] = {"autoencoder": autoencoder, **exported.parts}
    networks: dict = {"autoencoder": autoencoder.config.to_dict(), **exported.networks}
    inputs, outputs = exported.inputs, exported.outputs
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
                                 + ("; DDIM, eta 0, seed 0" if spec.deterministic_sampler else "")),
                    "translator": _validation_record(run, stage, int(best.get("step", -1)))},
        provenance={"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "trained_by": "mrsynth-train (training/ package of this repository)", "git": git_revision(),
                    "config": config.to_dict(), "mrsynth_version": MRSynthLib.__version__,
                    "torch_version": torch.__version__, "python": platform.python_version(),
                    "stage2_best_step": best.get("step")},
        citation=spec.citation,
        **config.card_licence(),
    )
    card = spec.finish_card(card)
    try:
        return write_translator_bundle(Path(output), card, parts, overwrite=overwrite, onnx_graphs=onnx_graphs)
    except MRSynthError as error:
        raise SystemExit(f"mrsynth-train: {error}") from None
