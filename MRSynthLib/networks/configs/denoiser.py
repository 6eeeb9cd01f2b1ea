"""Torch-free architecture config of :mod:`MRSynthLib.networks.denoiser`: readable (``from_dict``) and
checked without importing torch; the network module re-exports it."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture of :class:`LatentDenoiser`; ``contrasts`` fixes the slot order (same as the fusion translator)."""

    spatial_dims: int = 3
    latent_channels: int = 4
    contrasts: tuple[str, ...] = ("t1", "t1ce", "t2", "flair", "pd")
    channels: tuple[int, ...] = (32, 64)
    num_res_blocks: int = 1
    attention_levels: tuple[bool, ...] = (False, False)
    norm_num_groups: int = 8
    num_head_channels: int = 8
    guidance: bool = True

    def __post_init__(self) -> None:
        if len(self.attention_levels) != len(self.channels):
            raise ValueError(f"attention_levels must have one entry per level ({len(self.channels)}), "
                             f"not {len(self.attention_levels)}")
        if any(c % self.norm_num_groups for c in self.channels):
            raise ValueError(f"every entry of channels {list(self.channels)} must be divisible by "
                             f"norm_num_groups {self.norm_num_groups}")

    @property
    def condition_channels(self) -> int:
        m, lat = len(self.contrasts), self.latent_channels
        return m * lat + 2 * m + (lat if self.guidance else 0)

    @property
    def multiple(self) -> int:
        """Latent sizes must be divisible by this (one halving per level after the first)."""
        return 2 ** (len(self.channels) - 1)

    @classmethod
    def from_dict(cls, data: dict) -> DenoiserConfig:
        data = dict(data)
        data["contrasts"] = tuple(data["contrasts"])
        data["channels"] = tuple(int(c) for c in data["channels"])
        data["attention_levels"] = tuple(bool(a) for a in data["attention_levels"])
        return cls(**data)

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("contrasts", "channels", "attention_levels"):
            out[key] = list(out[key])
        return out


__all__ = ['DenoiserConfig']
