"""Shared fixtures: tiny synthetic volumes written in real formats, and the path of the real data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

from hypothesis import settings as _hypothesis_settings  # noqa: E402

from support.images import blob_array, make_image  # noqa: E402

# Property tests draw the same examples on every run (``make test`` and CI must not depend on luck: a random
# NIfTI header once hung ITK and the suite with it). MRSYNTH_FUZZ=1 explores new examples instead.
_hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
_hypothesis_settings.register_profile("explore", derandomize=False, database=None)
_hypothesis_settings.load_profile("explore" if os.environ.get("MRSYNTH_FUZZ") else "repeatable")

LEAK_PREFIXES = ("mrsynth", "tmp", ".onnx-export", "pymp-")
"""Names that tempfile (default prefix ``tmp``) and MRSynth's own temporary folders start with."""


@pytest.fixture(scope="session", autouse=True)
def temp_dir_left_as_found():
    """``make test`` leaves the system temp folder as it found it (pytest's own ``pytest-of-*`` aside)."""
    root = Path(tempfile.gettempdir())
    before = set(os.listdir(root))
    yield
    left = sorted(name for name in set(os.listdir(root)) - before if name.startswith(LEAK_PREFIXES))
    assert not left, f"tests left {len(left)} entries in {root}: {left[:10]}"


@pytest.fixture
def blob_image():
    return make_image(blob_array())


