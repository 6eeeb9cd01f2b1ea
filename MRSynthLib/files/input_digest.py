"""What exact bytes a file holds: sha256 of files (bundle weights, inputs), and of each input as recorded in every sidecar.

A file's digest is the sha256 of its bytes. A DICOM series folder's digest is the sha256 of its regular files'
names and sha256s in name order (``"<name> <sha256>\\n"`` lines), so renaming, adding or changing any file in
the folder changes it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path



def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-byte blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def input_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of an input file, or of a DICOM folder's file list and contents (see module doc)."""
    p = Path(path)
    if not p.is_dir():
        return sha256_file(p)
    digest = hashlib.sha256()
    for entry in sorted(p.iterdir(), key=lambda e: e.name):
        if entry.is_file():
            digest.update(f"{entry.name} {sha256_file(entry)}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
