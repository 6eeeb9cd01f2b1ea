"""Torch-free architecture config of :mod:`MRSynthLib.networks.targetcode`: readable (``from_dict``) and
checked without importing torch; the network module re-exports it."""

from __future__ import annotations

from dataclasses import dataclass

from MRSynthLib.networks.config_dicts import ContrastSlotsDict


@dataclass(frozen=True)
class TargetCodeConfig(ContrastSlotsDict):
    """Architecture of :class:`TargetCodeTranslator`; ``contrasts`` fixes the code order."""

    spatial_dims: int = 3
    latent_channels: int = 4
    contrasts: tuple[str, ...] = ("t1", "t1ce", "t2", "flair", "pd")
    hidden: int = 48
    num_blocks: int = 2
    dropout: float = 0.1


__all__ = ['TargetCodeConfig']
