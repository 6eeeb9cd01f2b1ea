"""Gaussian (KL-regularised) latent: the encoder predicts a mean and a log-variance per latent voxel.

Training decodes a reparameterised sample ``mean + exp(logvar / 2) * noise`` and adds the KL divergence
to a unit Gaussian; inference uses the mean. ``encode`` returns ``mean * scale_factor`` so that latents
have about unit variance for a generator trained on top (latent diffusion); the factor is measured on
training latents after stage 1 (1 / their standard deviation), stored as a buffer in the weights and
recorded in the model card. ``decode`` divides it out again.
"""

from __future__ import annotations


import torch
from torch import nn
from MRSynthLib.networks.configs.kl import KLConfig  # noqa: F401  (re-exported)
from MRSynthLib.networks.precision import full_precision

LOGVAR_RANGE = (-30.0, 20.0)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over every element of ``KL(N(mean, exp(logvar)) || N(0, 1))``, a float32 scalar.

    Computed in float32 also inside bf16 autocast: ``exp(logvar) - 1 - logvar`` cancels to ~0 near the prior,
    where bf16's 8-bit mantissa leaves only rounding noise."""
    with full_precision(mean):
        mean, logvar = mean.float(), logvar.float()
        return 0.5 * torch.mean(mean**2 + logvar.exp() - 1.0 - logvar)


class GaussianLatent(nn.Module):
    """``z`` ``(B, 2L, *spatial)`` = mean and log-variance → latent ``(B, L, *spatial)``."""

    def __init__(self, config: KLConfig = KLConfig()) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("scale_factor", torch.tensor(float(config.scale_factor)))

    @property
    def encoder_channels(self) -> int:
        return 2 * self.config.channels

    @property
    def latent_channels(self) -> int:
        return self.config.channels

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, logvar)``, each ``(B, L, *spatial)``; the log-variance is clamped to a safe range."""
        mean, logvar = z.chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def train_latent(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sample in training mode / mean in eval mode, KL term)``; unscaled (the decoder's input)."""
        mean, logvar = self.split(z)
        latent = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if self.training else mean
        return latent, kl_divergence(mean, logvar)

    def inference_latent(self, z: torch.Tensor) -> torch.Tensor:
        """``mean * scale_factor`` ``(B, L, *spatial)`` (what ``encode`` returns)."""
        return self.split(z)[0] * self.scale_factor.to(z.dtype)

    def to_decoder(self, latent: torch.Tensor) -> torch.Tensor:
        """Undo the scale factor of ``inference_latent``."""
        return latent / self.scale_factor.to(latent.dtype)

    @torch.no_grad()
    def set_scale_factor(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"scale_factor must be positive, not {value}")
        self.scale_factor.fill_(float(value))
