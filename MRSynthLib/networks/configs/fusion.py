"""Torch-free architecture config of :mod:`MRSynthLib.networks.fusion`: readable (``from_dict``) and
checked without importing torch; the network module re-exports it."""

from __future__ import annotations

from dataclasses import dataclass

from MRSynthLib.networks.config_dicts import ContrastSlotsDict


@dataclass(frozen=True)
class FusionConfig(ContrastSlotsDict):
    """Architecture of :class:`FusionTranslator`; ``contrasts`` fixes the order of input slots."""

    spatial_dims: int = 3
    latent_channels: int = 4
    contrasts: tuple[str, ...] = ("t1", "t1ce", "t2", "flair", "pd")
    hidden: int = 64
    num_blocks: int = 2
    dropout: float = 0.1
    body_levels: int = 0
    """2x downsamplings of the body (0: ``num_blocks`` residual units at the latent grid; L > 0: a residual
    U-Net whose coarsest level sees 2**L times the latent spacing, ``num_blocks`` units there; latent grids
    must then be divisible by 2**L, see :attr:`latent_multiple`)."""

    def __post_init__(self) -> None:
        if not 0 <= self.body_levels <= 4:
            raise ValueError(f"translator body_levels must be 0..4, not {self.body_levels}")

    @property
    def latent_multiple(self) -> int:
        """Every latent axis must be a multiple of this (``2 ** body_levels``)."""
        return 2 ** self.body_levels

    def to_dict(self) -> dict:
        """Card fields; ``body_levels`` only when set (cards of the single-scale body stay unchanged)."""
        out = super().to_dict()
        if self.body_levels == 0:
            out.pop("body_levels")
        return out


__all__ = ['FusionConfig']
