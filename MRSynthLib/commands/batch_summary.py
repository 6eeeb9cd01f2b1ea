"""``summary.csv`` of ``mrsynth batch``, rewritten atomically as case results arrive.

Rows are kept sorted by case. The file is replaced whole (temp file + rename, :mod:`MRSynthLib.files.atomic`) after every
result while it has at most ``eager_rows`` rows, then at most every ``interval_s`` seconds, and once at the end; so a
batch killed mid-run leaves a complete summary of what had finished (in a large batch: up to ``interval_s`` before;
the outputs of those later cases are complete on disk, and ``--resume`` reports them as skipped).
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from MRSynthLib.files.atomic import write_text
from MRSynthLib.commands.batch_case import SUMMARY_FIELDS, remove_stale_temps


class SummaryWriter:
    """Collect summary rows and keep ``path`` up to date."""

    def __init__(self, path: Path, interval_s: float = 2.0, eager_rows: int = 1000) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self.eager_rows = eager_rows
        self.rows: list[dict] = []
        self._written_at: float | None = None
        self._dirty = False

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self._dirty = True
        if (len(self.rows) <= self.eager_rows or self._written_at is None
                or time.monotonic() - self._written_at >= self.interval_s):
            self.flush()

    def flush(self) -> None:
        """Write every row now (when anything changed since the last write)."""
        if not self._dirty:
            return
        if self._written_at is None:  # this batch owns summary.csv: drop what a killed earlier batch left
            remove_stale_temps([self.path])
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(sorted(self.rows, key=lambda r: r["case"]))
        write_text(self.path, buffer.getvalue(), overwrite=True)
        self._written_at = time.monotonic()
        self._dirty = False

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.rows)
