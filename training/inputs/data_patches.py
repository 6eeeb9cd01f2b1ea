"""Random 3D training patches, a pure function of ``(seed, rank, step)``.

Every batch is drawn from its own generator ``numpy.random.default_rng([seed, rank, step])``, so
ranks see different patches, the batches do not depend on the number of loader workers, and a
resumed run continues with exactly the batches an uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from training.inputs.augment import PatchAugmenter
    from training.inputs.data import Volume


def random_patch_slices(shape, patch, rng: np.random.Generator, multiple: int = 1, foreground: np.ndarray | None = None):
    """Slices of a random ``patch`` inside ``shape``, start aligned to ``multiple``, centred on a random
    ``foreground`` voxel (``(N, 3)`` indices) when given."""
    patch = [min(p, s) for p, s in zip(patch, shape)]
    if foreground is not None and len(foreground):
        centre = foreground[rng.integers(0, len(foreground))]
        starts = [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, patch, shape)]
    else:
        starts = [int(rng.integers(0, s - p + 1)) for p, s in zip(patch, shape)]
    starts = [(st // multiple) * multiple for st in starts]
    return tuple(slice(st, st + p) for st, p in zip(starts, patch))


def _padded(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Zero-pad the trailing spatial axes of ``array`` (``(..., z, y, x)``) up to ``shape``."""
    pad = [(0, 0)] * (array.ndim - 3) + [(0, t - s) for s, t in zip(array.shape[-3:], shape)]
    return np.pad(array, pad) if any(p[1] for p in pad) else array


class PatchSampler:
    """Batches of random patches from ``volumes``.

    Each sample picks a volume with probability ``weights`` (source mixture), a window of
    ``patch_size`` (start aligned to ``multiple``; centred on a foreground voxel with probability
    ``foreground_probability``), zero-pads it to ``patch_size`` when the volume is smaller, and
    augments it. ``all_contrasts=False``: one random available contrast per sample (stage 1);
    ``True``: every slot of ``slots``, zeros where the case lacks the contrast.

    Returns dicts of tensors: ``image`` ``(B, C, *patch)`` float32 (``C`` = 1 or ``len(slots)``),
    ``mask`` ``(B, 1, *patch)`` bool foreground, ``contrast`` ``(B,)`` int64 slot of the contrast
    (-1 with ``all_contrasts``), ``available`` ``(B, len(slots))`` bool: the contrasts the case has.
    """

    def __init__(self, volumes: list[Volume], weights: np.ndarray | None, *, patch_size: Sequence[int], batch_size: int,
                 slots: Sequence[str], seed: int, rank: int = 0, multiple: int = 1, foreground_probability: float = 1.0,
                 augmenter: PatchAugmenter | None = None, all_contrasts: bool = False) -> None:
        if not volumes:
            raise ValueError("volumes must hold at least one training volume")
        missing = sorted({c for v in volumes for c in v.images} - set(slots))
        if missing:
            raise ValueError(f"slots {list(slots)} must include every training contrast, not miss {missing}")
        self.volumes, self.slots = volumes, tuple(slots)
        weights = np.full(len(volumes), 1.0) if weights is None else np.asarray(weights, dtype=float)
        self.weights = weights / weights.sum()
        self.patch_size, self.batch_size, self.multiple = tuple(patch_size), batch_size, multiple
        self.seed, self.rank = seed, rank
        self.foreground_probability, self.augmenter, self.all_contrasts = foreground_probability, augmenter, all_contrasts

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, step])
        images, masks, contrasts, available = [], [], [], []
        for _ in range(self.batch_size):
            volume = self.volumes[int(rng.choice(len(self.volumes), p=self.weights))]
            present = [c for c in self.slots if c in volume.images]
            if self.all_contrasts:
                chosen, contrast = list(self.slots), -1
            else:
                name = present[int(rng.integers(0, len(present)))]
                chosen, contrast = [name], self.slots.index(name)
            foreground = volume.foreground if rng.random() < self.foreground_probability else None
            window = random_patch_slices(volume.mask.shape, self.patch_size, rng, self.multiple, foreground)
            zeros = None
            channels = []
            for name in chosen:
                if name in volume.images:
                    channels.append(np.asarray(volume.images[name][window], dtype=np.float32))
                else:
                    zeros = zeros if zeros is not None else np.zeros([w.stop - w.start for w in window], np.float32)
                    channels.append(zeros)
            image = _padded(np.stack(channels), self.patch_size)
            mask = _padded(np.asarray(volume.mask[window], dtype=bool), self.patch_size)
            augment_seed = int(rng.integers(2**31))
            if self.augmenter is not None:
                image, mask = self.augmenter(image, mask, augment_seed)
                if self.all_contrasts:
                    image[[i for i, c in enumerate(self.slots) if c not in volume.images]] = 0.0
            images.append(image)
            masks.append(mask[None])
            contrasts.append(contrast)
            available.append([c in volume.images for c in self.slots])
        return {
            "image": torch.from_numpy(np.stack(images)),
            "mask": torch.from_numpy(np.stack(masks)),
            "contrast": torch.tensor(contrasts, dtype=torch.int64),
            "available": torch.tensor(available, dtype=torch.bool),
        }


class _StepBatches(torch.utils.data.IterableDataset):
    """Batches ``start .. stop - 1``; loader worker ``w`` of ``n`` draws steps ``start + w, start + w + n, ...``
    (the loader interleaves workers in order, so batches arrive in step order)."""

    def __init__(self, sampler: PatchSampler, start: int, stop: int) -> None:
        super().__init__()
        self.sampler, self.start, self.stop = sampler, start, stop

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for step in range(self.start + worker, self.stop, workers):
            yield self.sampler(step)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def batch_stream(sampler: PatchSampler, start: int, stop: int, workers: int = 0,
                 pin_memory: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """The batches of steps ``start .. stop - 1`` in order, drawn in ``workers`` background processes
    (0: in this process)."""
    if workers == 0:
        return (sampler(step) for step in range(start, stop))
    loader = torch.utils.data.DataLoader(_StepBatches(sampler, start, stop), batch_size=None, num_workers=workers,
                                         pin_memory=pin_memory, worker_init_fn=_one_thread)
    return iter(loader)


__all__ = ["PatchSampler", "batch_stream", "random_patch_slices"]
