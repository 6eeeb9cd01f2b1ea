"""A small convolutional autoencoder shared by all contrasts (RSF stage 1), with a choice of latent.

One single-channel network encodes any MR contrast into the same latent space, so a translator
only has to move between latent codes. No normalisation layers: the network is trained on patches
and applied to whole volumes, where per-instance statistics would differ (LHE's channel alignment is
the one exception, by the method's design; see :mod:`MRSynthLib.networks.lhe`).

Latents: ``fsq`` (finite scalar quantisation, the default), ``vq`` (EMA codebook), ``kl`` (Gaussian,
mean at inference). Optional parts, each off by default so that the default config is the original
architecture: RSF's LHE (slice-wise transformer branch in the last encoder stage), 3D-WLDM's wavelet
residual block after every encoder and decoder stage, MSG-LDM's HFIB after every encoder stage.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from MRSynthLib.networks.fsq import FSQ
from MRSynthLib.networks.hfib import HighFrequencyInjection
from MRSynthLib.networks.kl import GaussianLatent
from MRSynthLib.networks.lhe import SliceTransformerEnhancement
from MRSynthLib.networks.vq import VectorQuantizer
from MRSynthLib.networks.wavelet import WaveletResidualBlock
from MRSynthLib.networks.configs.autoencoder import AutoencoderConfig  # noqa: F401  (re-exported)

ACTIVATION = ("leakyrelu", {"negative_slope": 0.1})


def _conv(config: AutoencoderConfig, cin: int, cout: int, stride: int = 1, kernel: int = 3, plain: bool = False):
    return Convolution(
        config.spatial_dims, cin, cout, strides=stride, kernel_size=kernel, act=ACTIVATION, norm=None, conv_only=plain
    )


def _res(config: AutoencoderConfig, channels: int) -> ResidualUnit:
    return ResidualUnit(config.spatial_dims, channels, channels, subunits=2, act=ACTIVATION, norm=None)


def _encoder_extras(config: AutoencoderConfig, channels: int) -> list[nn.Module]:
    extras: list[nn.Module] = []
    if config.hfib:
        extras.append(HighFrequencyInjection(config.spatial_dims, channels))
    if config.wavelet:
        extras.append(WaveletResidualBlock(config.spatial_dims, channels))
    return extras


class Encoder(nn.Module):
    """``(B, 1, *S)`` image → ``(B, out_channels, *S / downsampling)`` continuous latent (before the bottleneck)."""

    def __init__(self, config: AutoencoderConfig, out_channels: int) -> None:
        super().__init__()
        c = config.channels
        layers: list[nn.Module] = [_conv(config, 1, c[0])]
        if config.full_resolution_residual:
            layers.append(_res(config, c[0]))
        layers += _encoder_extras(config, c[0])
        for cin, cout in zip(c[:-1], c[1:]):
            layers += [_conv(config, cin, cout, stride=2), _res(config, cout)] + _encoder_extras(config, cout)
        layers.append(_conv(config, c[-1], out_channels, kernel=1, plain=True))
        self.net = nn.Sequential(*layers)
        self.lhe = (SliceTransformerEnhancement(config.lhe, config.spatial_dims, c[-1], config.downsampling)
                    if config.lhe.enabled else None)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.lhe is None:
            return self.net(image)
        return self.net[-1](self.lhe(self.net[:-1](image), image))


class Decoder(nn.Module):
    """``(B, L, *s)`` latent → ``(B, 1, *s * downsampling)`` image."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        c = tuple(reversed(config.channels))
        wavelet = [WaveletResidualBlock(config.spatial_dims, c[0])] if config.wavelet else []
        layers: list[nn.Module] = [_conv(config, config.latent_channels, c[0]), _res(config, c[0])] + wavelet
        for i, (cin, cout) in enumerate(zip(c[:-1], c[1:])):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(config, cin, cout)]
            if config.full_resolution_residual or i < len(c) - 2:
                layers.append(_res(config, cout))
            if config.wavelet:
                layers.append(WaveletResidualBlock(config.spatial_dims, cout))
        layers.append(_conv(config, c[-1], 1, plain=True))
        self.net = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent)


class AutoencoderOutput(NamedTuple):
    """``reconstruction`` ``(B, 1, *S)``; ``latent`` ``(B, L, *s)`` = the decoder's input (quantised codes,
    or the KL sample in training / mean in eval, unscaled); ``regularizer`` scalar (VQ commitment loss,
    KL divergence, 0 for FSQ)."""

    reconstruction: torch.Tensor
    latent: torch.Tensor
    regularizer: torch.Tensor


def build_bottleneck(config: AutoencoderConfig) -> nn.Module:
    """The latent module: :class:`FSQ`, :class:`VectorQuantizer` or :class:`GaussianLatent`."""
    if config.latent == "vq":
        return VectorQuantizer(config.vq)
    if config.latent == "kl":
        return GaussianLatent(config.kl)
    return FSQ(config.fsq_levels)


class LatentAutoencoder(nn.Module):
    """Encoder → latent bottleneck → decoder. ``forward`` returns an :class:`AutoencoderOutput`."""

    def __init__(self, config: AutoencoderConfig = AutoencoderConfig()) -> None:
        super().__init__()
        self.config = config
        self.bottleneck = build_bottleneck(config)
        self.encoder = Encoder(config, self.bottleneck.encoder_channels)
        self.decoder = Decoder(config)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 1, *S)`` → inference latent ``(B, L, *S / downsampling)`` (FSQ/VQ codes, KL mean × scale);
        ``S`` divisible by the downsampling."""
        return self.bottleneck.inference_latent(self.encoder(image))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode`: ``(B, L, *s)`` → ``(B, 1, *s * downsampling)``."""
        return self.decoder(self.bottleneck.to_decoder(latent))

    def forward(self, image: torch.Tensor) -> AutoencoderOutput:
        latent, regularizer = self.bottleneck.train_latent(self.encoder(image))
        return AutoencoderOutput(self.decoder(latent), latent, regularizer)


FSQAutoencoder = LatentAutoencoder  # the name used before VQ and KL latents existed
