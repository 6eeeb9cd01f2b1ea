"""Backend-agnostic synthesis for the generative translator kinds, window by window (numpy only).

Each kind turns the inputs of one window into a synthetic image, uncertainty moments and contribution
weights; the window loop, blending and padding are shared (and follow :mod:`MRSynthLib.inference`):

- ``fsq-ldm`` (latent diffusion): encode the inputs once, run the fusion translator once for the
  structure guide, then the diffusion loop of :mod:`MRSynthLib.samplers` with the denoiser graph,
  all samples in one batch. The synthetic image is sample 0 of the seed (it does not change with
  ``samples``); the uncertainty is the voxel-wise std over samples ``0..N-1``. Initial and per-step
  noise are drawn for the whole (padded) latent volume from ``(seed, sample, step)`` and cut per
  window, so windows agree in their overlaps and both backends draw identical noise.
  Contributions: **occlusion sensitivity** — for each input ``k`` the deterministic sample 0 is redrawn
  without ``k`` (masked out of the conditioning and the fusion guide), with the same noise; the
  contribution of ``k`` is its share of the total latent change ``mean_c |z - z_without_k|`` (one input
  → 1 everywhere). It costs one extra diffusion run per input, so it is computed only when asked for.
- ``fsq-cyclegan``: one source → one target; the source contributes everything (a map of ones).
  Uncertainty: MC channel dropout in the generator head alternating with a left-right flip.
- ``fsq-targetcode``: each input is translated on its own; the predictions are combined by their
  predicted precision (inverse variance). Contributions = those precision weights (channel mean).
  Uncertainty: MC dropout + flip as for the cyclegan.

Arrays are model-space ``(z, y, x)``; latents ``(L, z', y', x')``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from MRSynthLib.errors import ContrastError, MRSynthError
from MRSynthLib.inference import (
    AUTO_WINDOW_OVERLAP,
    Prediction,
    blend_weights,
    dropout_masks,
    plan_windows,
    upsample_linear,
)
from MRSynthLib.samplers import SamplingConfig, sample, seeded_normal

Report = Callable[[str, float], None]


@dataclass
class WindowResult:
    """One window's outputs: ``image`` ``(Z, Y, X)``; ``moments`` (sum, sum of squares) over ``count``
    stochastic images or None; ``weights`` ``(K, z, y, x)`` latent-resolution contributions or None."""

    image: np.ndarray
    moments: tuple[np.ndarray, np.ndarray] | None
    weights: np.ndarray | None
    count: int = 0


@dataclass(frozen=True)
class Window:
    """What a kind needs about the current window: the inputs ``(K, Z, Y, X)``, its latent slices
    inside the padded latent volume, and that volume's latent shape ``(z, y, x)``."""

    inputs: np.ndarray
    latent_where: tuple[slice, slice, slice]
    latent_shape: tuple[int, int, int]
    report: Callable[[str, float], None]


def _onehot(size: int, indices: list[int]) -> np.ndarray:
    return np.eye(size, dtype=np.float32)[indices]


def _encode_each(engine, inputs: np.ndarray) -> np.ndarray:
    """``(K, Z, Y, X)`` → ``(K, L, z, y, x)``, one input at a time (memory stays flat in K)."""
    return np.concatenate([engine.encode(np.ascontiguousarray(inputs[k:k + 1, None])) for k in range(len(inputs))])


def _image_moments(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = images.astype(np.float64)
    return images.sum(0), (images**2).sum(0)


def _add(total, part):
    return part if total is None else (total[0] + part[0], total[1] + part[1])


class _DiffusionKind:
    """``fsq-ldm``: fusion guide + denoiser, sampled with :mod:`MRSynthLib.samplers`."""

    denoiser_graph = "denoiser"  # the graph sampled (``wldm`` reuses this class with its own)

    def __init__(self, engine, names: list[str], target: str, samples: int, seed: int, sample_batch: int,
                 contributions: bool) -> None:
        networks = engine.card.networks
        self.engine = engine
        self.slots = tuple(networks["translator"]["contrasts"])
        self.hidden = int(networks["translator"]["hidden"])
        self.sampling = SamplingConfig.from_dict(networks["diffusion"])
        self.latent_channels = int(networks["denoiser"]["latent_channels"])
        self.latent_multiple = 2 ** (len(networks["denoiser"]["channels"]) - 1)
        self.names, self.samples, self.seed = names, samples, seed
        self.batch = max(1, sample_batch)
        self.contributions = contributions
        m = len(self.slots)
        self.slot_index = [self.slots.index(n) for n in names]
        self.target_onehot = _onehot(m, [self.slots.index(target)])

    def _guide(self, latents: np.ndarray, given: list[int]) -> np.ndarray:
        """Fusion prediction ``(1, L, *s)`` from the inputs ``given`` (indices into ``names``)."""
        codes = _onehot(len(self.slots), [self.slot_index[k] for k in given])
        hidden, _ = self.engine.run("translator_fuse", latents=latents[given][None], slot_codes=codes,
                                    target_onehot=self.target_onehot, mask=np.ones((1, len(given)), np.float32))
        return self.engine.run("translator_head", hidden=hidden, channel_scale=np.ones((1, self.hidden), np.float32))[0]

    def _member(self, latents: np.ndarray, given: list[int]) -> dict[str, np.ndarray]:
        """Conditioning of one diffusion run (batch of 1), latents scaled by ``latent_scale``."""
        scale = self.sampling.latent_scale
        slot_latents = np.zeros((1, len(self.slots)) + latents.shape[1:], np.float32)
        available = np.zeros((1, len(self.slots)), np.float32)
        for k in given:
            slot_latents[0, self.slot_index[k]] = latents[k] * scale
            available[0, self.slot_index[k]] = 1.0
        return {"latents": slot_latents, "available": available, "target_onehot": self.target_onehot,
                "guide": self._guide(latents, given) * scale}

    def _run(self, members: list[tuple[int, dict]], window: Window) -> np.ndarray:
        """Sample every member ``(noise index, conditioning)``; returns unscaled latents ``(len, L, *s)``."""
        full = (self.latent_channels,) + tuple(window.latent_shape)
        where = (slice(None),) + window.latent_where
        out = []
        for first in range(0, len(members), self.batch):
            chunk = members[first:first + self.batch]
            condition = {key: np.concatenate([c[key] for _, c in chunk]) for key in chunk[0][1]}
            noise_ids = [n for n, _ in chunk]
            start = np.stack([seeded_normal(full, self.seed, n, 0)[where] for n in noise_ids])

            def velocity(x, t, condition=condition):
                return self.engine.run(self.denoiser_graph, x=x, t=np.full((len(x),), t, np.float32), **condition)[0]

            def step_noise(i, noise_ids=noise_ids):
                return np.stack([seeded_normal(full, self.seed, n, i + 1)[where] for n in noise_ids])

            def progress(i, first=first):
                window.report("diffusion", (first + i / self.sampling.steps * len(chunk)) / len(members))

            out.append(sample(self.sampling, velocity, start, step_noise, progress))
        return np.concatenate(out) / self.sampling.latent_scale

    def run(self, window: Window) -> WindowResult:
        window.report("encode", 0.0)
        latents = _encode_each(self.engine, window.inputs)
        window.report("translate", 0.0)
        everything = list(range(len(self.names)))
        full = self._member(latents, everything)
        members = [(n, full) for n in range(self.samples)]
        occlusion = self.contributions and len(everything) > 1
        if occlusion:
            members += [(0, self._member(latents, [j for j in everything if j != k])) for k in everything]
        sampled = self._run(members, window)
        window.report("decode", 0.0)
        images = np.concatenate([self.engine.decode(sampled[i:min(i + self.batch, self.samples)])[:, 0]
                                 for i in range(0, self.samples, self.batch)])
        moments = _image_moments(images) if self.samples > 1 else None
        weights = None
        if self.contributions:
            if occlusion:
                change = np.abs(sampled[self.samples:] - sampled[:1]).mean(axis=1)  # (K, *s)
                total = change.sum(0, keepdims=True)
                weights = np.where(total > 1e-8, change / np.maximum(total, 1e-8), 1.0 / len(everything))
            else:
                weights = np.ones((1,) + sampled.shape[2:], np.float32)
        return WindowResult(images[0], moments, weights, self.samples if moments else 0)


class _DropoutKind:
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
                total = _add(total, _image_moments(images[..., ::-1] if flip else images))
        return total, self.samples


class _CycleGANKind(_DropoutKind):
    """``fsq-cyclegan``: the source→target generator."""

    def __init__(self, engine, names: list[str], target: str, samples: int, seed: int, sample_batch: int,
                 contributions: bool) -> None:
        super().__init__(samples, seed, sample_batch)
        generator = engine.card.networks["generator"]
        if names != [generator["source"]] or target != generator["target"]:
            raise ContrastError(f"Model {engine.card.name} translates {generator['source']} into {generator['target']} "
                                f"only: give exactly --input {generator['source']}=... and --target {generator['target']}.")
        self.engine = engine
        self.hidden, self.dropout = int(generator["hidden"]), float(generator["dropout"])
        self.latent_multiple = 1

    def head_images(self, features, scales):
        features = np.repeat(features, len(scales), axis=0)
        latent = self.engine.run("generator_head", hidden=features, channel_scale=scales)[0]
        return self.engine.decode(latent)[:, 0], None

    def run(self, window: Window) -> WindowResult:
        window.report("encode", 0.0)
        latents = _encode_each(self.engine, window.inputs)  # (1, L, *s)
        window.report("translate", 0.0)
        features = self.engine.run("generator_features", latents=latents)[0]
        window.report("decode", 0.0)
        image, _ = self.head_images(features, np.ones((1, self.hidden), np.float32))
        flipped = None
        if self.samples > 1:
            flipped = self.engine.run("generator_features", latents=np.ascontiguousarray(latents[..., ::-1]))[0]
        moments, count = self.stochastic_moments({False: features, True: flipped}, window.report)
        return WindowResult(image[0], moments, np.ones((1,) + latents.shape[2:], np.float32), count)


def precision_weights(logvars: np.ndarray) -> np.ndarray:
    """Inverse-variance weights ``(K, ...)`` from log-variances ``(K, ...)`` (softmax of ``-logvar`` over K)."""
    logits = -logvars.astype(np.float64)
    logits -= logits.max(axis=0, keepdims=True)
    weights = np.exp(logits)
    return (weights / weights.sum(axis=0, keepdims=True)).astype(np.float32)


class _TargetCodeKind(_DropoutKind):
    """``fsq-targetcode``: every input translated by the shared network, fused by predicted precision."""

    def __init__(self, engine, names: list[str], target: str, samples: int, seed: int, sample_batch: int,
                 contributions: bool) -> None:
        super().__init__(samples, seed, sample_batch)
        config = engine.card.networks["targetcode"]
        slots = tuple(config["contrasts"])
        self.engine = engine
        self.hidden, self.dropout = int(config["hidden"]), float(config["dropout"])
        self.source_codes = _onehot(len(slots), [slots.index(n) for n in names])
        self.target_codes = _onehot(len(slots), [slots.index(target)] * len(names))
        self.latent_multiple = 1

    def _fused(self, features: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``features`` ``(K, H, *s)``, ``scales`` ``(P, H)`` → fused latents ``(P, L, *s)``, weights ``(P, K, L, *s)``."""
        k, p = len(features), len(scales)
        mean, logvar = self.engine.run("targetcode_head", hidden=np.tile(features, (p,) + (1,) * (features.ndim - 1)),
                                       target_onehot=np.tile(self.target_codes, (p, 1)),
                                       channel_scale=np.repeat(scales, k, axis=0))
        mean = mean.reshape((p, k) + mean.shape[1:])
        weights = precision_weights(np.moveaxis(logvar.reshape((p, k) + logvar.shape[1:]), 1, 0))  # (K, P, L, *s)
        weights = np.moveaxis(weights, 0, 1)
        return (weights * mean).sum(axis=1), weights

    def head_images(self, features, scales):
        fused, weights = self._fused(features, scales)
        return self.engine.decode(fused)[:, 0], weights

    def run(self, window: Window) -> WindowResult:
        window.report("encode", 0.0)
        latents = _encode_each(self.engine, window.inputs)  # (K, L, *s)
        window.report("translate", 0.0)

        def features_of(lat):
            return self.engine.run("targetcode_features", latents=lat, source_onehot=self.source_codes,
                                   target_onehot=self.target_codes)[0]

        features = features_of(latents)
        window.report("decode", 0.0)
        image, weights = self.head_images(features, np.ones((1, self.hidden), np.float32))
        flipped = features_of(np.ascontiguousarray(latents[..., ::-1])) if self.samples > 1 else None
        moments, count = self.stochastic_moments({False: features, True: flipped}, window.report)
        return WindowResult(image[0], moments, weights[0].mean(axis=1), count)


KINDS = {"ldm": _DiffusionKind, "cyclegan": _CycleGANKind, "targetcode": _TargetCodeKind}


def _vqseq2seq_kind(*args):
    """``<latent>-vqseq2seq`` (:mod:`MRSynthLib.translator_vqseq2seq`, imported lazily: it builds on this module)."""
    from MRSynthLib.translator_vqseq2seq import VQSeq2SeqKind

    return VQSeq2SeqKind(*args)


KINDS["vqseq2seq"] = _vqseq2seq_kind


def _msgldm_kind(*args):
    """``fsq-msgldm`` (:mod:`MRSynthLib.translator_msgldm`, imported here lazily: it builds on this module)."""
    from MRSynthLib.translator_msgldm import MSGLDMKind

    return MSGLDMKind(*args)


KINDS["msgldm"] = _msgldm_kind

def _sscf_kind(*args):
    """``<latent>-sscf`` (:mod:`MRSynthLib.translator_sscf`, imported lazily: it builds on this module)."""
    from MRSynthLib.translator_sscf import SSCFKind

    return SSCFKind(*args)


KINDS["sscf"] = _sscf_kind


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
    """Synthesize ``target`` from normalised model-space inputs with a ``fsq-ldm/cyclegan/targetcode`` engine.

    Args:
        engine: a :mod:`MRSynthLib.translator_engines` engine.
        arrays: contrast -> ``(z, y, x)`` float array, every axis divisible by ``engine.downsampling``.
        samples: 1 → no uncertainty; N > 1 → also the voxel-wise std of N stochastic passes (diffusion:
            N samples, the first being the synthetic image; others: N MC-dropout/flip passes).
        window: sliding-window edge in voxels (None = automatic, 0 = whole volume).
        sample_batch: stochastic passes (diffusion runs) computed together.
        contributions: False skips the contribution maps (they cost extra diffusion runs for ``fsq-ldm``).
        progress: optional ``progress(stage, fraction)``.
    """
    report = progress or (lambda stage, fraction: None)
    kind_class = KINDS.get(engine.kind)
    if kind_class is None:
        raise MRSynthError(f"Method {engine.card.method!r} is not a generative translator kind: use MRSynthLib.inference.")
    names = list(arrays)
    kind = kind_class(engine, names, target, samples, seed, sample_batch, contributions)
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


def _register_wldm() -> None:
    """3D-WLDM's kind builds on :class:`_DiffusionKind` (:mod:`MRSynthLib.translator_wldm`)."""
    from MRSynthLib.translator_wldm import WLDMKind

    KINDS["wldm"] = WLDMKind


_register_wldm()
