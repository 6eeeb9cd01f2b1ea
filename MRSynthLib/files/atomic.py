"""Atomic file writes: a temp file in the target folder, flushed to disk, then renamed onto the target.

A run killed mid-write (or a power cut after the rename) leaves either the old file or nothing at the
target, never a partial file; a killed run may leave its hidden ``.<name>.<random>.part<suffix>`` temp file.
Without ``overwrite`` the final step is a hard link, which fails if another process created the target
in the meantime, so even concurrent runs never replace each other's outputs.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from MRSynthLib.errors import OutputError


def _suffixes(path: Path) -> str:
    """Full multi-part suffix (``.nii.gz``), so writers that dispatch on extension still work."""
    return "".join(path.suffixes[-2:]) if path.name.lower().endswith(".gz") else path.suffix


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Raises:
        OutputError: if ``path`` exists and ``overwrite`` is False, or its folder is not writable.
    """
    target = Path(path)
    check_writable(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    # lower-case suffix: ITK picks its writer by the (case-sensitive) extension, so OUT.NII.GZ is written as .nii.gz
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".part{_suffixes(target).lower()}",
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get the usual permissions
        _fsync(tmp, strict=True)
        if overwrite:
            os.replace(tmp, target)
        else:
            _link_new(tmp, target)
        _fsync(target.parent)
    except OSError as error:  # disk full, quota, I/O error: one sentence, no file under the final name
        raise OutputError(_write_failure(target, error)) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def stale_temps(path: str | os.PathLike) -> list[Path]:
    """The hidden temp files of :func:`atomic_path` for ``path`` that exist now (a killed writer leaves one behind).
    Only a caller that knows no other writer of ``path`` is running may delete them."""
    target = Path(path)
    if not target.parent.is_dir():
        return []
    return sorted(target.parent.glob(f".{glob.escape(target.name)}.*.part{glob.escape(_suffixes(target).lower())}"))


def _write_failure(target: Path, error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return (f"Output {target} could not be written: {os.strerror(error.errno).lower()} in {target.parent}; free "
                f"space there or choose another folder (nothing was written under that name).")
    return (f"Output {target} could not be written ({error.strerror or error}); check the folder {target.parent} "
            f"(nothing was written under that name).")


def _link_new(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the name ``target`` only if nothing has that name yet (atomic on POSIX file systems)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise OutputError(f"Output {target} was created by another process meanwhile: pass --overwrite to replace it, "
                          f"or choose another path.") from None
    except OSError:  # no hard links on this file system (FAT, some network shares): check, then rename
        if target.exists():
            raise OutputError(f"Output {target} was created by another process meanwhile: pass --overwrite to "
                              f"replace it, or choose another path.") from None
        os.replace(tmp, target)


def _fsync(path: Path, strict: bool = False) -> None:
    """Flush a file's (or a folder's entries') data to disk; best effort where the OS does not support it.

    ``strict``: an error that means the data did not reach the disk (no space, quota, I/O) is raised."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:
        if strict and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise
    finally:
        os.close(fd)


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


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike, *, copy_existing: bool = False,
                  ignore: Callable[[str, list[str]], set[str]] | None = None) -> Iterator[Path]:
    """Yield a hidden sibling folder to fill; when the block succeeds it takes ``target``'s name.

    The swap moves an existing ``target`` aside, renames the staged folder into place, then deletes the old
    one, so ``target`` is always either the complete old folder or the complete new one (a bundle, a cache
    entry). On failure the staged folder is removed and ``target`` is untouched.

    Args:
        copy_existing: start from a copy of ``target`` (edit in place, e.g. add ONNX graphs to a bundle).
        ignore: ``shutil.copytree`` ignore callable for that copy.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging = root / target.name
    try:
        if copy_existing:
            shutil.copytree(target, staging, ignore=ignore)
        else:
            staging.mkdir()
        staging.chmod(0o755)
        yield staging
        aside = root / ".previous"
        if target.exists():
            target.rename(aside)
        staging.rename(target)
    finally:
        shutil.rmtree(root)
