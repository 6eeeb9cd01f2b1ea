"""Progress reporting: a bar on stderr for people, JSON lines on stdout for the Slicer module."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO


class Progress:
    """Report ``(stage, fraction)`` updates; ``mode`` is ``bar``, ``jsonl`` or ``none``.

    JSON lines look like ``{"event": "progress", "stage": "encode t1", "fraction": 0.2, "elapsed_s": 1.3}``;
    :meth:`done` and :meth:`error` emit ``{"event": "done", ...}`` / ``{"event": "error", "message": ...}``.
    """

    def __init__(self, mode: str = "bar", stream: TextIO | None = None) -> None:
        if mode not in ("bar", "jsonl", "none"):
            raise ValueError(f"progress mode must be bar, jsonl or none, not {mode!r}")
        self.mode = mode
        self.stream = stream
        self.start = time.perf_counter()
        self._stage = None

    def _emit(self, record: dict) -> None:
        record["elapsed_s"] = round(time.perf_counter() - self.start, 3)
        out = self.stream or sys.stdout
        out.write(json.dumps(record) + "\n")
        out.flush()

    def __call__(self, stage: str, fraction: float = 0.0) -> None:
        if self.mode == "jsonl":
            self._emit({"event": "progress", "stage": stage, "fraction": round(float(fraction), 4)})
        elif self.mode == "bar" and stage != self._stage:
            out = self.stream or sys.stderr
            out.write(f"[{time.perf_counter() - self.start:6.1f}s] {stage}\n")
            out.flush()
        self._stage = stage

    def done(self, **info) -> None:
        if self.mode == "jsonl":
            self._emit({"event": "done", **info})

    def error(self, message: str) -> None:
        if self.mode == "jsonl":
            self._emit({"event": "error", "message": message})
