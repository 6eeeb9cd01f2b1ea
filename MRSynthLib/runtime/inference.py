"""Backend-agnostic synthesis in model space: encode → fuse → head → decode, window by window.

An :class:`Engine` (torch or onnxruntime) runs the four network graphs on numpy arrays; this module
does everything else the same way for both, so the backends agree to float precision:

- sliding windows (with linear blending ramps in the overlaps) for volumes larger than one window;
- stochastic passes for the uncertainty: explicit channel-dropout masks drawn from a seeded numpy
  generator (identical on every backend and every window) alternating with a left-right flip;
- contribution maps: gate weights upsampled (trilinear, half-pixel centres) to the image grid.

Arrays are model-space ``(z, y, x)``; latents ``(L, z', y', x')`` with ``z' = z / downsampling``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from MRSynthLib.errors import MRSynthError

#: Volumes with more model-space voxels than this run by sliding window (``window=None``).
AUTO_WINDOW_VOXELS = 160**3
#: Window edge and overlap used by the automatic choice (model-space voxels).
AUTO_WINDOW_SIZE = 128
AUTO_WINDOW_OVERLAP = 16


class Engine(Protocol):
    """The four graphs of an ``fsq-fusion`` bundle, on numpy float32 arrays.

    Batch dimension ``B`` first everywhere; ``M`` slots, ``K`` given slots, ``H`` hidden channels.
    An engine may set ``latent_multiple`` (default 1): latent grids must then be divisible by it (a translator with a
    multi-scale body); :func:`predict` pads and crops.
    """

    backend: str
    device: str
    slots: tuple[str, ...]
    downsampling: int
    hidden_channels: int
    dropout: float

    def encode(self, images: np.ndarray) -> np.ndarray:
        """``(B, 1, Z, Y, X)`` → latents ``(B, L, z, y, x)``."""

    def fuse(self, latents: np.ndarray, slot_codes: np.ndarray, target_onehot: np.ndarray,
             mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(B, K, L, *s)``, ``(K, M)``, ``(B, M)``, mask ``(B, K, *s)`` → hidden ``(B, H, *s)``, weights ``(B, K, *s)``.

        The mask multiplies the gates (availability x the input screening's keep mask); engines whose
        ``spatial_mask`` is False (ONNX graphs exported before screening) take ``(B, K)``."""

    def head(self, hidden: np.ndarray, channel_scale: np.ndarray) -> np.ndarray:
        """``(B, H, *s)``, ``(B, H)`` → target latent ``(B, L, *s)``."""

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """``(B, L, *s)`` → images ``(B, 1, Z, Y, X)``."""


@dataclass
class Prediction:
    """Model-space outputs, arrays of shape ``(z, y, x)``."""

    synthetic: np.ndarray
    uncertainty: np.ndarray | None
    contributions: dict[str, np.ndarray]
    windows: int = 1
    screening: dict | None = None
    """Input screening record: ``applied`` (bool), ``reason`` when not applied, ``maps`` input ->
    latent-grid keep mask ``(z', y', x')`` (1 kept, 0 excluded) when applied (see :mod:`MRSynthLib.preprocessing.screening`)."""


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows lie: one ``(start, stop)`` list per axis; the windows are their product."""

    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    size: tuple[int, int, int]
    overlap: int

    @property
    def count(self) -> int:
        return len(self.starts[0]) * len(self.starts[1]) * len(self.starts[2])

    def windows(self):
        for z in self.starts[0]:
            for y in self.starts[1]:
                for x in self.starts[2]:
                    yield (z, y, x)


def _axis_starts(length: int, size: int, overlap: int, multiple: int) -> tuple[int, ...]:
    """Window starts along one axis: the first at 0, the last ending at ``length``, evenly spread,
    multiples of ``multiple``, neighbours overlapping by at least ``overlap`` voxels."""
    if size >= length:
        return (0,)
    if size - overlap < multiple:  # starts lie on the network's grid: neighbours could not overlap by ``overlap``
        raise ValueError(f"window {size} with overlap {overlap} leaves no start on the {multiple}-voxel grid")
    count = int(np.ceil((length - overlap) / (size - overlap)))
    while True:
        spread = np.linspace(0, length - size, count)[:-1]
        starts = sorted({int(v) // multiple * multiple for v in spread} | {length - size})
        if max(np.diff(starts)) <= size - overlap:
            return tuple(starts)
        count += 1


def plan_windows(shape: tuple[int, int, int], window: int | None, overlap: int, multiple: int) -> WindowPlan:
    """Plan sliding windows over a model-space volume.

    Args:
        shape: volume shape, every axis a multiple of ``multiple``.
        window: window edge in voxels (rounded down to ``multiple``, and up to the smallest multiple that exceeds
            ``overlap`` by ``multiple``: window starts lie on the network's grid, a deep latent denoiser's grid may be
            64 voxels); None = automatic (whole volume up to :data:`AUTO_WINDOW_VOXELS`, else
            :data:`AUTO_WINDOW_SIZE`); 0 = whole volume.
        overlap: target overlap between neighbouring windows (voxels).
    """
    if window is None:
        window = 0 if int(np.prod(shape)) <= AUTO_WINDOW_VOXELS else AUTO_WINDOW_SIZE
    if window < 0:
        raise MRSynthError(f"--window must be 0 (whole volume) or a positive number of voxels, not {window}.")
    if window == 0:
        return WindowPlan(((0,), (0,), (0,)), tuple(shape), 0)
    edge = max(multiple, window // multiple * multiple)
    if overlap >= edge:
        raise MRSynthError(f"The window overlap ({overlap}) must be smaller than the window ({edge}): use a larger --window.")
    if edge - overlap < multiple:  # window starts are multiples of ``multiple``: grow the window until they can overlap
        edge = -(-(overlap + multiple) // multiple) * multiple
    size = tuple(min(edge, n) for n in shape)
    starts = tuple(_axis_starts(n, w, overlap, multiple) for n, w in zip(shape, size))
    return WindowPlan(starts, size, overlap)  # type: ignore[arg-type]


def blend_weights(start: tuple[int, ...], size: tuple[int, ...], shape: tuple[int, ...], overlap: int) -> np.ndarray:
    """Per-voxel blending weight of one window ``(z, y, x)``: 1 inside, linear ramps over ``overlap`` voxels
    towards edges that lie inside the volume (edges on the volume border keep weight 1)."""
    weight = np.ones(size, dtype=np.float32)
    if overlap <= 0:
        return weight
    for axis, (s, n, total) in enumerate(zip(start, size, shape)):
        ramp = np.ones(n, dtype=np.float32)
        r = np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)
        if s > 0:
            ramp[:overlap] = np.minimum(ramp[:overlap], r)
        if s + n < total:
            ramp[n - overlap:] = np.minimum(ramp[n - overlap:], r[::-1])
        view = [1, 1, 1]
        view[axis] = n
        weight = weight * ramp.reshape(view)
    return weight


def upsample_linear(array: np.ndarray, factor: int) -> np.ndarray:
    """Trilinear upsampling by an integer factor with half-pixel centres (as torch ``align_corners=False``).

    ``(C, z, y, x)`` → ``(C, z*f, y*f, x*f)``.
    """
    out = array.astype(np.float32, copy=False)
    if factor == 1:
        return out
    for axis in (1, 2, 3):
        n = out.shape[axis]
        source = np.maximum((np.arange(n * factor, dtype=np.float64) + 0.5) / factor - 0.5, 0.0)
        low = np.floor(source).astype(np.int64)
        high = np.minimum(low + 1, n - 1)
        frac = (source - low).astype(np.float32)
        shape = [1, 1, 1, 1]
        shape[axis] = n * factor
        frac = frac.reshape(shape)
        out = np.take(out, low, axis=axis) * (1 - frac) + np.take(out, high, axis=axis) * frac
    return out


def dropout_masks(samples: int, channels: int, rate: float, seed: int) -> np.ndarray:
    """``(samples, channels)`` channel-dropout scales (0 or ``1 / (1 - rate)``), seeded and backend-independent."""
    rng = np.random.default_rng(seed)
    if rate <= 0:
        return np.ones((samples, channels), dtype=np.float32)
    keep = rng.random((samples, channels)) >= rate
    return (keep / (1.0 - rate)).astype(np.float32)


def predict(
    engine: Engine,
    arrays: dict[str, np.ndarray],
    target: str,
    *,
    samples: int = 1,
    seed: int = 0,
    window: int | None = None,
    overlap: int = AUTO_WINDOW_OVERLAP,
    sample_batch: int | None = None,
    contributions: bool = True,
    screen: bool = True,
    progress: Callable[[str, float], None] | None = None,
) -> Prediction:
    """Synthesize ``target`` from normalised model-space inputs.

    Args:
        arrays: contrast -> ``(z, y, x)`` float array, every axis divisible by ``engine.downsampling``.
        samples: 1 → deterministic only; N > 1 → also N stochastic passes whose voxel-wise std is the
            uncertainty (the synthetic image stays the deterministic pass).
        window: sliding-window edge in voxels (None = automatic, 0 = whole volume).
        sample_batch: stochastic passes decoded together (memory grows linearly with it); None = the
            engine's ``sample_batch`` (torch 4; onnxruntime 1, measured faster and leaner one at a time).
        contributions: False skips the contribution maps (``Prediction.contributions`` is then empty).
        screen: treat input regions the autoencoder cannot reconstruct as missing (:mod:`MRSynthLib.preprocessing.screening`),
            when the bundle card has screening settings; costs one decoder pass per input.
        progress: optional ``progress(stage, fraction)``.
    """
    ds = engine.downsampling
    shape = tuple(next(iter(arrays.values())).shape)
    if any(n % ds for n in shape):
        raise MRSynthError(f"Model-space shape {shape} is not divisible by the network's downsampling {ds}: re-export the bundle "
                           f"with preprocessing.size_multiple a multiple of {ds}.")
    multiple = ds * int(getattr(engine, "latent_multiple", 1))
    padded = tuple(-(-n // multiple) * multiple for n in shape)
    options = dict(samples=samples, seed=seed, window=window, overlap=overlap, sample_batch=sample_batch,
                   contributions=contributions, screen=screen, progress=progress)
    if padded == shape:
        return _predict_grid(engine, arrays, target, multiple, **options)
    # a multi-scale translator body needs latent grids divisible by its multiple: zero-pad (model-space background)
    widths = [(0, p - n) for p, n in zip(padded, shape)]
    result = _predict_grid(engine, {n: np.pad(np.asarray(a, np.float32), widths) for n, a in arrays.items()}, target,
                           multiple, **options)
    crop = tuple(slice(0, n) for n in shape)
    latent_crop = tuple(slice(0, n // ds) for n in shape)
    screening = result.screening
    if screening is not None and "maps" in screening:
        screening = {**screening, "maps": {n: m[latent_crop] for n, m in screening["maps"].items()}}
    return Prediction(result.synthetic[crop], None if result.uncertainty is None else result.uncertainty[crop],
                      {n: m[crop] for n, m in result.contributions.items()}, result.windows, screening)


def _predict_grid(
    engine: Engine,
    arrays: dict[str, np.ndarray],
    target: str,
    multiple: int,
    *,
    samples: int,
    seed: int,
    window: int | None,
    overlap: int,
    sample_batch: int | None,
    contributions: bool,
    screen: bool,
    progress: Callable[[str, float], None] | None,
) -> Prediction:
    """:func:`predict` on a grid whose every axis is a multiple of ``multiple`` (windows too)."""
    report = progress or (lambda stage, fraction: None)
    if sample_batch is None:
        sample_batch = int(getattr(engine, "sample_batch", 4))
    names = list(arrays)
    shape = tuple(next(iter(arrays.values())).shape)
    ds = engine.downsampling
    plan = plan_windows(shape, window, overlap, multiple)
    m = len(engine.slots)
    slot_codes = np.eye(m, dtype=np.float32)[[engine.slots.index(n) for n in names]]
    target_onehot = np.eye(m, dtype=np.float32)[[engine.slots.index(target)]]
    screening, screening_record = _screening_settings(engine, screen)
    scales = dropout_masks(samples, engine.hidden_channels, engine.dropout, seed) if samples > 1 else None

    synthetic = np.zeros(shape, np.float32)
    weight_sum = np.zeros(shape, np.float32)
    shares = np.zeros((len(names),) + shape, np.float32) if contributions else None
    moment1 = np.zeros(shape, np.float64) if samples > 1 else None
    moment2 = np.zeros(shape, np.float64) if samples > 1 else None
    stack = np.stack([np.asarray(arrays[n], dtype=np.float32) for n in names])  # (K, Z, Y, X)
    latent_grid = tuple(n // ds for n in shape)
    kept_maps = np.ones((len(names),) + latent_grid, np.float32) if screening is not None else None

    for index, start in enumerate(plan.windows()):
        where = tuple(slice(s, s + n) for s, n in zip(start, plan.size))
        fraction = index / plan.count
        report("encode", fraction)
        window_inputs = np.ascontiguousarray(stack[(slice(None),) + where])[:, None]  # (K, 1, *w)
        latents = np.concatenate([engine.encode(window_inputs[k:k + 1]) for k in range(len(names))])  # (K, L, *s)
        latents = latents[None]  # (1, K, L, *s)
        if screening is not None:
            report("screen", fraction)
            from MRSynthLib.preprocessing.screening import screen_window

            keep = screen_window(engine, window_inputs[:, 0], latents[0], names, screening)  # (K, *s)
            kept_maps[(slice(None),) + tuple(slice(w.start // ds, w.stop // ds) for w in where)] = keep
            mask = keep[None]
        elif getattr(engine, "spatial_mask", True):
            mask = np.ones((1, len(names)) + latents.shape[3:], dtype=np.float32)
        else:  # an ONNX fusion graph exported before screening takes one availability per input
            mask = np.ones((1, len(names)), dtype=np.float32)
        report("translate", fraction)
        hidden, gates = engine.fuse(latents, slot_codes, target_onehot, mask)
        predicted = engine.head(hidden, np.ones((1, engine.hidden_channels), np.float32))
        report("decode", fraction)
        image = engine.decode(predicted)[0, 0]
        blend = blend_weights(start, plan.size, shape, plan.overlap)
        synthetic[where] += image * blend
        weight_sum[where] += blend
        if shares is not None:
            shares[(slice(None),) + where] += upsample_linear(gates[0], ds) * blend
        if scales is not None:
            report("uncertainty", fraction)
            flipped_hidden, _ = engine.fuse(np.ascontiguousarray(latents[..., ::-1]), slot_codes, target_onehot,
                                           np.ascontiguousarray(mask[..., ::-1]) if mask.ndim > 2 else mask)
            sums = _sample_moments(engine, {False: hidden, True: flipped_hidden}, scales, sample_batch,
                                   lambda k: report("uncertainty", (index + k / samples) / plan.count))
            moment1[where] += sums[0] * blend
            moment2[where] += sums[1] * blend
    report("blend", 1.0)
    weight_sum = np.maximum(weight_sum, 1e-6)
    synthetic /= weight_sum
    maps = {}
    if shares is not None:
        shares /= weight_sum
        shares /= np.maximum(shares.sum(0, keepdims=True), 1e-6)
        maps = {n: shares[i] for i, n in enumerate(names)}
    uncertainty = None
    if scales is not None:
        mean = moment1 / weight_sum / samples
        second = moment2 / weight_sum / samples
        variance = np.clip(second - mean**2, 0.0, None) * samples / (samples - 1)
        uncertainty = np.sqrt(variance).astype(np.float32)
    if kept_maps is not None:
        screening_record["maps"] = {n: kept_maps[i] for i, n in enumerate(names)}
    return Prediction(synthetic, uncertainty, maps, plan.count, screening_record)


def _screening_settings(engine: Engine, screen: bool):
    """``(ScreeningConfig or None, record)``: whether this engine and bundle can screen the inputs."""
    from MRSynthLib.preprocessing.screening import ScreeningConfig

    if not screen:
        return None, {"applied": False, "reason": "switched off (--no-screening)"}
    bundle = getattr(engine, "bundle", None)
    config = ScreeningConfig.from_card(bundle.card.networks) if bundle is not None else None
    if config is None:
        return None, {"applied": False, "reason": "the bundle has no screening calibration"}
    if not getattr(engine, "spatial_mask", True):
        return None, {"applied": False, "reason": "the bundle's ONNX fusion graph predates screening: re-export it "
                                                  "with `mrsynth-train export-onnx`"}
    return config, {"applied": True, "settings": {k: v for k, v in config.to_dict().items() if k != "calibration"}}


def _sample_moments(engine: Engine, hidden: dict[bool, np.ndarray], scales: np.ndarray, sample_batch: int,
                    report) -> tuple[np.ndarray, np.ndarray]:
    """Sum and sum of squares ``(z, y, x)`` over the stochastic passes of one window.

    Pass ``k`` uses dropout mask ``scales[k]`` on the fused features of the inputs as given (even ``k``)
    or flipped left-right (odd ``k``, flipped back after decoding).
    """
    total = None
    total_sq = None
    for flip in (False, True):
        ks = [k for k in range(len(scales)) if (k % 2 == 1) == flip]
        for first in range(0, len(ks), max(1, sample_batch)):
            batch = ks[first:first + max(1, sample_batch)]
            report(batch[0])
            features = np.repeat(hidden[flip], len(batch), axis=0)
            decoded = engine.decode(engine.head(features, scales[batch]))[:, 0].astype(np.float64)
            if flip:
                decoded = decoded[..., ::-1]
            part, part_sq = decoded.sum(0), (decoded**2).sum(0)
            total = part if total is None else total + part
            total_sq = part_sq if total_sq is None else total_sq + part_sq
    return total, total_sq
