"""Dataset readers: the cases (contrast files of one subject) of every ``data.sources`` entry.

* ``plain``, ``brats2021``, ``brats2023``, ``nnunet``: folder layouts read by
  :func:`MRSynthLib.files.cases.discover_cases`.
* ``ixi``: ``IXI<nnn>-<Site>-<nnnn>-{T1,T2,PD}.nii.gz`` in one folder or in per-modality subfolders
  (``IXI-T1/``, ``IXI-T2/``, ``IXI-PD/``); MRA and DTI files are ignored. The contrasts are not
  co-registered: preprocessing registers T2/PD to T1 once (:mod:`training.inputs.data_cache`).
* ``csv``: a CSV file with a ``case_id`` column, one column per contrast (any alias) holding a file
  path (relative to the CSV's folder; an empty cell = contrast missing), optional ``labels`` and
  ``patient_id`` columns.
* ``phantom``: seeded generated cases (no files); training, validation and test cases use disjoint
  seeds, so phantoms are split by seed, not by patient.

Case ids are ``<source label>/<case>``, unique across a mixture of sources.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from MRSynthLib.files.cases import LAYOUTS, discover_cases, split_image_name
from MRSynthLib.contrasts import CANONICAL_CONTRASTS, canonical_contrast, is_contrast, squash_name
from MRSynthLib.errors import ContrastError, InputImageError
from MRSynthLib.phantom import PhantomConfig
from training.config import SourceConfig

IXI_CONTRASTS: dict[str, str] = {"T1": "t1", "T2": "t2", "PD": "pd"}
_IXI_FILE = re.compile(r"^(?P<subject>IXI\d+-[A-Za-z]+-\d+)-(?P<modality>[A-Za-z0-9]+)$")
BRATS2023_PATIENT = r"^(.+)-\d{3}$"
"""BraTS 2023 case ids are ``<patient>-<time point>``: time points of one patient stay in one split."""

_CSV_LABEL_COLUMNS = frozenset({"labels", "label", "seg", "segmentation"})
_PHANTOM_SEED_BLOCKS = {"train": (0, 500), "val": (500, 250), "test": (750, 250)}
"""Phantom seeds of a split: ``1000 * (seed + 1) + offset + i`` for ``i < limit`` (disjoint blocks)."""


@dataclass(frozen=True)
class SourceCase:
    """One subject of one source, before preprocessing.

    Attributes:
        source: the source's label (``SourceConfig.label``).
        case_id: ``<source>/<case>``.
        patient_id: ``<source>/<patient>``; cases of one patient always share a split.
        images: contrast -> file (empty for phantoms).
        labels: label map file, if any.
        phantom: generator settings (phantoms only).
        fixed_split: ``train``/``val``/``test`` for phantoms (split by seed), else None.
        phantom_contrasts: the contrasts a phantom case keeps (``contrasts_per_case``); empty = all of them.
    """

    source: str
    case_id: str
    patient_id: str
    images: dict[str, Path] = field(default_factory=dict)
    labels: Path | None = None
    phantom: PhantomConfig | None = None
    fixed_split: str | None = None
    phantom_contrasts: tuple[str, ...] = ()

    @property
    def contrasts(self) -> tuple[str, ...]:
        return tuple(self.images)


def list_source_cases(source: SourceConfig, seed: int, spacing: tuple[float, float, float],
                      patient_pattern: str = "") -> list[SourceCase]:
    """Every case of ``source``, sorted by case id, restricted to ``source.contrasts`` when given.

    ``seed`` (the training seed) and ``spacing`` (the model spacing) only matter for phantoms.
    Cases left without any contrast by the restriction are dropped.

    Raises:
        InputImageError / ContrastError: the folder or CSV does not fit the layout (one sentence).
    """
    if source.kind == "phantom":
        return _phantom_cases(source, seed, spacing)
    root = Path(source.root).expanduser()
    if source.kind == "ixi":
        found = _ixi_cases(root)
    elif source.kind == "csv":
        found = _csv_cases(root)
    elif source.kind in LAYOUTS:
        channels = {i: c for i, c in enumerate(source.channels)} if source.channels else None
        found = [(c.case_id, None, dict(c.images), c.labels) for c in discover_cases(root, source.kind, channels)]
    else:  # pragma: no cover - SourceConfig validates kind
        raise ValueError(f"unknown source kind {source.kind!r}")
    keep = {canonical_contrast(c) for c in source.contrasts} if source.contrasts else None
    pattern = patient_pattern or (BRATS2023_PATIENT if source.kind == "brats2023" else "")
    cases = []
    for case, patient, images, labels in found:
        if keep is not None:
            images = {c: p for c, p in images.items() if c in keep}
        images = {c: images[c] for c in sorted(images, key=_contrast_order)}
        if not images:
            continue
        patient = patient or patient_of(case, pattern)
        if source.per_contrast:  # one single-contrast case per file, same patient (stays in one split)
            cases += [SourceCase(source.label, f"{source.label}/{case}-{contrast}", f"{source.label}/{patient}",
                                 {contrast: path}) for contrast, path in images.items()]
            continue
        cases.append(SourceCase(source.label, f"{source.label}/{case}", f"{source.label}/{patient}", images, labels))
    return sorted(cases, key=lambda c: c.case_id)


def _contrast_order(contrast: str) -> tuple[int, str]:
    return (CANONICAL_CONTRASTS.index(contrast) if contrast in CANONICAL_CONTRASTS else len(CANONICAL_CONTRASTS), contrast)


def patient_of(case: str, pattern: str) -> str:
    """Group 1 of ``pattern`` matched at the start of ``case``, or ``case`` itself."""
    if pattern:
        match = re.match(pattern, case)
        if match and match.groups() and match.group(1):
            return match.group(1)
    return case


def _phantom_cases(source: SourceConfig, seed: int, spacing: tuple[float, float, float]) -> list[SourceCase]:
    """Seeded phantom settings; each split draws field strength, tumour and lesions from its own stream."""
    cases = []
    for split, count in (("train", source.train_cases), ("val", source.val_cases), ("test", source.test_cases)):
        offset, limit = _PHANTOM_SEED_BLOCKS[split]
        if count > limit:
            raise ValueError(f"a phantom source holds at most {limit} {split} cases (disjoint seed blocks), not {count}")
        base = 1000 * (seed + 1) + offset
        rng = np.random.default_rng(base)
        for i in range(count):
            config = PhantomConfig(
                size=source.size,
                spacing=spacing,
                seed=base + i,
                field_strength=float(rng.choice(source.field_strengths)),
                tumour=bool(rng.random() < source.tumour_fraction),
                ms_lesions=int(rng.integers(0, source.ms_lesions + 1)),
                ct=source.ct,
            )
            case_id = f"{source.label}/phantom-{base + i:05d}"
            cases.append(SourceCase(source.label, case_id, case_id, phantom=config, fixed_split=split,
                                    phantom_contrasts=kept_contrasts(source, base + i)))
    return cases


def kept_contrasts(source: SourceConfig, seed: int) -> tuple[str, ...]:
    """The contrasts a phantom case keeps: all (``()``) unless ``source.contrasts_per_case`` > 0, then that
    many drawn with the case's ``seed`` from ``source.contrasts`` (default: every phantom contrast), in
    canonical order; the case's other generator settings are unchanged."""
    if not source.contrasts_per_case:
        return ()
    from MRSynthLib.phantom import CONTRASTS

    pool = [canonical_contrast(c) for c in source.contrasts] or list(CONTRASTS)
    if source.contrasts_per_case > len(pool):
        raise ValueError(f"contrasts_per_case {source.contrasts_per_case} must be at most the {len(pool)} contrasts "
                         f"{pool} of the phantom source")
    chosen = np.random.default_rng([seed, 1]).choice(len(pool), size=source.contrasts_per_case, replace=False)
    return tuple(sorted((pool[i] for i in chosen), key=_contrast_order))


def _ixi_cases(root: Path) -> list[tuple[str, str | None, dict[str, Path], Path | None]]:
    """IXI subjects under ``root`` (the folder itself and its subfolders, one level deep)."""
    if not root.is_dir():
        raise InputImageError(f"IXI folder {root} must be an existing folder; check data.sources[].root.")
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    subjects: dict[str, dict[str, Path]] = {}
    for folder in folders:
        for path in sorted(folder.iterdir()):
            parts = split_image_name(path) if path.is_file() and not path.name.startswith(".") else None
            match = _IXI_FILE.match(parts[0]) if parts else None
            if match is None or match["modality"].upper() not in IXI_CONTRASTS:
                continue
            contrast = IXI_CONTRASTS[match["modality"].upper()]
            files = subjects.setdefault(match["subject"], {})
            if contrast in files:
                raise ContrastError(
                    f"IXI subject {match['subject']} must have one {match['modality']} file, not both "
                    f"{files[contrast]} and {path}; remove one."
                )
            files[contrast] = path
    if not subjects:
        raise InputImageError(
            f"IXI folder {root} must contain files named IXI<nnn>-<Site>-<nnnn>-T1.nii.gz (or -T2, -PD), "
            "directly or in per-modality subfolders; none found."
        )
    return [(subject, None, subjects[subject], None) for subject in sorted(subjects)]


def _csv_cases(path: Path) -> list[tuple[str, str | None, dict[str, Path], Path | None]]:
    """Rows of a cases CSV: ``case_id``, optional ``patient_id``, contrast columns, optional ``labels``."""
    if not path.is_file():
        raise InputImageError(f"Cases CSV {path} must be an existing file; check data.sources[].root.")
    with open(path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        rows = list(reader)
    if "case_id" not in columns:
        raise InputImageError(f"Cases CSV {path} must have a case_id column, not only {columns}; add it.")
    roles: dict[str, str] = {}
    for column in columns:
        if column in ("case_id", "patient_id"):
            continue
        if squash_name(column) in _CSV_LABEL_COLUMNS:
            roles[column] = "labels"
        elif is_contrast(column):
            roles[column] = canonical_contrast(column)
        else:
            raise ContrastError(
                f"Column {column!r} of {path} must be case_id, patient_id, labels or a contrast name "
                "(t1, t1ce, t2, flair, pd or an alias); rename or remove it."
            )
    contrast_columns = [c for c, r in roles.items() if r != "labels"]
    canonical = [roles[c] for c in contrast_columns]
    if len(set(canonical)) != len(canonical):
        raise ContrastError(f"Columns {contrast_columns} of {path} must name different contrasts, not {canonical}.")
    cases, seen = [], set()
    for number, row in enumerate(rows, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        case = row.get("case_id", "")
        if not case:
            raise InputImageError(f"Row {number} of {path} must have a case_id; fill it in or delete the row.")
        if case in seen:
            raise InputImageError(f"case_id {case!r} appears twice in {path} (row {number}); case ids must be unique.")
        seen.add(case)
        images, labels = {}, None
        for column, role in roles.items():
            if not row.get(column):
                continue
            file = Path(row[column]).expanduser()
            file = file if file.is_absolute() else path.parent / file
            if not file.exists():
                raise InputImageError(f"{column} file {file} of case {case!r} ({path}, row {number}) does not exist.")
            if role == "labels":
                labels = file
            else:
                images[role] = file
        cases.append((case, row.get("patient_id") or None, images, labels))
    return sorted(cases, key=lambda c: c[0])


__all__ = ["IXI_CONTRASTS", "SourceCase", "list_source_cases", "patient_of"]
