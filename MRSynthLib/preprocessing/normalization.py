"""Per-contrast intensity normalisation, driven by the model card.

MR contrasts have no absolute unit: each is scaled by its own foreground percentiles. CT is calibrated
(Hounsfield units), so ``ct`` is mapped by a fixed HU window instead (``ct_window``: ``low`` HU → 0,
``high`` HU → 1, then the same ``clip``), which :func:`ct_to_hounsfield` inverts exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


DEFAULT_CT_WINDOW: tuple[float, float] = (-1000.0, 1000.0)
"""Hounsfield units mapped to 0 and 1 for ``ct`` unless a card says otherwise (air → 0, dense bone → 1)."""

AIR_HU = -1000.0
"""Background of a synthetic CT on the user's grid (outside the model's foreground)."""


@dataclass(frozen=True)
class NormalizationSpec:
    """Map the ``low``..``high`` percentiles of the foreground to 0..1, then clip to ``clip``.

    The same rule is applied to every MR contrast, at training and at inference; ``ct`` is mapped by the
    fixed Hounsfield window ``ct_window`` (``(low HU, high HU)`` → 0..1, then ``clip``).
    """

    method: str = "percentile"
    low: float = 0.5
    high: float = 99.5
    clip: tuple[float, float] = (0.0, 1.5)
    ct_window: tuple[float, float] = DEFAULT_CT_WINDOW

    def __post_init__(self) -> None:
        if self.method != "percentile":
            raise ValueError(f"normalization method must be 'percentile', not {self.method!r}")
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(f"normalization percentiles must satisfy 0 <= low < high <= 100, not {self.low}, {self.high}")
        if len(self.ct_window) != 2 or not self.ct_window[0] < self.ct_window[1]:
            raise ValueError(f"ct_window must be two increasing Hounsfield values [low, high], not {list(self.ct_window)}")

    @classmethod
    def from_dict(cls, data: dict) -> NormalizationSpec:
        data = dict(data)
        for key in ("clip", "ct_window"):
            if key in data:
                data[key] = tuple(float(v) for v in data[key])
        return cls(**data)

    def to_dict(self) -> dict:
        """JSON-able fields; ``ct_window`` only when it differs from the default (cards and cache keys written
        before CT support stay unchanged; a missing ``ct_window`` reads as the default)."""
        out = asdict(self)
        out["clip"] = tuple(self.clip)
        if tuple(self.ct_window) == DEFAULT_CT_WINDOW:
            out.pop("ct_window")
        else:
            out["ct_window"] = list(self.ct_window)
        return out

    def describe(self) -> str:
        return (
            f"each contrast scaled so its {self.low}th..{self.high}th foreground percentiles map to 0..1, "
            f"clipped to [{self.clip[0]}, {self.clip[1]}]"
        )

    def describe_ct(self) -> str:
        low, high = self.ct_window
        return (f"ct: fixed Hounsfield window, {low:g} HU -> 0 and {high:g} HU -> 1, clipped to "
                f"[{self.clip[0]}, {self.clip[1]}] (exactly invertible inside the clip range)")


def robust_range(array: np.ndarray, mask: np.ndarray | None, spec: NormalizationSpec) -> tuple[float, float]:
    """``(low, high)`` intensity percentiles of ``array`` inside ``mask`` (whole array when None or empty)."""
    values = array[mask] if mask is not None and mask.any() else array.ravel()
    low, high = np.percentile(values, [spec.low, spec.high])
    if high <= low:
        high = low + max(abs(float(low)), 1.0) * 1e-3
    return float(low), float(high)


def normalize(array: np.ndarray, mask: np.ndarray | None, spec: NormalizationSpec,
              contrast: str = "") -> tuple[np.ndarray, tuple[float, float]]:
    """Scale ``array`` (any shape) to ~0..1: robustly (foreground percentiles), or by ``spec.ct_window`` when
    ``contrast`` is ``ct``; returns the scaled float32 array and the intensity range mapped to 0..1."""
    if contrast == "ct":
        low, high = (float(v) for v in spec.ct_window)
    else:
        low, high = robust_range(array, mask, spec)
    scaled = (array.astype(np.float32) - low) / (high - low)
    np.clip(scaled, spec.clip[0], spec.clip[1], out=scaled)
    return scaled, (low, high)


def ct_to_hounsfield(scaled: np.ndarray, spec: NormalizationSpec) -> np.ndarray:
    """Inverse of the ``ct`` normalisation: ``low + scaled * (high - low)`` in HU (float32)."""
    low, high = (float(v) for v in spec.ct_window)
    return (low + np.asarray(scaled, np.float64) * (high - low)).astype(np.float32)
