"""Shared fixtures: tiny synthetic volumes written in real formats, and the path of the real data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

from hypothesis import settings as _hypothesis_settings  # noqa: E402

# Property tests draw the same examples on every run (``make test`` and CI must not depend on luck: a random
# NIfTI header once hung ITK and the suite with it). MRSYNTH_FUZZ=1 explores new examples instead.
_hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
_hypothesis_settings.register_profile("explore", derandomize=False, database=None)
_hypothesis_settings.load_profile("explore" if os.environ.get("MRSYNTH_FUZZ") else "repeatable")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def blob_array(shape=(20, 24, 28), seed=0) -> np.ndarray:
    """Smooth positive ``(z, y, x)`` volume with a bright ellipsoid 'head' and some structure."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    head = ((zz / 0.8) ** 2 + (yy / 0.85) ** 2 + (xx / 0.9) ** 2) < 1
    texture = np.sin(3 * xx + rng.uniform(0, 3)) * np.cos(2 * yy) + 0.5 * zz
    return (head * (100 + 40 * texture)).astype(np.float32)


def make_image(array: np.ndarray, spacing=(1.0, 1.2, 1.5), origin=(-10.0, 5.0, 3.0), direction=None):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


LEAK_PREFIXES = ("mrsynth", "tmp", ".onnx-export", "pymp-")
"""Names that tempfile (default prefix ``tmp``) and MRSynth's own temporary folders start with."""


def synthesize_without_torch(arguments: list[str], timeout: float = 120.0):
    """``mrsynth synthesize <arguments>`` in a fresh interpreter where ``import torch`` and ``import monai`` fail
    (and torch is checked never to be imported); returns the finished ``subprocess.CompletedProcess``."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['torch'] = None; sys.modules['monai'] = None\n"
        "from MRSynthLib.commands.cli import main\n"
        f"code = main(['synthesize', *{[str(a) for a in arguments]!r}])\n"
        "assert sys.modules.get('torch') is None\n"
        "sys.exit(code)\n"
    )
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=timeout)


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


def requires_shared_data():
    return pytest.mark.skipif(not (SHARED_DATA / "cases").is_dir(),
                              reason=f"real data folder {SHARED_DATA} is absent (only on development machines and CI)")
