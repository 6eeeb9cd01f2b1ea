"""Per-contrast robust intensity normalisation, driven by the model card."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class NormalizationSpec:
    """Map the ``low``..``high`` percentiles of the foreground to 0..1, then clip to ``clip``.

    The same rule is applied to every contrast, at training and at inference.
    """

    method: str = "percentile"
    low: float = 0.5
    high: float = 99.5
    clip: tuple[float, float] = (0.0, 1.5)

    def __post_init__(self) -> None:
        if self.method != "percentile":
            raise ValueError(f"normalization method must be 'percentile', not {self.method!r}")
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(f"normalization percentiles must satisfy 0 <= low < high <= 100, not {self.low}, {self.high}")

    @classmethod
    def from_dict(cls, data: dict) -> NormalizationSpec:
        data = dict(data)
        if "clip" in data:
            data["clip"] = tuple(data["clip"])
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"each contrast scaled so its {self.low}th..{self.high}th foreground percentiles map to 0..1, "
            f"clipped to [{self.clip[0]}, {self.clip[1]}]"
        )


def robust_range(array: np.ndarray, mask: np.ndarray | None, spec: NormalizationSpec) -> tuple[float, float]:
    """``(low, high)`` intensity percentiles of ``array`` inside ``mask`` (whole array when None or empty)."""
    values = array[mask] if mask is not None and mask.any() else array.ravel()
    low, high = np.percentile(values, [spec.low, spec.high])
    if high <= low:
        high = low + max(abs(float(low)), 1.0) * 1e-3
    return float(low), float(high)


def normalize(array: np.ndarray, mask: np.ndarray | None, spec: NormalizationSpec) -> tuple[np.ndarray, tuple[float, float]]:
    """Robustly scale ``array`` (any shape) to ~0..1; returns the scaled float32 array and the range used."""
    low, high = robust_range(array, mask, spec)
    scaled = (array.astype(np.float32) - low) / (high - low)
    np.clip(scaled, spec.clip[0], spec.clip[1], out=scaled)
    return scaled, (low, high)
