"""Card (JSON) round trip of network configs whose ``contrasts`` slot order is a tuple."""

from __future__ import annotations

from dataclasses import asdict


class ContrastSlotsDict:
    """Mixin for frozen config dataclasses with a ``contrasts`` tuple: ``to_dict`` writes it as a list,
    ``from_dict`` reads it back as a tuple (other fields pass through unchanged)."""

    @classmethod
    def from_dict(cls, data: dict):
        data = dict(data)
        data["contrasts"] = tuple(data["contrasts"])
        return cls(**data)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["contrasts"] = list(out["contrasts"])
        return out
