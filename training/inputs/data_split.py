"""Patient-level, seeded train/validation/test splits, recorded in the run folder (``split.json``)."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.config import ConfigError, SplitConfig
from training.inputs.data_sources import SourceCase

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Case ids per split (each sorted); a patient's cases are never in two splits."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def of(self, case_id: str) -> str | None:
        for name in SPLITS:
            if case_id in getattr(self, name):
                return name
        return None

    def to_dict(self) -> dict:
        return {name: list(getattr(self, name)) for name in SPLITS}

    @classmethod
    def from_dict(cls, data: dict) -> Split:
        return cls(*(tuple(data.get(name, [])) for name in SPLITS))


def split_cases(cases: list[SourceCase], config: SplitConfig) -> Split:
    """Assign every case to train/val/test.

    Phantoms keep their seed-defined split. Other cases: when ``config.val_cases`` or
    ``config.test_cases`` is given, the listed cases (and every case of the same patient) are held
    out and all others train; otherwise each source's patients are shuffled with a seed derived from
    ``config.seed`` and the source's name, and ``test_fraction`` / ``val_fraction`` of them held out
    (at least one each when the fraction is positive and the source has three patients or more).

    Raises:
        ConfigError: a listed case id does not exist, or one patient is listed in two splits.
    """
    assigned: dict[str, str] = {c.case_id: c.fixed_split for c in cases if c.fixed_split}
    real = [c for c in cases if not c.fixed_split]
    patients: dict[str, list[str]] = {}
    for case in real:
        patients.setdefault(case.patient_id, []).append(case.case_id)
    if config.val_cases or config.test_cases:
        held = _listed_patients(real, config)
        for patient, ids in patients.items():
            for case_id in ids:
                assigned[case_id] = held.get(patient, "train")
    else:
        for source in sorted({c.source for c in real}):
            names = sorted({c.patient_id for c in real if c.source == source})
            rng = np.random.default_rng([config.seed, zlib.crc32(source.encode())])
            order = [names[i] for i in rng.permutation(len(names))]
            n_test = _held_out(len(names), config.test_fraction)
            n_val = _held_out(len(names), config.val_fraction)
            if n_test + n_val >= len(names):
                n_test, n_val = 0, 0
            for rank, patient in enumerate(order):
                split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
                for case_id in patients[patient]:
                    assigned[case_id] = split
    return Split(*(tuple(sorted(k for k, v in assigned.items() if v == name)) for name in SPLITS))


def _held_out(patients: int, fraction: float) -> int:
    count = int(round(patients * fraction))
    if fraction > 0 and patients >= 3:
        count = max(count, 1)
    return count


def _listed_patients(cases: list[SourceCase], config: SplitConfig) -> dict[str, str]:
    """Patient id -> ``val``/``test`` for the explicitly listed cases (bare or ``<source>/<case>`` ids, or
    patient ids, which name every per-contrast case of a ``per_contrast`` source)."""
    by_id: dict[str, list[SourceCase]] = {}
    for case in cases:
        for name in {case.case_id, case.patient_id}:
            by_id.setdefault(name, []).append(case)
            by_id.setdefault(name.split("/", 1)[1], []).append(case)
    held: dict[str, str] = {}
    for split, listed in (("val", config.val_cases), ("test", config.test_cases)):
        for entry in listed:
            if entry not in by_id:
                examples = ", ".join(c.case_id for c in cases[:3])
                raise ConfigError(f"data.split.{split}_cases names {entry!r}, which no source holds (ids look like {examples}).")
            for case in by_id[entry]:
                if held.get(case.patient_id, split) != split:
                    raise ConfigError(
                        f"data.split lists patient {case.patient_id} in both val_cases and test_cases; keep it in one."
                    )
                held[case.patient_id] = split
    return held


def load_or_create_split(path: Path | None, cases: list[SourceCase], config: SplitConfig) -> tuple[Split, bool]:
    """The split recorded at ``path`` when it exists (a run keeps its split), else a new one.

    Returns ``(split, created)``. Raises ConfigError when a recorded case no longer exists.
    """
    if path is not None and path.exists():
        split = recorded_split(path)
        known = {c.case_id for c in cases}
        missing = [c for name in ("train", "val") for c in getattr(split, name) if c not in known]
        if missing:
            raise ConfigError(
                f"{path} records cases that the data sources no longer hold ({', '.join(missing[:3])}...): "
                "restore them, or start a new --run-dir."
            )
        return split, False
    return split_cases(cases, config), True


def recorded_split(path: Path) -> Split | None:
    """The split recorded at ``path``, or None when the run has none."""
    if not path.exists():
        return None
    return Split.from_dict(json.loads(path.read_text(encoding="utf-8")))


def write_split(path: Path, split: Split, cases: list[SourceCase], config: SplitConfig) -> None:
    """Record the split with per-source counts and the rule that made it."""
    sources: dict[str, dict[str, int]] = {}
    for case in cases:
        counts = sources.setdefault(case.source, {name: 0 for name in SPLITS})
        name = split.of(case.case_id)
        if name:
            counts[name] += 1
    record = {"rule": _rule(config), "sources": sources, **split.to_dict()}
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def _rule(config: SplitConfig) -> str:
    if config.val_cases or config.test_cases:
        return "explicit val_cases/test_cases lists (whole patients); all other cases train; phantoms by seed"
    return (
        f"per source, patients shuffled with seed {config.seed}: test {config.test_fraction:g}, "
        f"val {config.val_fraction:g}, rest train; phantoms by seed"
    )


__all__ = ["SPLITS", "Split", "load_or_create_split", "recorded_split", "split_cases", "write_split"]
