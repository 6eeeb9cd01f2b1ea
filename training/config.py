"""Typed training configuration loaded from YAML; unknown keys are errors."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

from MRSynthLib.networks.configs.autoencoder import AutoencoderConfig
from MRSynthLib.networks.configs.fusion import FusionConfig
from MRSynthLib.preprocessing.preprocess import PreprocessSpec
from training.loss_config import Stage1LossConfig
from training.stage2_config import MethodConfig
from training.regression_config import RegressionConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A configuration file is invalid; the message names the key and the fix."""


SOURCE_KINDS: tuple[str, ...] = ("phantom", "plain", "brats2021", "brats2023", "nnunet", "ixi", "csv")


@dataclass(frozen=True)
class SourceConfig:
    """One dataset of the training mixture (an item of ``data.sources``).

    ``kind``: ``phantom`` (generated, seeded; split by seed with ``train/val/test_cases``), a folder
    layout ``plain`` / ``brats2021`` / ``brats2023`` / ``nnunet`` / ``ixi`` under ``root``, or ``csv``
    (``root`` is a CSV with ``case_id`` and one column per contrast). Folder and CSV cases are split by
    patient (``data.split``). Cases may lack contrasts: only the ones found are used.
    """

    kind: str = "phantom"
    root: str = ""
    name: str = ""  # case-id prefix, unique per source (default: kind)
    weight: float = 1.0  # relative share of training patches drawn from this source
    contrasts: tuple[str, ...] = ()  # keep only these contrasts (default: every contrast found)
    channels: tuple[str, ...] = ()  # nnunet: contrast of channel 0, 1, ... (default: dataset.json)
    register: bool = True  # contrasts on another grid than the case's reference: rigid registration, else resampling
    per_contrast: bool = False  # stage 1 only: every contrast file is its own case on its own grid (no pairs, no registration)
    # phantom only
    train_cases: int = 16
    val_cases: int = 2
    test_cases: int = 0
    size: tuple[int, int, int] = (96, 112, 96)
    ms_lesions: int = 3
    tumour_fraction: float = 0.75
    field_strengths: tuple[float, ...] = (1.5, 3.0)
    contrasts_per_case: int = 0  # > 0: each case keeps only this many of its contrasts, drawn per case (partially paired data)
    ct: bool = False  # also a pseudo-CT per phantom (MRSynthLib.phantom, PhantomConfig.ct), for MR->CT methods

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(SOURCE_KINDS)}, not {self.kind!r}")
        if self.kind != "phantom" and not self.root:
            raise ValueError(f"a {self.kind} source must set `root` (its dataset folder, or the CSV file for csv)")
        if not self.weight > 0:
            raise ValueError(f"weight must be > 0, not {self.weight}")
        if min(self.train_cases, self.val_cases, self.test_cases) < 0:
            raise ValueError("train_cases, val_cases and test_cases must be >= 0")
        if self.per_contrast and self.kind == "phantom":
            raise ValueError("per_contrast is for folder and CSV sources (phantom contrasts are generated on one grid)")
        if self.contrasts_per_case < 0 or (self.contrasts_per_case and self.kind != "phantom"):
            raise ValueError(f"contrasts_per_case must be 0 (all contrasts) or, for phantom sources only, a positive "
                             f"number, not {self.contrasts_per_case} for a {self.kind} source")

    @property
    def label(self) -> str:
        """The name that prefixes this source's case ids (``<label>/<case>``)."""
        return self.name or self.kind


@dataclass(frozen=True)
class SplitConfig:
    """Patient-level split of folder/CSV sources (phantoms are split by seed).

    Without lists, each source's patients are shuffled with ``seed`` and ``test_fraction`` /
    ``val_fraction`` of them held out. With ``val_cases`` / ``test_cases`` (case ids, bare or
    ``<source>/<case>``), exactly those are held out and every other case trains. A patient is the
    case id, or group 1 of ``patient_pattern`` when it matches (BraTS 2023 time points
    ``<patient>-<nnn>`` are grouped by default).
    """

    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    val_cases: tuple[str, ...] = ()
    test_cases: tuple[str, ...] = ()
    patient_pattern: str = ""

    def __post_init__(self) -> None:
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise ValueError(
                f"val_fraction and test_fraction must be in [0, 1) with a sum below 1, not "
                f"{self.val_fraction} and {self.test_fraction}"
            )


@dataclass(frozen=True)
class DataConfig:
    """Where training volumes come from and how patches are drawn."""

    sources: tuple[SourceConfig, ...] = (SourceConfig(),)
    split: SplitConfig = field(default_factory=SplitConfig)
    cache_dir: str = ""  # preprocessed .npy cache; "" = <run-dir>/cache
    foreground_probability: float = 1.0  # share of patches centred on a random foreground voxel

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("sources must list at least one source")
        labels = [s.label for s in self.sources]
        if len(set(labels)) != len(labels):
            raise ValueError(f"source names must be unique, not {labels}: give repeated kinds a `name`")
        if not 0 <= self.foreground_probability <= 1:
            raise ValueError(f"foreground_probability must be in [0, 1], not {self.foreground_probability}")


@dataclass(frozen=True)
class AugmentationConfig:
    """Random patch augmentation (MONAI transforms, seeded per sample); a probability of 0 turns a
    transform off. Spatial transforms move all contrasts of a sample together; intensity transforms
    draw their parameters per contrast. Axes are model-space array axes ``(z, y, x)``; 2 = left-right."""

    flip_probability: float = 0.5
    flip_axes: tuple[int, ...] = (2,)
    affine_probability: float = 0.0
    rotate_degrees: float = 10.0  # uniform in +-this about each axis
    scale_fraction: float = 0.1  # zoom by 1 + uniform(+-this)
    gamma_probability: float = 0.0
    gamma_range: tuple[float, float] = (0.7, 1.5)
    noise_probability: float = 0.0
    noise_std: float = 0.03  # normalised units (1 = bright end of the tissue)
    bias_probability: float = 0.0
    bias_coefficients: tuple[float, float] = (0.0, 0.1)  # polynomial log-bias coefficients (MONAI RandBiasField)
    scale_probability: float = 0.0
    intensity_scale: float = 0.1  # multiply by 1 + uniform(+-this)
    shift_probability: float = 0.0
    intensity_shift: float = 0.05  # add uniform(+-this)

    def __post_init__(self) -> None:
        for name in ("flip", "affine", "gamma", "noise", "bias", "scale", "shift"):
            value = getattr(self, f"{name}_probability")
            if not 0 <= value <= 1:
                raise ValueError(f"{name}_probability must be in [0, 1], not {value}")
        if any(a not in (0, 1, 2) for a in self.flip_axes):
            raise ValueError(f"flip_axes must be array axes 0, 1 or 2 (z, y, x), not {list(self.flip_axes)}")


@dataclass(frozen=True)
class RuntimeConfig:
    """Hardware switches. ``bf16`` and ``gradient_checkpointing`` act on CUDA (bf16 on the CPU too with ``cpu_bf16``)."""

    device: str = "auto"  # auto (CUDA when available) | cpu | cuda
    bf16: bool = True  # bf16 autocast of the forward pass (CUDA; on the CPU only with cpu_bf16)
    cpu_bf16: bool = False  # also autocast to bf16 on the CPU (fast on CPUs with AVX-512 bf16 / AMX)
    channels_last: bool = False  # channels-last-3d memory format for stage 1 (measured 1.5x faster with CPU bf16)
    gradient_checkpointing: bool = False  # recompute block activations in backward (less memory, ~30% slower)
    workers: int = 0  # data-loader processes per rank (0 = sample in the training process)
    find_unused_parameters: bool = False  # DDP: set when some parameters get no gradient in a step

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, not {self.workers}")


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
    grad_clip: float = 0.0  # > 0: clip the gradient norm to this (stage 1, fusion stage 2); 0 = off
    decode_size: tuple[int, ...] = ()  # stage 2: decode only this central part of the patch for the image loss
    # (the translator still sees the whole patch as context); () = decode the whole patch
    augmented_copies: int = 0  # stage 2: extra encodings of every training volume whose inputs went through the
    # intensity part of `augmentation` (gamma, bias field, scale, shift, noise; per contrast); targets stay clean


@dataclass(frozen=True)
class TrainConfig:
    name: str
    version: str = "0.1.0"
    description: str = ""
    seed: int = 0
    threads: int = 0  # 0 = torch default
    data: DataConfig = field(default_factory=DataConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    preprocessing: PreprocessSpec = field(default_factory=PreprocessSpec)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    translator: FusionConfig = field(default_factory=FusionConfig)
    stage1: OptimConfig = field(default_factory=OptimConfig)
    stage1_loss: Stage1LossConfig = field(default_factory=Stage1LossConfig)
    stage2: OptimConfig = field(default_factory=OptimConfig)
    method: MethodConfig = field(default_factory=MethodConfig)  # stage-2 translator kind (training.stage2_config)
    regression: RegressionConfig = field(default_factory=RegressionConfig)  # `mrsynth-train regression` only
    licence: str = ""  # the bundle card's licence statement; "" = MRSynth's default (Apache-2.0). Weights trained on
    # data under non-commercial terms must say so here.

    def to_dict(self) -> dict:
        out = {
            "name": self.name, "version": self.version, "description": self.description,
            "seed": self.seed, "threads": self.threads,
            "data": _data_dict(self.data),
            "augmentation": _plain(dataclasses.asdict(self.augmentation)),
            "runtime": _runtime_dict(self.runtime),
            "preprocessing": self.preprocessing.to_dict(),
            "autoencoder": self.autoencoder.to_dict(),
            "translator": self.translator.to_dict(),
            "stage1": _optim_dict(self.stage1),
            "stage1_loss": _plain(dataclasses.asdict(self.stage1_loss)),
            "stage2": _optim_dict(self.stage2),
            # absent by default, so run folders of fusion configs keep resolving equal
            **({"method": _method_dict(self.method)} if self.method != MethodConfig() else {}),
        }
        if self.regression != RegressionConfig():  # absent by default: network run folders keep resolving equal
            out["regression"] = _plain(dataclasses.asdict(self.regression))
        if self.licence:  # absent by default, like the sections above
            out["licence"] = self.licence
        return out

    def card_licence(self) -> dict:
        """``{"licence": ...}`` for a bundle card when the config sets one (else the card's default applies)."""
        return {"licence": self.licence} if self.licence else {}


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _without_unset(out: dict, keys: tuple[str, ...]) -> dict:
    """``out`` without those of ``keys`` that are unset (falsy): keys added after run folders existed are stored
    only when used, so older run folders keep resolving equal."""
    for key in keys:
        if not out[key]:
            del out[key]
    return out


def _optim_dict(optim: OptimConfig) -> dict:
    """A stage's optimiser section as stored (keys added later only when set)."""
    return _without_unset(_plain(dataclasses.asdict(optim)), ("grad_clip", "decode_size", "augmented_copies"))


def _runtime_dict(runtime: RuntimeConfig) -> dict:
    """``runtime`` as stored (the CPU speed switches only when set)."""
    return _without_unset(_plain(dataclasses.asdict(runtime)), ("cpu_bf16", "channels_last"))


def _data_dict(data: DataConfig) -> dict:
    """``data`` as stored; a source's ``contrasts_per_case`` only when set (older run folders keep resolving equal)."""
    out = _plain(dataclasses.asdict(data))
    for source in out["sources"]:
        _without_unset(source, ("contrasts_per_case", "per_contrast"))
    return out


def _method_dict(method: MethodConfig) -> dict:
    """``method`` as stored; the ``vqseq2seq`` section only when it differs from its default (older run
    folders keep resolving equal)."""
    out = _plain(method.to_dict())
    if method.vqseq2seq == type(method.vqseq2seq)():
        del out["vqseq2seq"]
    return out


def _build(cls, data: dict, where: str, **given):
    """Instantiate dataclass ``cls`` from ``data``, converting lists to tuples, rejecting unknown keys.

    A class with a ``from_mapping(data, where, build)`` class method parses its own mapping (``build`` is this
    function); ``given`` are constructor arguments that ``data`` does not hold.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, not {type(data).__name__}")
    if hasattr(cls, "from_mapping") and not given:
        try:
            return cls.from_mapping(data, where, _build)
        except ValueError as error:
            raise ConfigError(str(error)) from None
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
            if dataclasses.is_dataclass(kind):
                values[key] = tuple(_build(kind, v, f"{where}.{key}[{i}]") for i, v in enumerate(raw))
            else:
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
        return cls(**values, **given)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None


def config_from_dict(data: dict, where: str = "config") -> TrainConfig:
    if "name" not in data:
        raise ConfigError(f"{where} must set `name` (the bundle name)")
    data = dict(data)
    if "preprocessing" in data and "normalization" in data["preprocessing"]:
        data["preprocessing"] = dict(data["preprocessing"])
        from MRSynthLib.preprocessing.normalization import NormalizationSpec

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
            f"{path}: translator.latent_channels ({config.translator.latent_channels}) must equal the autoencoder's "
            f"latent channels ({config.autoencoder.latent_channels}, autoencoder.latent = {config.autoencoder.latent})"
        )
    return config
