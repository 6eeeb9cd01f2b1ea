"""Atomic file writes: a temp file in the target folder, then ``os.replace``.

A run killed mid-write leaves either the old file or nothing, never a partial file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from MRSynthLib.errors import OutputError


def _suffixes(path: Path) -> str:
    """Full multi-part suffix (``.nii.gz``), so writers that dispatch on extension still work."""
    return "".join(path.suffixes[-2:]) if path.name.endswith(".gz") else path.suffix


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Raises:
        OutputError: if ``path`` exists and ``overwrite`` is False, or its folder is not writable.
    """
    target = Path(path)
    check_writable(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".part{_suffixes(target)}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get the usual permissions
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def check_writable(path: str | os.PathLike, overwrite: bool) -> None:
    """Raise :class:`OutputError` unless ``path`` can be (over)written."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"Output {target} is a folder, not a file: give a file path such as {target / 'out.nii.gz'}.")
    if target.exists() and not overwrite:
        raise OutputError(f"Output {target} already exists: pass --overwrite to replace it, or choose another path.")
    folder = target.parent
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        blocker = "it is a file" if probe == folder else f"{probe} is a file"
        raise OutputError(f"Output folder {folder} cannot be created because {blocker}: choose another folder.")
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"Output folder {folder} is not writable: choose a folder you can write to.")


def write_text(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Atomically write a UTF-8 text file."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, data: object, overwrite: bool = False) -> Path:
    """Atomically write pretty-printed JSON."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", overwrite)
