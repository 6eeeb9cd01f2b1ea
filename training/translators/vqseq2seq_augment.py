"""VQ-Seq2Seq's random domain augmentation of training inputs.

- Intensity: gamma, Gaussian noise and a smooth multiplicative bias field, each with probability
  :data:`EACH` and a random strength (as the paper's code draws each of its transforms), with MONAI
  transforms via :class:`training.inputs.augment.PatchAugmenter`; no spatial transform: geometry is kept, the
  background stays 0.
- Codes: a random target code for translating a source into another (or a random, non-one-hot) domain;
  the trainer feeds that translation back as the input.
"""

from __future__ import annotations

import numpy as np

from training.inputs.augment import PatchAugmenter
from training.config import AugmentationConfig
from training.vqseq2seq_config import DomainAugmentConfig

EACH = 0.5
"""Probability of each intensity transform once an input is augmented."""


class DomainAugmenter:
    """``intensity(image (Z, Y, X), mask (Z, Y, X), seed) -> image`` and ``code(rng, slots, exclude) -> (M,)``."""

    def __init__(self, config: DomainAugmentConfig, clip: tuple[float, float] = (0.0, 1.5)) -> None:
        self.config = config
        self._intensity = PatchAugmenter(AugmentationConfig(
            flip_probability=0.0, gamma_probability=EACH, gamma_range=config.gamma_range, noise_probability=EACH,
            noise_std=config.noise_std, bias_probability=EACH, bias_coefficients=config.bias_coefficients), clip)

    def wants_intensity(self, rng: np.random.Generator) -> bool:
        return rng.random() < self.config.intensity_probability

    def wants_code(self, rng: np.random.Generator) -> bool:
        return rng.random() < self.config.code_probability

    def intensity(self, image: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
        """Gamma, noise and bias field (each with probability :data:`EACH`) on one patch ``(Z, Y, X)``; voxels
        outside ``mask`` stay 0."""
        out, _ = self._intensity(np.asarray(image, np.float32)[None], np.asarray(mask, bool), seed)
        return out[0]

    def code(self, rng: np.random.Generator, slots: int, exclude: int) -> np.ndarray:
        """A one-hot code of a random slot other than ``exclude``, or (``random_code_probability``) a random
        vector uniform in ``[0, 1]^slots``: float32 ``(slots,)``."""
        if rng.random() < self.config.random_code_probability:
            return rng.random(slots).astype(np.float32)
        choice = int(rng.choice([i for i in range(slots) if i != exclude]))
        return np.eye(slots, dtype=np.float32)[choice]
