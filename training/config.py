"""Typed training configuration loaded from YAML; unknown keys are errors."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

from MRSynthLib.networks.autoencoder import AutoencoderConfig
from MRSynthLib.networks.fusion import FusionConfig
from MRSynthLib.preprocess import PreprocessSpec

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A configuration file is invalid; the message names the key and the fix."""


@dataclass(frozen=True)
class DataConfig:
    """Where training volumes come from. ``source``: ``phantom`` (generated on the fly, seeded)."""

    source: str = "phantom"
    train_cases: int = 16
    val_cases: int = 2
    size: tuple[int, int, int] = (96, 112, 96)
    ms_lesions: int = 3
    tumour_fraction: float = 0.75
    field_strengths: tuple[float, ...] = (1.5, 3.0)


@dataclass(frozen=True)
class OptimConfig:
    steps: int = 1000
    batch_size: int = 2
    patch_size: tuple[int, int, int] = (48, 48, 48)
    lr: float = 2e-3
    weight_decay: float = 0.0
    log_every: int = 25
    checkpoint_every: int = 200
    ssim_weight: float = 0.2
    latent_weight: float = 1.0
    corrupt_probability: float = 0.0  # stage 2: chance that one of >=2 inputs is replaced by noise (teaches the gates)


@dataclass(frozen=True)
class TrainConfig:
    name: str
    version: str = "0.1.0"
    description: str = ""
    seed: int = 0
    threads: int = 0  # 0 = torch default
    data: DataConfig = field(default_factory=DataConfig)
    preprocessing: PreprocessSpec = field(default_factory=PreprocessSpec)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    translator: FusionConfig = field(default_factory=FusionConfig)
    stage1: OptimConfig = field(default_factory=OptimConfig)
    stage2: OptimConfig = field(default_factory=OptimConfig)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "version": self.version, "description": self.description,
            "seed": self.seed, "threads": self.threads,
            "data": _plain(dataclasses.asdict(self.data)),
            "preprocessing": self.preprocessing.to_dict(),
            "autoencoder": self.autoencoder.to_dict(),
            "translator": self.translator.to_dict(),
            "stage1": _plain(dataclasses.asdict(self.stage1)),
            "stage2": _plain(dataclasses.asdict(self.stage2)),
        }


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls, data: dict, where: str):
    """Instantiate dataclass ``cls`` from ``data``, converting lists to tuples, rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, not {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}: allowed keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, raw in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, raw, f"{where}.{key}")
        elif typing.get_origin(hint) is tuple:
            if not isinstance(raw, (list, tuple)):
                raise ConfigError(f"{where}.{key} must be a list, not {raw!r}")
            args = typing.get_args(hint)
            kind = args[0]
            values[key] = tuple(kind(v) for v in raw)
        elif hint in (int, float, str, bool):
            if hint is float and isinstance(raw, (int, float, str)):
                values[key] = float(raw)
            elif not isinstance(raw, hint):
                raise ConfigError(f"{where}.{key} must be {hint.__name__}, not {raw!r}")
            else:
                values[key] = raw
        else:
            values[key] = raw
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None


def config_from_dict(data: dict, where: str = "config") -> TrainConfig:
    if "name" not in data:
        raise ConfigError(f"{where} must set `name` (the bundle name)")
    data = dict(data)
    if "preprocessing" in data and "normalization" in data["preprocessing"]:
        data["preprocessing"] = dict(data["preprocessing"])
        from MRSynthLib.normalization import NormalizationSpec

        norm = _build(NormalizationSpec, data["preprocessing"].pop("normalization"), f"{where}.preprocessing.normalization")
        pre = _build(PreprocessSpec, data.pop("preprocessing"), f"{where}.preprocessing")
        pre = dataclasses.replace(pre, normalization=norm)
        config = _build(TrainConfig, data, where)
        return dataclasses.replace(config, preprocessing=pre)
    return _build(TrainConfig, data, where)


def load_config(path_or_name: str | Path) -> TrainConfig:
    """Load ``path_or_name`` (a YAML path, or the name of a file in ``training/configs``)."""
    import yaml

    path = Path(path_or_name)
    if not path.exists():
        candidate = CONFIG_DIR / f"{path_or_name}.yaml"
        if not candidate.exists():
            names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
            raise ConfigError(f"config {path_or_name!r} is neither a file nor a built-in config ({names})")
        path = candidate
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    config = config_from_dict(data, where=str(path))
    if config.translator.latent_channels != config.autoencoder.latent_channels:
        raise ConfigError(
            f"{path}: translator.latent_channels ({config.translator.latent_channels}) must equal the number of "
            f"autoencoder.fsq_levels ({config.autoencoder.latent_channels})"
        )
    return config
