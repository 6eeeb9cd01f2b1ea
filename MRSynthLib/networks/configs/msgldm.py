"""Torch-free architecture config of :mod:`MRSynthLib.networks.msgldm`: readable (``from_dict``) and
checked without importing torch; the network module re-exports it."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MSGLDMConfig:
    """Architecture of :class:`MSGLDM`.

    ``channels``: structure-encoder width per scale (scale ``i`` at latent size / ``2**i``);
    ``seg_classes``: segmentation classes (background + the configured label values);
    ``attention_width``/``attention_heads``/``attention_radius``: MSSE; ``denoiser_*``: the UNet.
    """

    spatial_dims: int = 3
    latent_channels: int = 4
    contrasts: tuple[str, ...] = ("t1", "t1ce", "t2", "flair", "pd")
    channels: tuple[int, ...] = (16, 32)
    style_dim: int = 8
    style_width: int = 16
    seg_classes: int = 4
    attention_width: int = 16
    attention_heads: int = 2
    attention_radius: int = 1
    denoiser_channels: tuple[int, ...] = (32, 64)
    denoiser_attention_levels: tuple[bool, ...] = (False, False)
    num_res_blocks: int = 1
    norm_num_groups: int = 8
    num_head_channels: int = 8

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError("channels must list at least one structure scale")
        if len(self.denoiser_attention_levels) != len(self.denoiser_channels):
            raise ValueError(f"denoiser_attention_levels must have one entry per denoiser level "
                             f"({len(self.denoiser_channels)}), not {len(self.denoiser_attention_levels)}")
        if any(c % self.norm_num_groups for c in self.denoiser_channels):
            raise ValueError(f"every entry of denoiser_channels {list(self.denoiser_channels)} must be divisible by "
                             f"norm_num_groups {self.norm_num_groups}")
        if self.seg_classes < 2:
            raise ValueError(f"seg_classes must be at least 2 (background + one label), not {self.seg_classes}")

    @property
    def multiple(self) -> int:
        """Latent sizes must be divisible by this (structure scales and denoiser levels halve them)."""
        return 2 ** max(len(self.channels) - 1, len(self.denoiser_channels) - 1)

    @classmethod
    def from_dict(cls, data: dict) -> MSGLDMConfig:
        data = dict(data)
        for key in ("contrasts", "channels", "denoiser_channels"):
            data[key] = tuple(data[key])
        data["denoiser_attention_levels"] = tuple(bool(a) for a in data["denoiser_attention_levels"])
        return cls(**data)

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("contrasts", "channels", "denoiser_channels", "denoiser_attention_levels"):
            out[key] = list(out[key])
        return out


__all__ = ['MSGLDMConfig']
