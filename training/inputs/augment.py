"""Seeded random augmentation of training patches with MONAI transforms.

Spatial transforms (flips, small rotations and zooms) move every contrast of a sample and its
foreground mask together; intensity transforms (gamma, Gaussian noise, bias field, scale, shift)
draw their parameters per contrast. Afterwards voxels outside the (transformed) foreground are set
to 0 and intensities clipped to the normalisation range, as in model space at inference.
"""

from __future__ import annotations

import math

import numpy as np

from training.config import AugmentationConfig


class PatchAugmenter:
    """``(image (C, z, y, x) float32, mask (z, y, x) bool, seed) -> (image, mask)``; the same seed gives
    the same result. ``clip``: the normalisation's output range."""

    def __init__(self, config: AugmentationConfig, clip: tuple[float, float] = (0.0, 1.5)) -> None:
        from monai.transforms import (Compose, RandAdjustContrast, RandAffined, RandBiasField, RandFlipd,
                                      RandGaussianNoise, RandScaleIntensity, RandShiftIntensity)

        self.config, self.clip = config, clip
        keys = ("image", "mask")
        spatial = []
        if config.flip_probability > 0:
            spatial += [RandFlipd(keys, prob=config.flip_probability, spatial_axis=axis) for axis in config.flip_axes]
        if config.affine_probability > 0:
            angle = math.radians(config.rotate_degrees)
            spatial.append(RandAffined(keys, prob=config.affine_probability, rotate_range=(angle,) * 3,
                                       scale_range=(config.scale_fraction,) * 3, mode=("bilinear", "nearest"),
                                       padding_mode="zeros"))
        intensity = []
        if config.gamma_probability > 0:
            intensity.append(RandAdjustContrast(prob=config.gamma_probability, gamma=config.gamma_range))
        if config.bias_probability > 0:
            intensity.append(RandBiasField(prob=config.bias_probability, coeff_range=config.bias_coefficients))
        if config.scale_probability > 0:
            intensity.append(RandScaleIntensity(factors=config.intensity_scale, prob=config.scale_probability))
        if config.shift_probability > 0:
            intensity.append(RandShiftIntensity(offsets=config.intensity_shift, prob=config.shift_probability))
        if config.noise_probability > 0:
            intensity.append(RandGaussianNoise(prob=config.noise_probability, std=config.noise_std))
        self.spatial = Compose(spatial) if spatial else None
        self.intensity = Compose(intensity) if intensity else None

    @property
    def active(self) -> bool:
        return self.spatial is not None or self.intensity is not None

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        from monai.utils import convert_to_numpy

        if not self.active:
            return image, mask
        rng = np.random.default_rng(seed)
        image = np.array(image, dtype=np.float32)
        if self.spatial is not None:
            self.spatial.set_random_state(seed=int(rng.integers(2**31)))
            out = self.spatial({"image": image, "mask": mask[None].astype(np.float32)})
            image = convert_to_numpy(out["image"], dtype=np.float32)
            mask = convert_to_numpy(out["mask"], dtype=np.float32)[0] > 0.5
        if self.intensity is not None:
            self.intensity.set_random_state(seed=int(rng.integers(2**31)))
            for channel in range(image.shape[0]):  # the transforms' random state advances: new draws per contrast
                image[channel] = convert_to_numpy(self.intensity(image[channel : channel + 1]), dtype=np.float32)[0]
            image[:, ~mask] = 0.0
        np.clip(image, self.clip[0], self.clip[1], out=image)
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)


__all__ = ["PatchAugmenter"]
