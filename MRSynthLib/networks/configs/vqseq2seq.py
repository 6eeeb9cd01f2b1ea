"""Torch-free architecture config of :mod:`MRSynthLib.networks.vqseq2seq`: readable (``from_dict``) and
checked without importing torch; the network module re-exports it."""

from __future__ import annotations

from dataclasses import dataclass

from MRSynthLib.networks.config_dicts import ContrastSlotsDict


@dataclass(frozen=True)
class VQSeq2SeqConfig(ContrastSlotsDict):
    """Architecture of :class:`VQSeq2SeqTranslator`; ``contrasts`` fixes the code order.

    ``latent_channels``: the stage-1 latent (input and output); ``common_channels`` and ``codebook_size``:
    the VQ common latent; ``bounded``: the output ends in ``tanh`` (FSQ stage-1 codes lie in [-1, 1]).
    """

    spatial_dims: int = 3
    latent_channels: int = 4
    contrasts: tuple[str, ...] = ("t1", "t1ce", "t2", "flair", "pd")
    hidden: int = 48
    num_blocks: int = 2
    common_channels: int = 8
    codebook_size: int = 256
    codebook_decay: float = 0.99
    bounded: bool = True

    def __post_init__(self) -> None:
        if self.common_channels < 1 or self.hidden < 1 or self.num_blocks < 0:
            raise ValueError(f"common_channels and hidden must be >= 1 and num_blocks >= 0, not {self.common_channels}, "
                             f"{self.hidden}, {self.num_blocks}")


__all__ = ['VQSeq2SeqConfig']
