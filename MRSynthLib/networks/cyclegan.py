"""Latent CycleGAN parts (RSF's stage-2 baseline): a latent-to-latent generator and a PatchGAN critic.

A bundle of method ``fsq-cyclegan`` translates one source contrast into one target contrast; training
(unpaired) uses two generators and two discriminators, inference only the source→target generator.
The generator works at latent resolution with no normalisation layers (trained on patches, applied
to whole volumes) and ends in a channel-dropout point whose mask can be given explicitly, so MC
dropout passes are reproducible on every backend (as in :class:`MRSynthLib.networks.fusion.FusionTranslator`).
"""

from __future__ import annotations


import torch
from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.nets import PatchDiscriminator
from torch import nn

from MRSynthLib.networks.autoencoder import ACTIVATION
from MRSynthLib.networks.configs.cyclegan import GeneratorConfig  # noqa: F401  (re-exported)


class LatentGenerator(nn.Module):
    """``(B, L, *s)`` source latent → ``(B, L, *s)`` target latent in ``(-1, 1)``.

    Split as :meth:`features` (deterministic, ``(B, H, *s)``) and :meth:`head_from` (channel dropout,
    1x1 convolution, tanh) so that stochastic passes reuse the features.
    """

    def __init__(self, config: GeneratorConfig = GeneratorConfig()) -> None:
        super().__init__()
        self.config = config
        d, h = config.spatial_dims, config.hidden
        layers: list[nn.Module] = [Convolution(d, config.latent_channels, h, kernel_size=3, act=ACTIVATION, norm=None)]
        layers += [ResidualUnit(d, h, h, subunits=2, act=ACTIVATION, norm=None) for _ in range(config.num_blocks)]
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout3d(config.dropout) if d == 3 else nn.Dropout2d(config.dropout)
        self.head = Convolution(d, h, config.latent_channels, kernel_size=1, conv_only=True)

    def features(self, latents: torch.Tensor) -> torch.Tensor:
        return self.body(latents)

    def head_from(self, hidden: torch.Tensor, channel_scale: torch.Tensor | None = None) -> torch.Tensor:
        """``channel_scale`` ``(B, H)``: explicit dropout mask (0 or 1/(1-p)); None = ``self.dropout``."""
        if channel_scale is None:
            hidden = self.dropout(hidden)
        else:
            hidden = hidden * channel_scale.to(hidden.dtype).view(channel_scale.shape + (1,) * (hidden.ndim - 2))
        return torch.tanh(self.head(hidden))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.head_from(self.features(latents))


def build_discriminator(spatial_dims: int, latent_channels: int, channels: int = 32, layers: int = 2) -> PatchDiscriminator:
    """MONAI PatchGAN critic on latents: ``(B, L, *s)`` → list of features, the last one ``(B, 1, *s')`` scores.

    Instance norm (batch statistics would leak between real and fake batches); no dropout.
    """
    return PatchDiscriminator(spatial_dims=spatial_dims, channels=channels, in_channels=latent_channels,
                              out_channels=1, num_layers_d=layers, kernel_size=3, norm="INSTANCE", bias=True)
