"""A small convolutional autoencoder with an FSQ latent, shared by all contrasts (RSF stage 1).

One single-channel network encodes any MR contrast into the same latent space, so a translator
only has to move between latent codes. No normalisation layers: the network is trained on patches
and applied to whole volumes, where per-instance statistics would differ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from MRSynthLib.networks.fsq import FSQ

ACTIVATION = ("leakyrelu", {"negative_slope": 0.1})


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of :class:`FSQAutoencoder`.

    ``channels[i]`` is the width of stage ``i``; every stage after the first halves the resolution,
    so the latent is ``2 ** (len(channels) - 1)`` times smaller along each axis.
    """

    spatial_dims: int = 3
    channels: tuple[int, ...] = (16, 32, 48)
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)
    full_resolution_residual: bool = True  # False drops the residual units of stage 0 (~half the compute)

    @property
    def latent_channels(self) -> int:
        return len(self.fsq_levels)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @classmethod
    def from_dict(cls, data: dict) -> AutoencoderConfig:
        return cls(
            spatial_dims=int(data.get("spatial_dims", 3)),
            channels=tuple(int(c) for c in data["channels"]),
            fsq_levels=tuple(int(v) for v in data["fsq_levels"]),
            full_resolution_residual=bool(data.get("full_resolution_residual", True)),
        )

    def to_dict(self) -> dict:
        out = asdict(self)
        out["channels"] = list(self.channels)
        out["fsq_levels"] = list(self.fsq_levels)
        return out


def _conv(config: AutoencoderConfig, cin: int, cout: int, stride: int = 1, kernel: int = 3, plain: bool = False):
    return Convolution(
        config.spatial_dims, cin, cout, strides=stride, kernel_size=kernel, act=ACTIVATION, norm=None, conv_only=plain
    )


def _res(config: AutoencoderConfig, channels: int) -> ResidualUnit:
    return ResidualUnit(config.spatial_dims, channels, channels, subunits=2, act=ACTIVATION, norm=None)


class Encoder(nn.Module):
    """``(B, 1, *S)`` image → ``(B, L, *S / downsampling)`` continuous latent (before FSQ)."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        c = config.channels
        layers: list[nn.Module] = [_conv(config, 1, c[0])]
        if config.full_resolution_residual:
            layers.append(_res(config, c[0]))
        for cin, cout in zip(c[:-1], c[1:]):
            layers += [_conv(config, cin, cout, stride=2), _res(config, cout)]
        layers.append(_conv(config, c[-1], config.latent_channels, kernel=1, plain=True))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


class Decoder(nn.Module):
    """``(B, L, *s)`` latent codes → ``(B, 1, *s * downsampling)`` image."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        c = tuple(reversed(config.channels))
        layers: list[nn.Module] = [_conv(config, config.latent_channels, c[0]), _res(config, c[0])]
        for i, (cin, cout) in enumerate(zip(c[:-1], c[1:])):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(config, cin, cout)]
            if config.full_resolution_residual or i < len(c) - 2:
                layers.append(_res(config, cout))
        layers.append(_conv(config, c[-1], 1, plain=True))
        self.net = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net(codes)


class FSQAutoencoder(nn.Module):
    """Encoder → FSQ → decoder. ``forward`` returns ``(reconstruction, codes)``."""

    def __init__(self, config: AutoencoderConfig = AutoencoderConfig()) -> None:
        super().__init__()
        if config.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, not {config.spatial_dims}")
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = FSQ(config.fsq_levels)
        self.decoder = Decoder(config)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 1, *S)`` → quantised codes ``(B, L, *S / downsampling)``; ``S`` divisible by it."""
        return self.quantizer(self.encoder(image))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(codes)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.encode(image)
        return self.decode(codes), codes
