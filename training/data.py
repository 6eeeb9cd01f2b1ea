"""Training volumes in model space and random patch sampling.

Every volume goes through :func:`MRSynthLib.preprocess.to_model_space`, the same code the inference
path uses, so training and inference normalise identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from MRSynthLib.phantom import PhantomConfig, generate_phantom
from MRSynthLib.preprocess import PreprocessSpec, to_model_space
from training.config import DataConfig


@dataclass
class Volume:
    """One case in model space: ``images`` contrast -> ``(z, y, x)`` float32; ``labels`` uint8 or None."""

    case_id: str
    images: dict[str, np.ndarray]
    mask: np.ndarray
    labels: np.ndarray | None

    def __post_init__(self) -> None:
        self.foreground = np.argwhere(self.mask)  # (N, 3) voxel indices, for patch sampling


def phantom_volumes(config: DataConfig, spec: PreprocessSpec, count: int, seed_offset: int) -> list[Volume]:
    """``count`` seeded phantom cases at the model spacing (no resampling needed)."""
    rng = np.random.default_rng(seed_offset)
    volumes = []
    for i in range(count):
        seed = seed_offset + i
        phantom = generate_phantom(
            PhantomConfig(
                size=config.size,
                spacing=spec.spacing,
                seed=seed,
                field_strength=float(rng.choice(config.field_strengths)),
                tumour=bool(rng.random() < config.tumour_fraction),
                ms_lesions=int(rng.integers(0, config.ms_lesions + 1)),
            )
        )
        space = to_model_space(dict(phantom.images), spec)
        labels_model = space_labels(space, phantom.labels)
        volumes.append(Volume(f"phantom-{seed:05d}", space.arrays, space.mask, labels_model))
    return volumes


def space_labels(space, labels_image) -> np.ndarray:
    """Crop and pad a label image (already on the model grid) exactly as the model space did."""
    import SimpleITK as sitk

    labels = sitk.GetArrayFromImage(sitk.DICOMOrient(labels_image, "LPS"))
    crop = tuple(slice(c, c + s) for c, s in zip(space.crop_start, space.crop_shape))
    pad = [(b, total - s - b) for b, total, s in zip(space.pad_before, space.shape, space.crop_shape)]
    return np.pad(labels[crop], pad).astype(np.uint8)


def load_volumes(config: DataConfig, spec: PreprocessSpec, seed: int) -> tuple[list[Volume], list[Volume]]:
    """Training and validation volumes; validation seeds never overlap training seeds."""
    if config.source != "phantom":
        raise ValueError(f"data.source must be 'phantom' in this version, not {config.source!r}")
    train = phantom_volumes(config, spec, config.train_cases, seed_offset=1000 * (seed + 1))
    val = phantom_volumes(config, spec, config.val_cases, seed_offset=1000 * (seed + 1) + 500)
    return train, val


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


__all__ = ["Volume", "load_volumes", "random_patch_slices", "space_labels"]
