"""Detached voxel files of MetaImage (``ElementDataFile``) and NRRD (``data file``) headers stay beside the header.

Such a header may name any file on the machine as its voxels (``ElementDataFile = /etc/passwd`` is read as
an image by ITK, without a word). Before ITK opens a header, every data file it names must be a relative
path that resolves into the header's folder (or below) and exists; otherwise the read is refused in one
sentence naming both files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from MRSynthLib.errors import InputImageError

HEADER_BYTES = 1 << 16
"""Headers longer than this are not plausible; only this much is scanned."""
MAX_LISTED_FILES = 100_000

_METAIMAGE_FIELD = re.compile(r"^\s*ElementDataFile\s*=\s*(.*?)\s*$", re.IGNORECASE)
_NRRD_FIELD = re.compile(r"^\s*data ?file\s*:\s*(.*?)\s*$", re.IGNORECASE)
_PATTERN = re.compile(r"^(\S*%\S*)\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)(\s+\d+)?$")


def _header_lines(path: Path, nrrd: bool) -> list[str]:
    with open(path, "rb") as stream:
        head = stream.read(HEADER_BYTES)
    text = head.decode("latin-1")
    if nrrd:  # the header ends at the first empty line (an attached header is followed by binary voxels)
        text = re.split(r"\r?\n\r?\n", text, maxsplit=1)[0]
    return text.splitlines()  # MetaImage: the first ElementDataFile line ends the header


def referenced_files(path: str | os.PathLike) -> list[str]:
    """Data file names a ``.mhd/.mha/.nhdr/.nrrd`` header points to (empty when the voxels are inside it)."""
    p = Path(path)
    suffix = p.name.lower().rsplit(".", 1)[-1]
    if suffix not in ("mhd", "mha", "nhdr", "nrrd"):
        return []
    nrrd = suffix in ("nhdr", "nrrd")
    lines = _header_lines(p, nrrd)
    field = _NRRD_FIELD if nrrd else _METAIMAGE_FIELD
    for index, line in enumerate(lines):
        match = field.match(line)
        if match is None:
            continue
        value = match.group(1)
        if not nrrd and value.upper() == "LOCAL":
            return []
        if value.split()[:1] and value.split()[0].upper() == "LIST":
            names = []
            for item in lines[index + 1:]:
                if not item.strip():
                    break
                names.append(item.strip())
                if len(names) > MAX_LISTED_FILES:
                    break
            return names
        pattern = _PATTERN.match(value)
        if pattern is not None:
            fmt, first, last, step = pattern.group(1), int(pattern.group(2)), int(pattern.group(3)), int(pattern.group(4))
            if step == 0 or (last - first) // step + 1 > MAX_LISTED_FILES:
                return [fmt]  # refused below as not found
            try:
                return [fmt % number for number in range(first, last + (1 if step > 0 else -1), step)]
            except (TypeError, ValueError):
                return [fmt]
        return [value]
    return []


def check_detached_data(path: str | os.PathLike, role: str) -> None:
    """Raise :class:`InputImageError` when the header at ``path`` points outside its folder or at a missing file."""
    p = Path(path)
    try:
        names = referenced_files(p)
    except OSError:
        return  # unreadable: ITK's own read reports it
    folder = Path(os.path.realpath(p.parent))
    for name in names:
        target = Path(name)
        resolved = Path(os.path.realpath(folder / target))
        if target.is_absolute() or folder not in resolved.parents:
            raise InputImageError(
                f"{role} header {p} names its voxel file {name!r}, outside the header's folder: keep detached data "
                f"files beside the header (same folder or below) and name them relative to it.")
        if not resolved.is_file():
            raise InputImageError(
                f"{role} header {p} names its voxel file {name!r}, which does not exist beside it: copy the data file "
                f"next to the header.")
