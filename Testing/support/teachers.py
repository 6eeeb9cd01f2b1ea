"""A frozen teacher network saved as a local file (SRB without downloads)."""

from __future__ import annotations

import torch
from torch import nn

from training.loss_config import TeacherConfig


class TinyTeacher(nn.Module):
    """A random 2D encoder: ``(N, 3, S, S)`` → ``(N, 16)`` embeddings and ``(N, S/4, S/4)`` attention."""

    def __init__(self, with_attention: bool) -> None:
        super().__init__()
        self.with_attention = with_attention
        self.features = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), nn.ReLU())
        self.head = nn.Linear(16, 16)

    def forward(self, images: torch.Tensor):
        features = self.features(images)
        embeddings = self.head(features.mean(dim=(2, 3)))
        if self.with_attention:
            return embeddings, features.pow(2).sum(dim=1).sqrt()
        return embeddings


def save_teacher(folder, with_attention=True, export=False) -> TeacherConfig:
    """A random :class:`TinyTeacher` saved as TorchScript (``.pt``) or a torch.export program (``.pt2``)."""
    torch.manual_seed(1)
    network, example = TinyTeacher(with_attention), torch.rand(2, 3, 32, 32)
    path = folder / f"teacher_{with_attention}.{'pt2' if export else 'pt'}"
    if export:
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.export.save(torch.export.export(network, (example,), dynamic_shapes=({0: batch},)), str(path))
    else:
        torch.jit.save(torch.jit.trace(network, example), str(path))
    return TeacherConfig(path=str(path), input_size=32)
