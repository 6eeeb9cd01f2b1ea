"""MC channel dropout + left-right flip: the uncertainty of the feed-forward kinds (numpy).

A kind with a ``features`` graph and a ``head(channel_scale)`` graph subclasses :class:`DropoutKind`: pass ``k``
uses dropout mask ``k`` (seeded) and odd passes run on the flipped input, flipped back.
"""

from __future__ import annotations

import numpy as np

from MRSynthLib.runtime.inference import dropout_masks
from MRSynthLib.methods.translators.window import add_moments, image_moments


class DropoutKind:
    """Shared MC-dropout + flip uncertainty for kinds with ``features`` → ``head(channel_scale)``."""

    hidden: int
    dropout: float

    def __init__(self, samples: int, seed: int, sample_batch: int) -> None:
        self.samples, self.seed, self.batch = samples, seed, max(1, sample_batch)

    def head_images(self, features: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Decoded images ``(P, Z, Y, X)`` for ``P`` channel masks ``scales`` ``(P, H)`` (and weights)."""
        raise NotImplementedError

    def pass_images(self, features, scales: np.ndarray, passes: list[int]) -> np.ndarray:
        """Decoded images ``(P, Z, Y, X)`` of the stochastic passes ``passes`` (their masks ``scales``); a kind
        whose passes differ in more than the dropout mask overrides this."""
        return self.head_images(features, scales)[0]

    def stochastic_moments(self, features: dict[bool, np.ndarray], report) -> tuple[tuple, int] | tuple[None, int]:
        if self.samples < 2:
            return None, 0
        scales = dropout_masks(self.samples, self.hidden, self.dropout, self.seed)
        total = None
        for flip in (False, True):
            ks = [k for k in range(self.samples) if (k % 2 == 1) == flip]
            for first in range(0, len(ks), self.batch):
                batch = ks[first:first + self.batch]
                report("uncertainty", batch[0] / self.samples)
                images = self.pass_images(features[flip], scales[batch], batch)
                total = add_moments(total, image_moments(images[..., ::-1] if flip else images))
        return total, self.samples


__all__ = ["DropoutKind"]
