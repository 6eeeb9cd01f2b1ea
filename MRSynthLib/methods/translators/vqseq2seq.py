"""Inference of ``<latent>-vqseq2seq`` bundles, one window at a time (numpy; both backends).

1. Each input is encoded by the stage-1 encoder, then by ``vqseq2seq_encode`` into its VQ common latent
   ``q_k`` and log-variance ``logvar_k`` (the per-sequence Gaussian of the common latent).
2. ``vqseq2seq_fuse`` combines the inputs (:func:`MRSynthLib.networks.vqseq2seq.common_gaussian`): precision
   weights ``w_k``, mean ``sum_k w_k q_k``, variance = product of the per-input Gaussians + the spread of
   the inputs around the mean. **Contributions** are the weights ``w_k`` (channel mean): how much each
   input's common latent makes up the fused one; they sum to 1 per voxel.
3. The synthetic image decodes the mean with the target code (``vqseq2seq_decode``, then the stage-1
   decoder): it does not depend on the sample count.
4. **Uncertainty** (``samples`` N >= 2): N reparameterised samples ``mean + exp(logvar / 2) * eps`` of the
   common latent, each decoded; the voxel-wise std of the N images. ``eps`` is drawn for the whole padded
   latent volume from ``(seed, sample)`` and cut per window, so windows and backends agree.
"""

from __future__ import annotations

import numpy as np

from MRSynthLib.models.bundle import card_network
from MRSynthLib.networks.configs.vqseq2seq import VQSeq2SeqConfig
from MRSynthLib.methods.translators.samplers import seeded_normal
from MRSynthLib.methods.translators.kind_example import ALL_SLOTS, KindExample
from MRSynthLib.methods.translators.window import Window, WindowResult, encode_each, image_moments, onehot


class VQSeq2SeqKind:
    """``<latent>-vqseq2seq``: encode every input to the common latent, fuse, decode (see the module docstring)."""

    latent_multiple = 1

    def __init__(self, engine, names: list[str], target: str, samples: int, seed: int, sample_batch: int,
                 contributions: bool) -> None:
        config = card_network(engine.card, "vqseq2seq", VQSeq2SeqConfig)
        slots = config.contrasts
        self.engine, self.samples, self.seed = engine, samples, seed
        self.batch = max(1, sample_batch)
        self.common_channels = config.common_channels
        self.target_code = onehot(len(slots), [slots.index(target)])
        self.contributions = contributions

    def _image(self, common: np.ndarray) -> np.ndarray:
        """Common latents ``(P, C, *s)`` → images ``(P, Z, Y, X)``."""
        latent = self.engine.run("vqseq2seq_decode", common=common,
                                 target_onehot=np.repeat(self.target_code, len(common), axis=0))[0]
        return self.engine.decode(latent)[:, 0]

    def run(self, window: Window) -> WindowResult:
        window.report("encode", 0.0)
        latents = encode_each(self.engine, window.inputs)  # (K, L, *s)
        window.report("translate", 0.0)
        commons, logvars = self.engine.run("vqseq2seq_encode", latents=latents)
        mean, logvar, weights = self.engine.run("vqseq2seq_fuse", commons=commons[None], logvars=logvars[None])
        window.report("decode", 0.0)
        image = self._image(mean)[0]
        moments, count = None, 0
        if self.samples > 1:
            full = (self.common_channels,) + tuple(window.latent_shape)
            where = (slice(None),) + window.latent_where
            spread = np.exp(0.5 * logvar)
            for first in range(0, self.samples, self.batch):
                window.report("uncertainty", first / self.samples)
                ids = range(first, min(first + self.batch, self.samples))
                noise = np.stack([seeded_normal(full, self.seed, n)[where] for n in ids])
                part = image_moments(self._image((mean + spread * noise).astype(np.float32)))
                moments = part if moments is None else (moments[0] + part[0], moments[1] + part[1])
            count = self.samples
        return WindowResult(image, moments, weights[0] if self.contributions else None, count)


def example() -> KindExample:
    """A tiny ``vqseq2seq`` bundle's content (:mod:`MRSynthLib.methods.translators.kind_example`)."""
    from MRSynthLib.networks.configs.vqseq2seq import VQSeq2SeqConfig

    networks = {"vqseq2seq": VQSeq2SeqConfig(hidden=8, num_blocks=1, common_channels=4, codebook_size=16).to_dict()}
    return KindExample(networks, ALL_SLOTS, ALL_SLOTS, (("t1", "t2"), "flair"))
