"""Where things are: the repository, the real data beside it, and the mark for tests that need that data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def requires_shared_data():
    return pytest.mark.skipif(not (SHARED_DATA / "cases").is_dir(),
                              reason=f"real data folder {SHARED_DATA} is absent (only on development machines and CI)")
