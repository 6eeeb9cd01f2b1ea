"""Torch-free architecture config of :mod:`MRSynthLib.networks.wldm`: readable (``from_dict``) and
checked without importing torch; the network module re-exports it."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class WLDMDenoiserConfig:
    """Architecture of :class:`WLDMDenoiser`; ``contrasts`` fixes the slot order, ``split_channels`` = C."""

    spatial_dims: int = 3
    latent_channels: int = 4
    contrasts: tuple[str, ...] = ("t1", "t1ce", "t2", "flair", "pd")
    split_channels: int = 4
    channels: tuple[int, ...] = (32, 64)
    attention_channels: int = 16
    kv_pool: int = 2
    norm_num_groups: int = 8
    wavelet: bool = True

    def __post_init__(self) -> None:
        if len(self.channels) < 1:
            raise ValueError("channels must list at least one level width")
        if any(c % self.norm_num_groups for c in self.channels):
            raise ValueError(f"every entry of channels {list(self.channels)} must be divisible by "
                             f"norm_num_groups {self.norm_num_groups}")
        if self.kv_pool not in (1, 2, 4):
            raise ValueError(f"kv_pool must be 1, 2 or 4, not {self.kv_pool}")

    @property
    def multiple(self) -> int:
        """Latent sizes must be divisible by this (level halvings x the token pooling, every level even)."""
        return 2 ** (len(self.channels) - 1) * max(self.kv_pool, 2)

    @classmethod
    def from_dict(cls, data: dict) -> WLDMDenoiserConfig:
        data = dict(data)
        data["contrasts"] = tuple(data["contrasts"])
        data["channels"] = tuple(int(c) for c in data["channels"])
        return cls(**data)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["contrasts"] = list(self.contrasts)
        out["channels"] = list(self.channels)
        return out


__all__ = ['WLDMDenoiserConfig']
