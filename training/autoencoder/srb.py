"""RSF's SRB: align the quantised latent with a frozen 2D teacher's embedding of a random slice.

For each sample a random axial slice is drawn; the teacher embeds that image slice, and a small
projector MLP maps the latent slab containing it to the same embedding space; the loss is
``1 - cos`` between the two. Only the projector and (through the latent) the encoder learn.
"""

from __future__ import annotations

import torch
from torch import nn

from training.autoencoder.losses import cosine_alignment_loss
from training.autoencoder.teachers import FrozenTeacher


class SemanticProjector(nn.Module):
    """Latent slice ``(B, L, y, x)`` → ``(B, D)``: per-position MLP, mean over positions, linear."""

    def __init__(self, latent_channels: int, hidden: int, embedding_dim: int) -> None:
        super().__init__()
        self.local = nn.Sequential(nn.Conv2d(latent_channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, hidden, 1), nn.GELU())
        self.head = nn.Linear(hidden, embedding_dim)

    def forward(self, latent_slice: torch.Tensor) -> torch.Tensor:
        return self.head(self.local(latent_slice).mean(dim=(2, 3)))


class SemanticAlignment(nn.Module):
    """SRB loss on ``latent`` ``(B, L, *s)`` and ``image`` ``(B, 1, *S)`` (3D: ``(z, y, x)``; 2D: ``(y, x)``)."""

    def __init__(self, teacher: FrozenTeacher, latent_channels: int, hidden: int, downsampling: int) -> None:
        super().__init__()
        self.teacher = teacher
        self.downsampling = downsampling
        self.projector = SemanticProjector(latent_channels, hidden, teacher.embedding_dim())

    def sample_slices(self, image: torch.Tensor) -> torch.Tensor:
        """``(B,)`` random axial slice indices (all 0 for 2D images)."""
        depth = image.shape[2] if image.ndim == 5 else 1
        return torch.randint(0, depth, (image.shape[0],))

    def forward(self, latent: torch.Tensor, image: torch.Tensor,
                slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(loss, teacher attention volume (B, 1, *S) or None)``.

        The attention volume is 1 everywhere except on each sample's drawn slice, where it is the
        teacher's attention map (mean 1): it multiplies AFL's gradient attention there.
        """
        rows, slices = torch.arange(image.shape[0], device=image.device), slices.to(image.device)
        if image.ndim == 5:
            image_slices = image[rows, 0, slices]  # (B, Y, X)
            latent_slices = latent[rows, :, slices // self.downsampling]  # (B, L, y, x)
        else:
            image_slices, latent_slices = image[:, 0], latent
        embeddings, attention = self.teacher(image_slices)
        loss = cosine_alignment_loss(self.projector(latent_slices), embeddings.to(latent.device))
        if attention is None:
            return loss, None
        volume = torch.ones_like(image)
        if image.ndim == 5:
            volume[rows, 0, slices] = attention.to(volume.dtype)
        else:
            volume[:, 0] = attention.to(volume.dtype)
        return loss, volume
