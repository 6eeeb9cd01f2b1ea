"""``<latent>-targetcode``: each input is translated on its own; the predictions are combined by their
predicted precision (inverse variance). Contributions = those precision weights (channel mean).
Uncertainty: MC dropout + flip as for the cyclegan (numpy)."""

from __future__ import annotations

import numpy as np

from MRSynthLib.models.bundle import card_network
from MRSynthLib.networks.configs.targetcode import TargetCodeConfig
from MRSynthLib.methods.translators.dropout import DropoutKind
from MRSynthLib.methods.translators.kind_example import ALL_SLOTS, KindExample
from MRSynthLib.methods.translators.window import Window, WindowResult, encode_each, onehot, precision_weights


class TargetCodeKind(DropoutKind):
    """``fsq-targetcode``: every input translated by the shared network, fused by predicted precision."""

    def __init__(self, engine, names: list[str], target: str, samples: int, seed: int, sample_batch: int,
                 contributions: bool) -> None:
        super().__init__(samples, seed, sample_batch)
        config = card_network(engine.card, "targetcode", TargetCodeConfig)
        slots = config.contrasts
        self.engine = engine
        self.hidden, self.dropout = config.hidden, config.dropout
        self.source_codes = onehot(len(slots), [slots.index(n) for n in names])
        self.target_codes = onehot(len(slots), [slots.index(target)] * len(names))
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
        latents = encode_each(self.engine, window.inputs)  # (K, L, *s)
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



def example() -> KindExample:
    """A tiny ``targetcode`` bundle's content (:mod:`MRSynthLib.methods.translators.kind_example`)."""
    from MRSynthLib.networks.configs.targetcode import TargetCodeConfig

    return KindExample({"targetcode": TargetCodeConfig(hidden=8, num_blocks=1).to_dict()}, ALL_SLOTS, ALL_SLOTS,
                       (("t1", "t2"), "flair"))

__all__ = ["TargetCodeKind", "example"]
