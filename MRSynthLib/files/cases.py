"""Find the cases (one subject: contrast files, labels, brain mask) in a dataset folder.

Layouts:

* ``plain``: ``<root>/<case>/<contrast>.nii.gz`` with any contrast alias (``t1``, ``t1n``,
  ``t1c``, ``flair``, ...); ``labels``/``seg``/``lesion`` files are labels, ``brainmask``/``mask``
  the brain mask.
* ``brats2021``: ``<root>/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz``.
* ``brats2023``: ``<root>/<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz``.
* ``nnunet``: ``<root>/imagesTr|imagesTs/<case>_<channel:04d>.nii.gz`` (+ ``labelsTr/<case>``),
  channel names from ``<root>/dataset.json``.

Image files may end in .nii.gz, .nii, .nrrd, .nhdr, .mha or .mhd; other files are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from MRSynthLib.contrasts import canonical_contrast, is_contrast, squash_name
from MRSynthLib.errors import ContrastError, InputImageError

LAYOUTS: tuple[str, ...] = ("plain", "brats2021", "brats2023", "nnunet")
IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
LABEL_NAMES: frozenset[str] = frozenset(
    {"labels", "label", "seg", "segmentation", "lesion", "lesions", "lesionmask"}
)
BRAIN_MASK_NAMES: frozenset[str] = frozenset({"brainmask", "mask"})

_NNUNET_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class Case:
    """One subject's files.

    Attributes:
        case_id: folder name (or nnU-Net case identifier).
        images: canonical contrast (``t1``, ``t1ce``, ``t2``, ``flair``, ``pd``, ``ct``) -> file.
        labels: label map / segmentation file, if any.
        brain_mask: brain mask file, if any.
        layout: the layout the case was found with (one of :data:`LAYOUTS`).
    """

    case_id: str
    images: dict[str, Path]
    labels: Path | None
    brain_mask: Path | None
    layout: str


def split_image_name(path: Path) -> tuple[str, str] | None:
    """``(stem, lower-case suffix)`` of an image file name (``"T1.NII.GZ"`` -> ``("T1",
    ".nii.gz")``), or ``None`` when the name has no image suffix."""
    lower = path.name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return path.name[: -len(suffix)], suffix
    return None


def _image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted; hidden files (``._t1.nii.gz``) are skipped."""
    return sorted(
        p for p in folder.iterdir()
        if not p.name.startswith(".") and split_image_name(p) is not None and p.is_file()
    )


def _subfolders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))



def _role(key: str) -> str | None:
    """``"labels"``, ``"brain_mask"``, a canonical contrast, or None for an unrelated file."""
    squashed = squash_name(key)
    if squashed in LABEL_NAMES:
        return "labels"
    if squashed in BRAIN_MASK_NAMES:
        return "brain_mask"
    if is_contrast(key):
        return canonical_contrast(key)
    return None


def _key(stem: str, case_id: str, layout: str) -> str | None:
    """The contrast/label part of a file stem in ``layout``, or None if the name does not fit."""
    if layout == "plain":
        return stem
    separator = "_" if layout == "brats2021" else "-"
    prefix = case_id + separator
    if stem.lower().startswith(prefix.lower()) and len(stem) > len(prefix):
        return stem[len(prefix):]
    return None


def _case_from_folder(folder: Path, case_id: str, layout: str) -> Case | None:
    """The case in ``folder`` for a per-folder layout, or None when it holds no contrast file.

    Files whose names are neither a contrast nor a label/mask name are ignored.
    """
    found: dict[str, Path] = {}
    for path in _image_files(folder):
        key = _key(split_image_name(path)[0], case_id, layout)
        role = _role(key) if key is not None else None
        if role is None:
            continue
        if role in found:
            raise ContrastError(
                f"Case folder {folder} must hold one file per contrast, not both "
                f"{found[role].name} and {path.name} for {role}; remove or rename one."
            )
        found[role] = path
    labels, brain_mask = found.pop("labels", None), found.pop("brain_mask", None)
    if not found:
        return None
    return Case(case_id, found, labels, brain_mask, layout)


def _folder_cases(root: Path, layout: str, broken: list[tuple[str, str]] | None = None) -> list[Case]:
    """Cases of a per-folder layout: ``root`` itself when it directly holds contrast files (one
    case named after it), else one case per subfolder that holds contrast files. With ``broken``,
    a subfolder that cannot be a case is appended to it as ``(case_id, reason)`` instead of raising."""
    single = _case_from_folder(root, root.name, layout)
    if single is not None:
        return [single]
    cases = []
    for folder in _subfolders(root):
        try:
            case = _case_from_folder(folder, folder.name, layout)
        except ContrastError as error:
            if broken is None:
                raise
            broken.append((folder.name, str(error)))
            continue
        if case is not None:
            cases.append(case)
    return cases


def _nnunet_channels(root: Path, channel_map: dict[int, str] | None) -> dict[int, str]:
    """Channel index -> canonical contrast, from ``channel_map`` or ``dataset.json``."""
    if channel_map is not None:
        return {int(k): canonical_contrast(v) for k, v in channel_map.items()}
    dataset_json = root / "dataset.json"
    try:
        meta = json.loads(dataset_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputImageError(
            f"{dataset_json} must be readable JSON for the nnunet layout, not fail with "
            f"{type(error).__name__}: {error}; fix the file or pass channel_map."
        ) from None
    names = meta.get("channel_names", meta.get("modality")) if isinstance(meta, dict) else None
    if not isinstance(names, dict) or not names:
        raise InputImageError(
            f"{dataset_json} must have a \"channel_names\" (or \"modality\") mapping, not "
            f"{names!r}; add it or pass channel_map, e.g. {{0: 't1', 1: 'flair'}}."
        )
    channels = {}
    for index, name in names.items():
        if not is_contrast(str(name)):
            raise ContrastError(
                f"Channel {index} of {dataset_json} must name an MR contrast, not {name!r}; pass "
                "channel_map to say which channels are which contrast (others are ignored)."
            )
        if not str(index).strip().isdigit():
            raise InputImageError(
                f"Channel key {index!r} of {dataset_json} must be a channel number (\"0\", \"1\", ...); fix the file "
                "or pass channel_map.")
        channels[int(index)] = canonical_contrast(str(name))
    return channels


def _nnunet_cases(root: Path, channel_map: dict[int, str] | None) -> list[Case]:
    channels = _nnunet_channels(root, channel_map)
    seen: dict[str, str] = {}
    for index, contrast in sorted(channels.items()):
        if contrast in seen:
            raise ContrastError(
                f"nnU-Net channels {seen[contrast]} and {index} of {root} must be different "
                f"contrasts, not both {contrast}; fix dataset.json or pass channel_map."
            )
        seen[contrast] = str(index)
    cases: dict[str, Case] = {}
    for split in ("Tr", "Ts"):
        images_dir, labels_dir = root / f"images{split}", root / f"labels{split}"
        if not images_dir.is_dir():
            continue
        images: dict[str, dict[str, Path]] = {}
        for path in _image_files(images_dir):
            match = _NNUNET_FILE.match(split_image_name(path)[0])
            if match is None or int(match["channel"]) not in channels:
                continue
            case_id, contrast = match["case"], channels[int(match["channel"])]
            per_case = images.setdefault(case_id, {})
            if contrast in per_case:
                raise ContrastError(
                    f"nnU-Net folder {images_dir} must hold one file per case and channel, not "
                    f"both {per_case[contrast].name} and {path.name}; remove one."
                )
            per_case[contrast] = path
        labels = _labels_by_case(labels_dir)
        for case_id, files in images.items():
            if case_id in cases:
                raise InputImageError(
                    f"nnU-Net case ids must be unique across imagesTr and imagesTs of {root}, "
                    f"not repeat {case_id!r}; rename one."
                )
            cases[case_id] = Case(case_id, files, labels.get(case_id), None, "nnunet")
    return [cases[k] for k in sorted(cases)]


def _labels_by_case(labels_dir: Path) -> dict[str, Path]:
    if not labels_dir.is_dir():
        return {}
    labels: dict[str, Path] = {}
    for path in _image_files(labels_dir):
        labels.setdefault(split_image_name(path)[0], path)
    return labels


def _detect_layout(root: Path) -> str:
    """nnunet if dataset.json; brats2023/2021 if ``<case>-t1n``/``<case>_t1``-style names; plain."""
    if (root / "dataset.json").is_file():
        return "nnunet"
    for folder in [root] + _subfolders(root):
        for path in _image_files(folder):
            stem = split_image_name(path)[0]
            for layout in ("brats2023", "brats2021"):
                key = _key(stem, folder.name, layout)
                if key is not None and is_contrast(key):
                    return layout
    return "plain"


def discover_cases(
    root: str | Path, layout: str = "auto", channel_map: dict[int, str] | None = None,
    broken: list[tuple[str, str]] | None = None,
) -> list[Case]:
    """All cases under ``root``, sorted by case id.

    Args:
        root: dataset folder, or a single case folder (then one case named after the folder).
        layout: one of :data:`LAYOUTS`, or ``"auto"``: nnunet when ``root/dataset.json``
            exists, brats2023 / brats2021 when a file is named ``<folder>-t1n`` /
            ``<folder>_t1`` (any contrast alias), else plain.
        channel_map: nnU-Net channel index -> contrast, overriding ``dataset.json``; channels
            not listed are ignored.
        broken: when given, case folders that cannot be used (two files for one contrast) are
            appended here as ``(case_id, reason)`` and skipped, so the other cases still run.

    Raises:
        InputImageError: if ``root`` is not a folder or holds no case.
        ContrastError: if a case has two files for one contrast, or an nnU-Net channel is not a
            known contrast.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        state = "a file" if root.exists() else "missing"
        raise InputImageError(
            f"Dataset folder must be an existing folder, not {root} ({state}); check the path."
        )
    if layout != "auto" and layout not in LAYOUTS:
        raise InputImageError(
            f"`layout` must be auto or one of {', '.join(LAYOUTS)}, not {layout!r}."
        )
    chosen = _detect_layout(root) if layout == "auto" else layout
    cases = _nnunet_cases(root, channel_map) if chosen == "nnunet" else _folder_cases(root, chosen, broken)
    if not cases and not broken:
        tried = f"layout {chosen}" + (" (detected automatically)" if layout == "auto" else "")
        raise InputImageError(
            f"Dataset folder {root} must contain cases, not none found with {tried}; expected "
            "e.g. <case>/t1.nii.gz (plain), <case>/<case>_t1.nii.gz (brats2021), "
            "<case>/<case>-t1n.nii.gz (brats2023) or imagesTr/<case>_0000.nii.gz with "
            "dataset.json (nnunet)."
        )
    return cases
