"""Planned outputs never touch an input, and never each other (docs/RELIABILITY.md, "output planner").

Every command resolves all the files it will write (volumes, sidecars, reports) before any work and
passes them here with the files it reads. A run is refused, whatever ``--overwrite`` says, when

- an output is the same file as an input, a reference, a mask or a label map — compared by device and
  inode, so symlinks, hard links and case variants on case-insensitive file systems are caught — or
  lies inside an input folder (a DICOM series);
- two outputs are one file (the same resolved folder and a name equal up to case, so a run behaves the
  same on case-insensitive file systems).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from MRSynthLib.errors import OutputError

Role = tuple[str, "str | os.PathLike"]
"""``(what the user called it, path)``, e.g. ``("--input t1", "t1.nii.gz")`` or ``("sidecar of --output", ...)``."""


IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def image_reads(images: dict[str, "str | os.PathLike"], flag: str = "--input") -> list[Role]:
    """Roles of input images and of their JSON sidecars (``t1.nii.gz`` → ``t1.json``, e.g. a BIDS sidecar):
    ``{"t1": path}`` → ``[("--input t1", path), ("sidecar of --input t1", path.json)]``."""
    roles: list[Role] = []
    for name, raw in images.items():
        path = Path(raw)
        roles.append((f"{flag} {name}", path))
        suffix = next((s for s in IMAGE_SUFFIXES if path.name.lower().endswith(s)), None)
        if suffix is not None:
            roles.append((f"sidecar of {flag} {name}", path.with_name(path.name[: -len(suffix)] + ".json")))
    return roles


def file_identity(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(device, inode)`` of an existing file or folder (the same for symlinks and hard links), else None."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _name_key(path: Path) -> tuple[object, str]:
    """The resolved folder (by inode when it exists) and the case-folded file name."""
    folder = Path(os.path.realpath(path.parent if str(path.parent) else "."))
    return (file_identity(folder) or str(folder)), path.name.casefold()


def check_outputs(outputs: Iterable[Role], inputs: Iterable[Role] = ()) -> None:
    """Raise :class:`OutputError` (one sentence naming both paths) when an output would overwrite an input, land in
    an input folder, or collide with another output."""
    sources = []
    for role, raw in inputs:
        if raw is None:
            continue
        path = Path(raw)
        sources.append((role, path, file_identity(path), Path(os.path.realpath(path)) if path.is_dir() else None))
    seen: dict[object, tuple[str, Path]] = {}
    for role, raw in outputs:
        path = Path(raw)
        identity = file_identity(path)
        resolved = Path(os.path.realpath(path))
        for source_role, source, source_key, source_folder in sources:
            if identity is not None and identity == source_key:
                raise OutputError(
                    f"{role} {path} is the same file as {source_role} {source}: choose another output path "
                    f"(MRSynth never writes over what it reads, with or without --overwrite).")
            if source_folder is not None and source_folder in resolved.parents:
                raise OutputError(
                    f"{role} {path} lies inside the folder of {source_role} {source}: write outputs outside input "
                    f"folders.")
        for key in filter(None, (identity, _name_key(path))):
            if key in seen:
                other_role, other = seen[key]
                raise OutputError(
                    f"{role} {path} and {other_role} {other} would be the same file: give each output its own path "
                    f"(names differing only in case count as the same).")
            seen[key] = (role, path)
