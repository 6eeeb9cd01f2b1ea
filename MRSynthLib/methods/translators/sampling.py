"""The seeded diffusion loop shared by the diffusion kinds (``ldm``, ``wldm``, ``msgldm``), numpy only.

Noise is drawn for the whole (padded) latent volume from ``(seed, noise index, step)`` and cut to the window,
so windows agree in their overlaps and both backends draw identical noise; several runs are sampled
together in batches.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from MRSynthLib.methods.translators.samplers import SamplingConfig, sample, seeded_normal
from MRSynthLib.methods.translators.window import Window


def sample_runs(sampling: SamplingConfig, velocity: Callable[[np.ndarray, float, dict], np.ndarray],
                runs: list[tuple[int, dict[str, np.ndarray]]], window: Window, latent_channels: int, seed: int,
                batch: int) -> np.ndarray:
    """Sample every diffusion run of one window; returns the unscaled latents ``(len(runs), L, *s)``.

    Args:
        velocity: ``velocity(x, t, condition)``: the denoiser graph on a batch ``x`` ``(B, L, *s)`` at time ``t``
            with the runs' conditions concatenated along the batch.
        runs: ``(noise index, condition)`` per run, each condition a dict of batch-of-one arrays.
        batch: runs sampled together.
    """
    full = (latent_channels,) + tuple(window.latent_shape)
    where = (slice(None),) + window.latent_where
    out = []
    for first in range(0, len(runs), batch):
        chunk = runs[first:first + batch]
        condition = {key: np.concatenate([c[key] for _, c in chunk]) for key in chunk[0][1]}
        noise_ids = [n for n, _ in chunk]
        start = np.stack([seeded_normal(full, seed, n, 0)[where] for n in noise_ids])

        def run_velocity(x, t, condition=condition):
            return velocity(x, t, condition)

        def step_noise(i, noise_ids=noise_ids):
            return np.stack([seeded_normal(full, seed, n, i + 1)[where] for n in noise_ids])

        def progress(i, first=first, count=len(chunk)):
            window.report("diffusion", (first + i / sampling.steps * count) / len(runs))

        out.append(sample(sampling, run_velocity, start, step_noise, progress))
    return np.concatenate(out) / sampling.latent_scale


__all__ = ["sample_runs"]
