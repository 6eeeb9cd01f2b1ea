"""One overall progress value (0..1) from the child's ``(stage, fraction within the stage)`` events.

The command line reports stages such as ``read``, ``register t2``, ``preprocess``, ``encode t1``,
``translate``, ``decode``, ``uncertainty``, ``postprocess`` and ``write``, each with a fraction of that
stage. Each stage family owns a slice of the bar; the bar never moves backwards, and unknown stages
keep it where it is.
"""

from __future__ import annotations

# (stage family, start, end) in pipeline order.
STAGE_SPANS: tuple[tuple[str, float, float], ...] = (
    ("read", 0.0, 0.05),
    ("register", 0.05, 0.15),
    ("preprocess", 0.15, 0.2),
    ("encode", 0.2, 0.4),
    ("translate", 0.4, 0.5),
    ("decode", 0.5, 0.6),
    ("uncertainty", 0.6, 0.9),
    ("blend", 0.9, 0.9),
    ("postprocess", 0.9, 0.95),
    ("write", 0.95, 1.0),
)


def stage_family(stage: str) -> str:
    """``"encode t1"`` → ``"encode"``: the first word of a stage name."""
    return stage.strip().split(" ", 1)[0].lower() if stage else ""


class ProgressTracker:
    """Turns stage events into a monotonic overall fraction."""

    def __init__(self) -> None:
        self.overall = 0.0

    def update(self, stage: str, fraction: float) -> float:
        family = stage_family(stage)
        for name, start, end in STAGE_SPANS:
            if name == family:
                fraction = min(max(float(fraction), 0.0), 1.0)
                self.overall = max(self.overall, start + (end - start) * fraction)
                break
        return self.overall

    def finish(self) -> float:
        self.overall = 1.0
        return self.overall
