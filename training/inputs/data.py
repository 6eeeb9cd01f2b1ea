"""Training volumes: data sources -> patient-level split -> preprocessing cache -> memory-mapped volumes.

Every case goes through :func:`MRSynthLib.preprocessing.preprocess.to_model_space`, the same code the inference
path uses, so training and inference normalise identically; the result is cached as ``.npy``
(:mod:`training.inputs.data_cache`) and epochs never re-read NIfTI. Readers: :mod:`training.inputs.data_sources`;
splits: :mod:`training.inputs.data_split`; patches: :mod:`training.inputs.data_patches`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from MRSynthLib.contrasts import CANONICAL_CONTRASTS
from MRSynthLib.preprocessing.preprocess import PreprocessSpec
from training.config import ConfigError, DataConfig, SourceConfig, TrainConfig
from training.inputs.data_cache import PreprocessCache
from training.inputs.data_patches import random_patch_slices
from training.inputs.data_sources import SourceCase, list_source_cases
from training.inputs.data_split import Split, load_or_create_split, write_split
from training.runtime.distributed import DistContext, run_everywhere, run_on_main

_NOT_IMAGES = ("mask", "foreground", "labels")


@dataclass
class Volume:
    """One case in model space.

    Attributes:
        case_id: ``<source>/<case>``.
        images: contrast -> ``(z, y, x)`` float32 (only the contrasts the case has).
        mask: ``(z, y, x)`` bool foreground.
        labels: ``(z, y, x)`` uint8 label map, or None.
        foreground: ``(K, 3)`` foreground voxel indices used as patch centres (default: all of ``mask``).
        source: the source's label.
        cache_dir: the cache folder the arrays are memory-mapped from (pickled as this path only).
    """

    case_id: str
    images: dict[str, np.ndarray]
    mask: np.ndarray
    labels: np.ndarray | None = None
    foreground: np.ndarray | None = None
    source: str = ""
    cache_dir: Path | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.foreground is None:
            self.foreground = np.argwhere(self.mask)

    @classmethod
    def from_arrays(cls, case_id: str, source: str, arrays: dict[str, np.ndarray], cache_dir: Path | None = None) -> Volume:
        images = {k: v for k, v in arrays.items() if k not in _NOT_IMAGES}
        ordered = {c: images[c] for c in CANONICAL_CONTRASTS if c in images}
        ordered.update({c: a for c, a in images.items() if c not in ordered})
        return cls(case_id, ordered, arrays["mask"], arrays.get("labels"), arrays.get("foreground"), source, cache_dir)

    def available(self, slots) -> np.ndarray:
        """``(len(slots),)`` bool: which of ``slots`` this case has."""
        return np.array([c in self.images for c in slots], dtype=bool)

    def __getstate__(self) -> dict:
        if self.cache_dir is None:
            return dict(self.__dict__)
        return {"case_id": self.case_id, "source": self.source, "cache_dir": self.cache_dir}

    def __setstate__(self, state: dict) -> None:
        if "images" in state:
            self.__dict__.update(state)
            return
        arrays = {p.stem: np.load(p, mmap_mode="c") for p in sorted(Path(state["cache_dir"]).glob("*.npy"))}
        self.__dict__.update(Volume.from_arrays(state["case_id"], state["source"], arrays, state["cache_dir"]).__dict__)


@dataclass
class TrainingData:
    """Training and validation volumes of a run.

    Attributes:
        weights: ``(len(train),)`` sampling probability of each training volume (source weights
            shared among the source's cases).
        contrasts: every contrast of the training volumes, canonical order.
        built, reused: cases preprocessed now / found fresh in the cache (summed over ranks).
    """

    train: list[Volume]
    val: list[Volume]
    split: Split
    weights: np.ndarray
    contrasts: tuple[str, ...]
    built: int = 0
    reused: int = 0


def list_cases(config: DataConfig, seed: int, spacing: tuple[float, float, float]) -> list[SourceCase]:
    """The cases of every source (sorted per source)."""
    cases = []
    for source in config.sources:
        cases += list_source_cases(source, seed, spacing, config.split.patient_pattern)
    return cases


def prepare_data(config: DataConfig, spec: PreprocessSpec, seed: int, *, cache_dir: Path | None = None,
                 split_path: Path | None = None, ctx: DistContext | None = None, progress: bool = False) -> TrainingData:
    """List, split, preprocess (or reuse the cache) and load the training and validation cases.

    Args:
        cache_dir: preprocessing cache folder; None builds every case in memory (nothing stored).
        split_path: ``split.json`` of the run: reused when it exists, else written (rank 0).
        ctx: distributed context; each rank preprocesses its share of the stale cases, then all
            ranks memory-map every case.
    """
    ctx = ctx or DistContext()
    cases = list_cases(config, seed, spec.spacing)
    if not cases:
        raise ConfigError("data.sources hold no cases: check the roots and the `contrasts` filters.")

    def decide() -> Split:
        split, created = load_or_create_split(split_path, cases, config.split)
        if created and split_path is not None:
            write_split(split_path, split, cases, config.split)
        return split

    split = run_on_main(ctx, decide)
    if not split.train:
        raise ConfigError("the split leaves no training case: lower data.split fractions or add cases.")
    if not split.val:
        raise ConfigError("the split leaves no validation case: raise data.split.val_fraction, list val_cases, "
                          "or give the phantom source val_cases.")
    sources = {s.label: s for s in config.sources}
    needed = [c for c in cases if split.of(c.case_id) in ("train", "val")]
    cache = PreprocessCache(cache_dir, spec)

    def build_share() -> tuple[int, int, dict[str, dict]]:
        built, reused, in_memory = 0, 0, {}
        share = needed if cache_dir is None else needed[ctx.rank :: ctx.world_size]
        from tqdm import tqdm

        for case in tqdm(share, desc="preprocessing cases", disable=not (progress and ctx.is_main), leave=False):
            register = sources[case.source].register
            if cache.is_fresh(case, register):
                reused += 1
                continue
            arrays = cache.build(case, register)
            built += 1
            if cache_dir is None:
                in_memory[case.case_id] = arrays
        return built, reused, in_memory

    built, reused, in_memory = run_everywhere(ctx, build_share)
    counts = [(built, reused)]
    if cache_dir is not None and ctx.distributed:
        from training.runtime.distributed import gather_objects

        counts = gather_objects(ctx, (built, reused))
    volumes = {}
    for case in needed:
        if cache_dir is None:
            volumes[case.case_id] = Volume.from_arrays(case.case_id, case.source, in_memory[case.case_id])
        else:
            folder = cache.case_dir(case)
            volumes[case.case_id] = Volume.from_arrays(case.case_id, case.source, cache.load(case), folder)
    train = [volumes[c] for c in split.train if c in volumes]
    val = [volumes[c] for c in split.val if c in volumes]
    return TrainingData(train, val, split, source_weights(train, sources), training_contrasts(train),
                        sum(b for b, _ in counts), sum(r for _, r in counts))


def source_weights(train: list[Volume], sources: dict[str, SourceConfig]) -> np.ndarray:
    """Per-volume sampling probabilities: each source's ``weight`` shared equally among its cases."""
    per_source: dict[str, int] = {}
    for volume in train:
        per_source[volume.source] = per_source.get(volume.source, 0) + 1
    weights = np.array([sources[v.source].weight / per_source[v.source] for v in train], dtype=float)
    return weights / weights.sum()


def training_contrasts(volumes: list[Volume]) -> tuple[str, ...]:
    found = {c for v in volumes for c in v.images}
    return tuple(c for c in CANONICAL_CONTRASTS if c in found) + tuple(sorted(found - set(CANONICAL_CONTRASTS)))


def load_volumes(config: DataConfig, spec: PreprocessSpec, seed: int,
                 cache_dir: Path | None = None) -> tuple[list[Volume], list[Volume]]:
    """Training and validation volumes in one process (see :func:`prepare_data`)."""
    data = prepare_data(config, spec, seed, cache_dir=cache_dir)
    return data.train, data.val


def describe_source(source: SourceConfig, spacing: tuple[float, float, float]) -> str:
    """One sentence about a source, for the model card."""
    if source.kind == "phantom":
        size = "x".join(str(s) for s in source.size)
        return (
            f"{source.train_cases} synthetic phantom brains from `mrsynth phantom` (seeded, {size} voxels at "
            f"{spacing[0]} mm, field strengths {list(source.field_strengths)} T, tumour in "
            f"{source.tumour_fraction:.0%} of cases, 0-{source.ms_lesions} MS-like lesions); no real patient data"
        )
    contrasts = f" (contrasts {', '.join(source.contrasts)})" if source.contrasts else ""
    return f"{source.kind} dataset `{Path(source.root).name}`{contrasts}, weight {source.weight:g}"


def training_data_record(config: TrainConfig, split: Split | None) -> dict:
    """The ``training_data`` part of a model card: sources, summary, case counts per split and, with a split, the
    case ids of each (``split``: ``{"train": [...], "val": [...], "test": [...]}``, ``source/case`` ids), so that a
    reader can tell whether a given scan was seen in training."""
    data = config.data
    record: dict = {
        "source": "+".join(s.kind for s in data.sources),
        "summary": "; ".join(describe_source(s, config.preprocessing.spacing) for s in data.sources),
    }
    if split is not None:
        record.update(train_cases=len(split.train), validation_cases=len(split.val), test_cases=len(split.test),
                      split=split.to_dict())
    else:
        phantoms = [s for s in data.sources if s.kind == "phantom"]
        record.update(train_cases=sum(s.train_cases for s in phantoms), validation_cases=sum(s.val_cases for s in phantoms))
    if len(data.sources) > 1:
        record["sources"] = [{"kind": s.kind, "name": s.label, "weight": s.weight} for s in data.sources]
    return record


def space_labels(space, labels_image) -> np.ndarray:
    """Crop and pad a label image (on the reference grid) exactly as the model space did."""
    from training.inputs.data_cache import labels_to_model_space

    return labels_to_model_space(space, labels_image)


__all__ = ["TrainingData", "Volume", "describe_source", "list_cases", "load_volumes", "prepare_data",
           "random_patch_slices", "source_weights", "space_labels", "training_data_record"]
