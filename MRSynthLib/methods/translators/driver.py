"""Backend-agnostic synthesis for the generative translator kinds, window by window (numpy only).

The driver shared by every kind: pad the model-space inputs to the kind's latent multiple, plan the
sliding windows (:mod:`MRSynthLib.runtime.inference`), let the kind's window class
(:data:`MRSynthLib.methods.translators.registry.KINDS`, one module per kind in :mod:`MRSynthLib.methods.translators`) turn
each window into a synthetic image, uncertainty moments and contribution weights, and blend them.

Arrays are model-space ``(z, y, x)``; latents ``(L, z', y', x')``.
"""

from __future__ import annotations

import numpy as np

from MRSynthLib.runtime.inference import AUTO_WINDOW_OVERLAP, Prediction, blend_weights, plan_windows, upsample_linear
from MRSynthLib.errors import MRSynthError
from MRSynthLib.methods.translators.registry import KINDS
from MRSynthLib.methods.translators.window import Report, Window


def predict_translator(
    engine,
    arrays: dict[str, np.ndarray],
    target: str,
    *,
    samples: int = 1,
    seed: int = 0,
    window: int | None = None,
    overlap: int = AUTO_WINDOW_OVERLAP,
    sample_batch: int = 4,
    contributions: bool = True,
    progress: Report | None = None,
) -> Prediction:
    """Synthesize ``target`` from normalised model-space inputs with a generative translator engine (any kind of
    :data:`MRSynthLib.methods.translators.registry.KINDS`).

    Args:
        engine: a :mod:`MRSynthLib.methods.translators.engines` engine.
        arrays: contrast -> ``(z, y, x)`` float array, every axis divisible by ``engine.downsampling``.
        samples: 1 → no uncertainty; N > 1 → also the voxel-wise std of N stochastic passes (diffusion:
            N samples, the first being the synthetic image; others: N MC-dropout/flip passes).
        window: sliding-window edge in voxels (None = automatic, 0 = whole volume).
        sample_batch: stochastic passes (diffusion runs) computed together.
        contributions: False skips the contribution maps (they cost extra diffusion runs for ``fsq-ldm``).
        progress: optional ``progress(stage, fraction)``.
    """
    report = progress or (lambda stage, fraction: None)
    spec = KINDS.get(engine.kind)
    if spec is None:
        raise MRSynthError(f"Method {engine.card.method!r} is not a generative translator kind: use MRSynthLib.runtime.inference.")
    names = list(arrays)
    kind = spec.window(engine, names, target, samples, seed, sample_batch, contributions)
    shape = tuple(next(iter(arrays.values())).shape)
    ds = engine.downsampling
    if any(n % ds for n in shape):
        raise MRSynthError(f"Model-space shape {shape} is not divisible by the network's downsampling {ds}: re-export "
                           f"the bundle with preprocessing.size_multiple a multiple of {ds}.")
    multiple = ds * kind.latent_multiple
    padded = tuple(-(-n // multiple) * multiple for n in shape)
    stack = np.zeros((len(names),) + padded, np.float32)
    stack[(slice(None),) + tuple(slice(0, n) for n in shape)] = np.stack([np.asarray(arrays[n], np.float32) for n in names])
    if window is None:  # a kind may cap the automatic window (wldm: its attention grows with the window squared)
        window = getattr(kind, "auto_window", None)
    plan = plan_windows(padded, window, overlap, multiple)
    latent_shape = tuple(n // ds for n in padded)

    synthetic = np.zeros(padded, np.float32)
    weight_sum = np.zeros(padded, np.float32)
    shares = np.zeros((len(names),) + padded, np.float32) if contributions else None
    moment1 = moment2 = None
    count = 0
    for index, start in enumerate(plan.windows()):
        where = tuple(slice(s, s + n) for s, n in zip(start, plan.size))
        latent_where = tuple(slice(s // ds, (s + n) // ds) for s, n in zip(start, plan.size))

        def window_report(stage, fraction, index=index):
            report(stage, (index + fraction) / plan.count)

        result = kind.run(Window(np.ascontiguousarray(stack[(slice(None),) + where]), latent_where, latent_shape,
                                 window_report))
        blend = blend_weights(start, plan.size, padded, plan.overlap)
        synthetic[where] += result.image * blend
        weight_sum[where] += blend
        if shares is not None and result.weights is not None:
            shares[(slice(None),) + where] += upsample_linear(result.weights, ds) * blend
        if result.moments is not None:
            if moment1 is None:
                moment1, moment2 = np.zeros(padded, np.float64), np.zeros(padded, np.float64)
            moment1[where] += result.moments[0] * blend
            moment2[where] += result.moments[1] * blend
            count = result.count
    report("blend", 1.0)
    crop = tuple(slice(0, n) for n in shape)
    weight_sum = np.maximum(weight_sum, 1e-6)
    synthetic = (synthetic / weight_sum)[crop]
    uncertainty = None
    if moment1 is not None and count > 1:
        mean = moment1 / weight_sum / count
        second = moment2 / weight_sum / count
        uncertainty = np.sqrt(np.clip(second - mean**2, 0.0, None) * count / (count - 1)).astype(np.float32)[crop]
    maps: dict[str, np.ndarray] = {}
    if shares is not None:
        shares /= weight_sum
        shares /= np.maximum(shares.sum(0, keepdims=True), 1e-6)
        maps = {n: shares[i][crop] for i, n in enumerate(names)}
    return Prediction(synthetic, uncertainty, maps, plan.count)


__all__ = ["predict_translator"]
