"""Torch-free architecture config of :mod:`MRSynthLib.networks.autoencoder`: readable (``from_dict``) and
checked without importing torch; the network module re-exports it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from MRSynthLib.networks.configs.kl import KLConfig
from MRSynthLib.networks.configs.lhe import LHEConfig
from MRSynthLib.networks.configs.vq import VQConfig


_NESTED = {"vq": VQConfig, "kl": KLConfig, "lhe": LHEConfig}


LATENT_KINDS = ("fsq", "vq", "kl")


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of :class:`LatentAutoencoder`.

    ``channels[i]`` is the width of stage ``i``; every stage after the first halves the resolution,
    so the latent is ``2 ** (len(channels) - 1)`` times smaller along each axis. ``latent`` picks the
    bottleneck: ``fsq`` uses ``fsq_levels``, ``vq`` uses ``vq``, ``kl`` uses ``kl``.
    """

    spatial_dims: int = 3
    channels: tuple[int, ...] = (16, 32, 48)
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)
    full_resolution_residual: bool = True  # False drops the residual units of stage 0 (~half the compute)
    latent: str = "fsq"
    vq: VQConfig = field(default_factory=VQConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    lhe: LHEConfig = field(default_factory=LHEConfig)
    wavelet: bool = False
    hfib: bool = False

    def __post_init__(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, not {self.spatial_dims}")
        if self.latent not in LATENT_KINDS:
            raise ValueError(f"latent must be one of {', '.join(LATENT_KINDS)}, not {self.latent!r}")
        if not self.channels:
            raise ValueError("channels must list at least one stage width")

    @property
    def latent_channels(self) -> int:
        return {"fsq": len(self.fsq_levels), "vq": self.vq.dim, "kl": self.kl.channels}[self.latent]

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @classmethod
    def from_dict(cls, data: dict) -> AutoencoderConfig:
        """Inverse of :meth:`to_dict`; keys absent from older cards keep their defaults (the original
        FSQ architecture). Unknown keys raise ``TypeError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TypeError(f"unknown autoencoder keys {unknown}")
        values = dict(data)
        for key in ("channels", "fsq_levels"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        for key, kind in _NESTED.items():
            if key in values:
                nested = dict(values[key])
                for name, value in nested.items():
                    if isinstance(value, list):
                        nested[name] = tuple(value)
                values[key] = kind(**nested)
        return cls(**values)

    def to_dict(self) -> dict:
        def plain(value):
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return list(value) if isinstance(value, tuple) else value

        return plain(dataclasses.asdict(self))


__all__ = ['AutoencoderConfig', 'LATENT_KINDS']
