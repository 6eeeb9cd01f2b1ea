"""Torch-free architecture config of :mod:`MRSynthLib.networks.sscf`: readable (``from_dict``) and
checked without importing torch; the network module re-exports it."""

from __future__ import annotations

from dataclasses import dataclass

from MRSynthLib.networks.config_dicts import ContrastSlotsDict
from MRSynthLib.networks.configs.fusion import FusionConfig


@dataclass(frozen=True)
class SSCFConfig(ContrastSlotsDict):
    """Architecture of :class:`SSCFTranslator`; ``contrasts`` fixes the slot order, ``bank_size`` the
    memory capacity, ``top_k`` how many nearest prototypes the stochastic passes cycle through."""

    spatial_dims: int = 3
    latent_channels: int = 4
    contrasts: tuple[str, ...] = ("t1", "t1ce", "t2", "flair", "pd")
    hidden: int = 32
    num_blocks: int = 2
    dropout: float = 0.1
    bank_size: int = 256
    top_k: int = 3

    def __post_init__(self) -> None:
        if self.hidden < 2 or self.bank_size < 1 or self.top_k < 1:
            raise ValueError(f"hidden must be >= 2, bank_size and top_k >= 1, not {self.hidden}, {self.bank_size}, "
                             f"{self.top_k}")


    def fusion(self) -> FusionConfig:
        return FusionConfig(spatial_dims=self.spatial_dims, latent_channels=self.latent_channels,
                            contrasts=self.contrasts, hidden=self.hidden, num_blocks=self.num_blocks, dropout=self.dropout)


__all__ = ['SSCFConfig']
