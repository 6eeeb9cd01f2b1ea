"""SSCF's memory bank: a fixed-capacity FIFO of multi-contrast features, prototypes and mask summaries,
with cross-image affinity retrieval (CITIM) and prototype look-up (CCP).

Each entry is one training patch: for every contrast slot ``m`` it keeps a feature descriptor (the
spatial mean of the shared memory encoder's features, ``H``), whether the patch had that contrast, and
the per-region channel statistics (mean, std; region 0 = outside the tumour mask, 1 = inside) of those
features; plus the patch's tumour fraction (its mask summary) and an insertion stamp. The buffers are
part of the module's state, so the bank is saved with the weights (safetensors) and restored with them.

Retrieval (:meth:`MemoryBank.affinity`) compares a query case's descriptors of its *given* contrasts
with the same contrasts of every entry by cosine similarity, averaged over the contrasts both have.
Descriptors are centred on the bank's mean descriptor of each contrast first (raw post-activation means
all point the same way, cosines near 1), so the affinity measures what sets an image apart.
Entries that are empty, lack the target contrast or share no contrast with the query score
:data:`INVALID`, below any cosine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INVALID = -2.0
REGIONS = 2  # outside / inside the tumour mask


class MemoryBank(nn.Module):
    """FIFO bank of ``capacity`` entries over ``slots`` contrasts with ``channels``-wide features.

    Buffers: ``features`` ``(N, M, H)``, ``present`` ``(N, M)``, ``means``/``stds`` ``(N, M, 2, H)``,
    ``tumour`` ``(N,)``, ``stamp`` ``(N,)`` int64 insertion index (-1 = empty), ``pushed`` ``(1,)`` int64.
    """

    def __init__(self, capacity: int, slots: int, channels: int) -> None:
        super().__init__()
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.register_buffer("features", torch.zeros(capacity, slots, channels))
        self.register_buffer("present", torch.zeros(capacity, slots))
        self.register_buffer("means", torch.zeros(capacity, slots, REGIONS, channels))
        self.register_buffer("stds", torch.ones(capacity, slots, REGIONS, channels))
        self.register_buffer("tumour", torch.zeros(capacity))
        self.register_buffer("stamp", torch.full((capacity,), -1, dtype=torch.int64))
        self.register_buffer("pushed", torch.zeros(1, dtype=torch.int64))

    @property
    def size(self) -> int:
        """Number of filled entries."""
        return int(min(int(self.pushed), self.capacity))

    @torch.no_grad()
    def push(self, features: torch.Tensor, present: torch.Tensor, means: torch.Tensor, stds: torch.Tensor,
             tumour: torch.Tensor) -> None:
        """Append ``B`` entries (shapes as the buffers with ``B`` for ``N``); when full, the oldest are overwritten."""
        start = int(self.pushed)
        for i in range(features.shape[0]):
            slot = (start + i) % self.capacity
            self.features[slot] = features[i].detach()
            self.present[slot] = present[i].detach()
            self.means[slot] = means[i].detach()
            self.stds[slot] = stds[i].detach()
            self.tumour[slot] = tumour[i].detach()
            self.stamp[slot] = start + i
        self.pushed += features.shape[0]

    def affinity(self, query: torch.Tensor, slot_codes: torch.Tensor, target_onehot: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
        """Cross-image affinity of each query with every entry (CITIM).

        Args:
            query: ``(B, K, H)`` descriptors of the K given slots; slot_codes: ``(K, M)`` one-hot slot of
                each; target_onehot: ``(B, M)``; mask: ``(B, K)`` 1.0 where the slot is given.
        Returns:
            ``(B, N)`` mean cosine similarity over the slots given in the query and present in the
            entry; :data:`INVALID` for entries that are empty, lack the target or share no slot.
        """
        codes = slot_codes.to(self.features.dtype)
        filled_present = self.present * (self.stamp >= 0).to(self.present.dtype).unsqueeze(1)  # (N, M)
        centre = (torch.einsum("nm,nmh->mh", filled_present, self.features)
                  / filled_present.sum(dim=0).clamp_min(1.0).unsqueeze(1))  # (M, H) mean descriptor per slot
        centre = codes @ centre  # (K, H)
        bank = torch.einsum("km,nmh->nkh", codes, self.features) - centre  # (N, K, H)
        bank_present = torch.einsum("km,nm->nk", codes, filled_present)  # (N, K)
        cosine = torch.einsum("bkh,nkh->bnk", F.normalize(query - centre, dim=-1), F.normalize(bank, dim=-1))
        shared = mask.to(cosine.dtype).unsqueeze(1) * bank_present.unsqueeze(0)  # (B, N, K)
        count = shared.sum(dim=2)
        score = (cosine * shared).sum(dim=2) / count.clamp_min(1.0)
        has_target = torch.einsum("bm,nm->bn", target_onehot.to(self.present.dtype), self.present)
        filled = (self.stamp >= 0).to(score.dtype).unsqueeze(0)
        valid = (count > 0).to(score.dtype) * has_target * filled
        return valid * score + (1.0 - valid) * INVALID

    def prototype(self, selection: torch.Tensor, target_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Target-contrast statistics of the selected entries (CCP).

        Args:
            selection: ``(B, N)`` non-negative weights over entries (one-hot for one prototype; a zero
                row selects none); target_onehot: ``(B, M)``.
        Returns:
            mean, std ``(B, 2, H)`` (selection-weighted) and strength ``(B, 1)`` = the row sums (clamped to 1).
        """
        target = target_onehot.to(self.means.dtype)
        weights = selection.to(self.means.dtype)
        total = weights.sum(dim=1, keepdim=True)
        normalised = weights / total.clamp_min(1e-6)
        mean = torch.einsum("bn,bm,nmrh->brh", normalised, target, self.means)
        std = torch.einsum("bn,bm,nmrh->brh", normalised, target, self.stds)
        return mean, std, total.clamp(0.0, 1.0)


def top_selection(affinity: torch.Tensor, rank: int = 0) -> torch.Tensor:
    """``(B, N)`` one-hot selection of the ``rank``-th most similar valid entry per row (zeros when none)."""
    order = torch.argsort(affinity, dim=1, descending=True)
    choice = order[:, min(rank, affinity.shape[1] - 1)]
    valid = affinity.gather(1, choice[:, None]) > INVALID / 2
    return F.one_hot(choice, affinity.shape[1]).to(affinity.dtype) * valid.to(affinity.dtype)
