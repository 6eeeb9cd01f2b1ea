"""Vector quantisation (VQ) with an exponential-moving-average codebook and dead-code restart.

Each latent voxel ``(D,)`` is replaced by its nearest codebook entry. The codebook is not trained by
gradients: it follows the running mean of the encoder outputs assigned to each entry (EMA, Laplace
smoothed); an entry whose running usage falls below a threshold is restarted on a random encoder
output of the current batch. The encoder is pulled towards its codes by the commitment loss;
gradients reach it through the quantisation unchanged (straight-through estimator). Under
``torch.distributed`` the usage counts and sums are all-reduced and restarts are broadcast from rank 0,
so every rank keeps the same codebook.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from MRSynthLib.networks.configs.vq import VQConfig  # noqa: F401  (re-exported)
from MRSynthLib.networks.precision import full_precision


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class VectorQuantizer(nn.Module):
    """Quantise ``z`` ``(B, D, *spatial)``; buffers ``embedding`` ``(K, D)``, ``cluster_size`` ``(K,)``,
    ``embedding_sum`` ``(K, D)``, ``initialised`` (0 until the first training batch sets the codebook)."""

    def __init__(self, config: VQConfig = VQConfig()) -> None:
        super().__init__()
        self.config = config
        k, d = config.codebook_size, config.dim
        self.register_buffer("embedding", torch.randn(k, d))
        self.register_buffer("cluster_size", torch.zeros(k))
        self.register_buffer("embedding_sum", self.embedding.clone())
        self.register_buffer("initialised", torch.zeros(()))

    @property
    def encoder_channels(self) -> int:
        return self.config.dim

    @property
    def latent_channels(self) -> int:
        return self.config.dim

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` vectors → ``(N,)`` int64 index of the nearest codebook entry (Euclidean, in float32
        even under autocast, so that bf16 rounding cannot pick a wrong entry)."""
        with full_precision(flat):
            flat, codebook = flat.float(), self.embedding.float()
            distances = (flat**2).sum(1, keepdim=True) - 2 * flat @ codebook.t() + (codebook**2).sum(1)[None]
        return distances.argmin(dim=1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """``(B, *spatial)`` indices → ``(B, D, *spatial)`` codebook entries."""
        codes = self.embedding[indices]  # (B, *spatial, D)
        return codes.permute(0, codes.ndim - 1, *range(1, codes.ndim - 1))

    def codes_to_indices(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, D, *spatial)`` → ``(B, *spatial)`` nearest-entry indices."""
        flat = z.permute(0, *range(2, z.ndim), 1).reshape(-1, self.config.dim)
        return self.nearest(flat).view((z.shape[0],) + tuple(z.shape[2:]))

    def usage(self) -> float:
        """Fraction of entries whose running usage is at or above the restart threshold."""
        return float((self.cluster_size >= self.config.dead_code_threshold).float().mean())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Quantised ``z`` (straight-through), same shape; updates the codebook in training mode."""
        return self.train_latent(z)[0]

    def train_latent(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(quantised z, commitment loss = mean((z - sg[code])^2))``; EMA update + restarts in training."""
        flat = z.permute(0, *range(2, z.ndim), 1).reshape(-1, self.config.dim)
        if self.training and not bool(self.initialised):
            self._initialise(flat.detach())
        indices = self.nearest(flat.detach())
        quantised = self.embedding[indices].to(z.dtype)
        with full_precision(flat):  # float32 also inside bf16 autocast
            commitment = F.mse_loss(flat.float(), quantised.detach().float())
        if self.training:
            self._ema_update(flat.detach().float(), indices)
        quantised = quantised.view((z.shape[0],) + tuple(z.shape[2:]) + (self.config.dim,))
        quantised = quantised.permute(0, z.ndim - 1, *range(1, z.ndim - 1))
        return z + (quantised - z).detach(), commitment

    def inference_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Codebook entries ``(B, D, *spatial)`` (what ``encode`` returns)."""
        return self.indices_to_codes(self.codes_to_indices(z)).to(z.dtype)

    def to_decoder(self, latent: torch.Tensor) -> torch.Tensor:
        return latent

    @torch.no_grad()
    def _random_rows(self, flat: torch.Tensor, count: int) -> torch.Tensor:
        """``count`` random rows of ``flat`` (with replacement), identical on every rank."""
        rows = flat[torch.randint(0, flat.shape[0], (count,), device=flat.device)].float()
        if _distributed():
            torch.distributed.broadcast(rows, src=0)
        return rows

    def _grace(self) -> float:
        """Usage given to a freshly (re)started entry: about ``ln 2 / (1 - decay)`` steps before it can die."""
        return 2.0 * self.config.dead_code_threshold

    @torch.no_grad()
    def _initialise(self, flat: torch.Tensor) -> None:
        """Codebook ← random encoder outputs of the first training batch."""
        rows = self._random_rows(flat, self.config.codebook_size)
        self.embedding.copy_(rows)
        self.cluster_size.fill_(self._grace())
        self.embedding_sum.copy_(rows * self._grace())
        self.initialised.fill_(1.0)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        c = self.config
        counts = torch.bincount(indices, minlength=c.codebook_size).to(flat.dtype)
        sums = torch.zeros_like(self.embedding_sum).index_add_(0, indices, flat)
        if _distributed():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.cluster_size.mul_(c.decay).add_(counts, alpha=1 - c.decay)
        self.embedding_sum.mul_(c.decay).add_(sums, alpha=1 - c.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + c.epsilon) / (total + c.codebook_size * c.epsilon) * total
        self.embedding.copy_(self.embedding_sum / smoothed[:, None])
        dead = torch.nonzero(self.cluster_size < c.dead_code_threshold).flatten()
        if dead.numel():
            rows = self._random_rows(flat, int(dead.numel()))
            self.embedding[dead] = rows
            self.cluster_size[dead] = self._grace()
            self.embedding_sum[dead] = rows * self._grace()
