"""Optional PatchGAN for stage 1: MONAI ``PatchDiscriminator`` with a least-squares loss and a warm-up.

Before ``gan.start_step`` neither the discriminator trains nor the adversarial term is added, so the
autoencoder first learns to reconstruct.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.loss_config import GANConfig


class PatchAdversary:
    """Discriminator ``(B, 1, *S)`` → patch scores, with its own Adam optimiser."""

    def __init__(self, config: GANConfig, spatial_dims: int) -> None:
        from monai.networks.nets import PatchDiscriminator

        self.config = config
        self.discriminator = PatchDiscriminator(spatial_dims=spatial_dims, channels=config.channels, in_channels=1,
                                                num_layers_d=config.layers, norm="INSTANCE")
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=(0.5, 0.999))

    def active(self, step: int) -> bool:
        return step >= self.config.start_step

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """``mean((D(fake) - 1)^2)``; gradients reach ``fake`` only (the discriminator is frozen meanwhile).

        Runs the unwrapped discriminator, so a ``DistributedDataParallel`` wrapper in ``self.discriminator``
        only sees the discriminator's own forward/backward in :meth:`discriminator_step`.
        """
        network = getattr(self.discriminator, "module", self.discriminator)
        network.requires_grad_(False)
        try:
            scores = network(fake)[-1]
            return F.mse_loss(scores, torch.ones_like(scores))
        finally:
            network.requires_grad_(True)

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        """One update on ``real`` and ``fake.detach()`` (one forward on both); returns the loss."""
        scores = self.discriminator(torch.cat([real, fake.detach()]))[-1]
        real_scores, fake_scores = scores.split(real.shape[0])
        loss = 0.5 * (F.mse_loss(real_scores, torch.ones_like(real_scores))
                      + F.mse_loss(fake_scores, torch.zeros_like(fake_scores)))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)  # the generator's next backward must not see these
        return loss.item()

    def state_dict(self) -> dict:
        network = getattr(self.discriminator, "module", self.discriminator)
        return {"discriminator": network.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        getattr(self.discriminator, "module", self.discriminator).load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
