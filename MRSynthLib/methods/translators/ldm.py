"""``<latent>-ldm`` (latent diffusion) for synthesis, window by window (numpy).

Encode the inputs once, run the fusion translator once for the structure guide, then the diffusion loop
of :mod:`MRSynthLib.methods.translators.samplers` with the denoiser graph, all samples in one batch. The synthetic image is
sample 0 of the seed (it does not change with ``samples``); the uncertainty is the voxel-wise std over
samples ``0..N-1``. Initial and per-step noise are drawn for the whole (padded) latent volume from
``(seed, sample, step)`` and cut per window, so windows agree in their overlaps and both backends draw
identical noise. Contributions: **occlusion sensitivity** — for each input ``k`` the deterministic sample 0
is redrawn without ``k`` (masked out of the conditioning and the fusion guide), with the same noise; the
contribution of ``k`` is its share of the total latent change ``mean_c |z - z_without_k|`` (one input
→ 1 everywhere). It costs one extra diffusion run per input, so it is computed only when asked for.
"""

from __future__ import annotations

import numpy as np

from MRSynthLib.models.bundle import card_network
from MRSynthLib.networks.configs.denoiser import DenoiserConfig
from MRSynthLib.networks.configs.fusion import FusionConfig
from MRSynthLib.methods.translators.samplers import SamplingConfig
from MRSynthLib.methods.translators.sampling import sample_runs
from MRSynthLib.methods.translators.kind_example import ALL_SLOTS, KindExample, tiny_sampling
from MRSynthLib.methods.translators.window import Window, WindowResult, encode_each, image_moments, onehot


class DiffusionKind:
    """``fsq-ldm``: fusion guide + denoiser, sampled with :mod:`MRSynthLib.methods.translators.samplers`."""

    denoiser_graph = "denoiser"  # the graph sampled (``wldm`` reuses this class with its own)

    def __init__(self, engine, names: list[str], target: str, samples: int, seed: int, sample_batch: int,
                 contributions: bool) -> None:
        translator = card_network(engine.card, "translator", FusionConfig)
        denoiser = card_network(engine.card, "denoiser", DenoiserConfig)
        self.engine = engine
        self.slots = translator.contrasts
        self.hidden = translator.hidden
        self.sampling = card_network(engine.card, "diffusion", SamplingConfig)
        self.latent_channels = denoiser.latent_channels
        self.latent_multiple = denoiser.multiple
        self.names, self.samples, self.seed = names, samples, seed
        self.batch = max(1, sample_batch)
        self.contributions = contributions
        m = len(self.slots)
        self.slot_index = [self.slots.index(n) for n in names]
        self.target_onehot = onehot(m, [self.slots.index(target)])

    def _guide(self, latents: np.ndarray, given: list[int]) -> np.ndarray:
        """Fusion prediction ``(1, L, *s)`` from the inputs ``given`` (indices into ``names``)."""
        codes = onehot(len(self.slots), [self.slot_index[k] for k in given])
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

        def velocity(x, t, condition):
            return self.engine.run(self.denoiser_graph, x=x, t=np.full((len(x),), t, np.float32), **condition)[0]

        return sample_runs(self.sampling, velocity, members, window, self.latent_channels, self.seed, self.batch)

    def run(self, window: Window) -> WindowResult:
        window.report("encode", 0.0)
        latents = encode_each(self.engine, window.inputs)
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
        moments = image_moments(images) if self.samples > 1 else None
        weights = None
        if self.contributions:
            if occlusion:
                change = np.abs(sampled[self.samples:] - sampled[:1]).mean(axis=1)  # (K, *s)
                total = change.sum(0, keepdims=True)
                weights = np.where(total > 1e-8, change / np.maximum(total, 1e-8), 1.0 / len(everything))
            else:
                weights = np.ones((1,) + sampled.shape[2:], np.float32)
        return WindowResult(images[0], moments, weights, self.samples if moments else 0)



def example() -> KindExample:
    """A tiny ``ldm`` bundle's content (:mod:`MRSynthLib.methods.translators.kind_example`)."""
    from MRSynthLib.networks.configs.denoiser import DenoiserConfig
    from MRSynthLib.networks.configs.fusion import FusionConfig

    networks = {"translator": FusionConfig(hidden=8, num_blocks=1).to_dict(),
                "denoiser": DenoiserConfig(channels=(8, 8, 16), attention_levels=(False, False, False),
                                           norm_num_groups=4, num_head_channels=16).to_dict(),
                "diffusion": tiny_sampling()}
    return KindExample(networks, ALL_SLOTS, ALL_SLOTS, (("t1", "t2", "flair"), "t1ce"))

__all__ = ["DiffusionKind", "example"]
