"""Input screening: treat input regions the model's own autoencoder cannot reconstruct as missing.

The shared autoencoder was trained on MR images; where an input is corrupted (noise, a broken series,
gross artefacts) it reconstructs that input badly. Per input ``k`` and latent voxel ``v``:

    e_k(v)    = mean |decode(encode(x_k)) - x_k| over the voxel's block, then a 5x5x5 box mean (latent grid)
    ratio_k(v) = e_k(v) / s_c      (s_c: the 99.9th percentile of e on clean images of contrast c)
    keep_k(v)  = ratio_k(v) <= cut, except where no input is kept: there every input is kept

The fusion multiplies its gates by ``keep`` before normalising them over the given inputs, so an
unreadable region of an input is handled exactly like a missing input (which the translator was
trained for by random input dropout); the contribution maps (the normalised gates) show it. A soft
down-weighting was tried first and did not work: the trained gates differ by several orders of
magnitude between inputs, so only an exclusion reliably moves the weight to the other inputs.

The settings live in the bundle card (``networks.screening``, written by
``python -m training.experiments.calibrate_screening``); bundles without them are not screened.
Arrays are numpy; ``(K, Z, Y, X)`` images, ``(K, z, y, x)`` latent-grid maps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from MRSynthLib.errors import BundleError



@dataclass(frozen=True)
class ScreeningConfig:
    """Card section ``networks.screening``: per-contrast error scales, the exclusion cut, the smoothing."""

    error_scale: dict[str, float]
    cut: float = 1.2
    smoothing: int = 5
    calibration: dict = field(default_factory=dict)

    @classmethod
    def from_card(cls, networks: dict) -> ScreeningConfig | None:
        data = networks.get("screening")
        if data is None:
            return None
        try:
            config = cls(**data)
        except TypeError as error:
            raise BundleError(f"the card's networks.screening is malformed ({error}): re-run "
                              f"`python -m training.experiments.calibrate_screening` on the bundle.") from None
        if any(not np.isfinite(v) or v <= 0 for v in config.error_scale.values()):
            raise BundleError("networks.screening.error_scale must hold positive numbers: re-run "
                              "`python -m training.experiments.calibrate_screening` on the bundle.")
        return config

    def to_dict(self) -> dict:
        return asdict(self)


def block_errors(images: np.ndarray, reconstructions: np.ndarray, downsampling: int, smoothing: int = 3) -> np.ndarray:
    """Mean absolute reconstruction error per latent voxel, box-smoothed.

    Args:
        images, reconstructions: ``(K, Z, Y, X)``, every axis divisible by ``downsampling``.
    Returns:
        ``(K, Z/d, Y/d, X/d)`` float32.
    """
    k, *shape = images.shape
    d = downsampling
    coarse = [n // d for n in shape]
    error = np.abs(reconstructions.astype(np.float32) - images.astype(np.float32))
    blocks = error.reshape(k, coarse[0], d, coarse[1], d, coarse[2], d).mean(axis=(2, 4, 6))
    return box_mean(blocks, smoothing)


def box_mean(maps: np.ndarray, size: int) -> np.ndarray:
    """Mean over a ``size``³ neighbourhood of each voxel of ``(K, z, y, x)`` maps (edges replicated)."""
    if size <= 1:
        return maps.astype(np.float32)
    pad = size // 2
    padded = np.pad(maps, ((0, 0), (pad, pad), (pad, pad), (pad, pad)), mode="edge").astype(np.float64)
    z, y, x = maps.shape[1:]
    total = np.zeros(maps.shape, np.float64)
    for dz in range(size):
        for dy in range(size):
            for dx in range(size):
                total += padded[:, dz:dz + z, dy:dy + y, dx:dx + x]
    return (total / size**3).astype(np.float32)


def keep_masks(errors: np.ndarray, names: list[str], config: ScreeningConfig) -> np.ndarray:
    """``(K, z, y, x)`` block errors of inputs ``names`` → 1.0 where an input is kept, 0.0 where excluded."""
    missing = [n for n in names if n not in config.error_scale]
    if missing:
        raise BundleError(f"networks.screening has no error scale for {', '.join(missing)}: re-run "
                          f"`python -m training.experiments.calibrate_screening` on the bundle.")
    scales = np.array([config.error_scale[n] for n in names], np.float32).reshape(-1, 1, 1, 1)
    keep = np.asarray(errors, np.float32) / scales <= config.cut
    nothing_kept = ~keep.any(axis=0, keepdims=True)
    return (keep | nothing_kept).astype(np.float32)


def screen_window(engine, inputs: np.ndarray, latents: np.ndarray, names: list[str], config: ScreeningConfig) -> np.ndarray:
    """Keep masks ``(K, z, y, x)`` of one window: ``inputs`` ``(K, Z, Y, X)``, their latents ``(K, L, z, y, x)``.

    Decodes each input's latents once (one decoder pass per input).
    """
    reconstructions = np.concatenate([engine.decode(latents[k:k + 1])[:, 0] for k in range(len(latents))])
    return keep_masks(block_errors(inputs, reconstructions, engine.downsampling, config.smoothing), names, config)


def summary(maps: dict[str, np.ndarray], mask: np.ndarray | None = None) -> dict[str, float]:
    """Fraction of (masked) latent voxels per input that were excluded (keep mask 0)."""
    out = {}
    for name, values in maps.items():
        inside = values[mask > 0] if mask is not None and np.any(mask > 0) else values.ravel()
        out[name] = round(float(np.mean(inside < 0.5)), 4) if inside.size else 0.0
    return out
