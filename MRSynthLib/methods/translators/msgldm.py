"""Window inference of ``<latent>-msgldm`` bundles (numpy only, shared by the torch and onnxruntime engines).

Per window: encode the inputs once; the ``msgldm_structure`` graph turns the given slots' latents
(missing slots zero and flagged unavailable) into the structure representation and the MMSF gate
weights; then the DDIM / Euler loop of :mod:`MRSynthLib.methods.translators.samplers` runs the ``msgldm_denoiser`` graph,
all ``samples`` in batches. The synthetic image is sample 0 of the seed (it does not change with
``samples``); the uncertainty is the voxel-wise std over samples ``0..N-1``. Noise is drawn for the
whole padded latent volume from ``(seed, sample, step)`` and cut per window, as for ``ldm``.
Contributions are the MMSF gate weights (mean over scales, normalised over the given inputs) at the
latent resolution; the shared driver upsamples them to the image.
"""

from __future__ import annotations

import numpy as np

from MRSynthLib.models.bundle import card_network
from MRSynthLib.networks.configs.msgldm import MSGLDMConfig
from MRSynthLib.methods.translators.samplers import SamplingConfig
from MRSynthLib.methods.translators.sampling import sample_runs
from MRSynthLib.methods.translators.kind_example import ALL_SLOTS, KindExample, tiny_sampling
from MRSynthLib.methods.translators.window import Window, WindowResult, encode_each, image_moments


class MSGLDMKind:
    """``fsq-msgldm``: structure representation once per window, then the seeded diffusion loop."""

    def __init__(self, engine, names: list[str], target: str, samples: int, seed: int, sample_batch: int,
                 contributions: bool) -> None:
        network = card_network(engine.card, "msgldm", MSGLDMConfig)
        self.engine = engine
        self.slots = network.contrasts
        self.sampling = card_network(engine.card, "diffusion", SamplingConfig)
        self.latent_channels = network.latent_channels
        self.latent_multiple = network.multiple
        self.names, self.samples, self.seed = names, samples, seed
        self.batch = max(1, sample_batch)
        self.contributions = contributions
        self.slot_index = [self.slots.index(n) for n in names]
        self.target_onehot = np.eye(len(self.slots), dtype=np.float32)[[self.slots.index(target)]]

    def _structure(self, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Input latents ``(K, L, *s)`` → structure ``(1, C0, *s)`` and weights of the inputs ``(K, *s)``."""
        m = len(self.slots)
        slot_latents = np.zeros((1, m) + latents.shape[1:], np.float32)
        available = np.zeros((1, m), np.float32)
        for k, j in enumerate(self.slot_index):
            slot_latents[0, j] = latents[k] * self.sampling.latent_scale
            available[0, j] = 1.0
        structure, weights = self.engine.run("msgldm_structure", latents=slot_latents, available=available,
                                             target_onehot=self.target_onehot)
        return structure, weights[0, self.slot_index]

    def run(self, window: Window) -> WindowResult:
        window.report("encode", 0.0)
        latents = encode_each(self.engine, window.inputs)
        window.report("translate", 0.0)
        structure, weights = self._structure(latents)
        condition = {"structure": structure, "target_onehot": self.target_onehot}

        def velocity(x, t, condition):
            return self.engine.run("msgldm_denoiser", x=x, t=np.full((len(x),), t, np.float32), **condition)[0]

        runs = [(n, condition) for n in range(self.samples)]
        latents_sampled = sample_runs(self.sampling, velocity, runs, window, self.latent_channels, self.seed, self.batch)
        sampled = [latents_sampled[i:i + self.batch] for i in range(0, self.samples, self.batch)]
        window.report("decode", 0.0)
        images = np.concatenate([self.engine.decode(s)[:, 0] for s in sampled])
        moments = image_moments(images) if self.samples > 1 else None
        return WindowResult(images[0], moments, weights if self.contributions else None,
                            self.samples if moments else 0)


def example() -> KindExample:
    """A tiny ``msgldm`` bundle's content (:mod:`MRSynthLib.methods.translators.kind_example`)."""
    from MRSynthLib.networks.configs.msgldm import MSGLDMConfig

    networks = {"msgldm": MSGLDMConfig(channels=(8, 8), style_dim=4, style_width=8, attention_width=8,
                                       attention_heads=1, denoiser_channels=(8, 16), norm_num_groups=4,
                                       num_head_channels=8).to_dict(),
                "diffusion": tiny_sampling()}
    return KindExample(networks, ALL_SLOTS, ALL_SLOTS, (("t1", "t2", "flair"), "t1ce"))
