"""``<latent>-cyclegan``: one source → one target; the source contributes everything (a map of ones).
Uncertainty: MC channel dropout in the generator head alternating with a left-right flip (numpy)."""

from __future__ import annotations

import numpy as np

from MRSynthLib.models.bundle import card_network
from MRSynthLib.networks.configs.cyclegan import GeneratorConfig
from MRSynthLib.errors import ContrastError
from MRSynthLib.methods.translators.dropout import DropoutKind
from MRSynthLib.methods.translators.kind_example import KindExample
from MRSynthLib.methods.translators.window import Window, WindowResult, encode_each


class CycleGANKind(DropoutKind):
    """``fsq-cyclegan``: the source→target generator."""

    def __init__(self, engine, names: list[str], target: str, samples: int, seed: int, sample_batch: int,
                 contributions: bool) -> None:
        super().__init__(samples, seed, sample_batch)
        generator = card_network(engine.card, "generator", GeneratorConfig)
        if names != [generator.source] or target != generator.target:
            raise ContrastError(f"Model {engine.card.name} translates {generator.source} into {generator.target} "
                                f"only: give exactly --input {generator.source}=... and --target {generator.target}.")
        self.engine = engine
        self.hidden, self.dropout = generator.hidden, generator.dropout
        self.latent_multiple = 1

    def head_images(self, features, scales):
        features = np.repeat(features, len(scales), axis=0)
        latent = self.engine.run("generator_head", hidden=features, channel_scale=scales)[0]
        return self.engine.decode(latent)[:, 0], None

    def run(self, window: Window) -> WindowResult:
        window.report("encode", 0.0)
        latents = encode_each(self.engine, window.inputs)  # (1, L, *s)
        window.report("translate", 0.0)
        features = self.engine.run("generator_features", latents=latents)[0]
        window.report("decode", 0.0)
        image, _ = self.head_images(features, np.ones((1, self.hidden), np.float32))
        flipped = None
        if self.samples > 1:
            flipped = self.engine.run("generator_features", latents=np.ascontiguousarray(latents[..., ::-1]))[0]
        moments, count = self.stochastic_moments({False: features, True: flipped}, window.report)
        return WindowResult(image[0], moments, np.ones((1,) + latents.shape[2:], np.float32), count)



def example() -> KindExample:
    """A tiny ``cyclegan`` bundle's content (:mod:`MRSynthLib.methods.translators.kind_example`)."""
    from MRSynthLib.networks.configs.cyclegan import GeneratorConfig

    networks = {"generator": GeneratorConfig(source="t1", target="t1ce", hidden=8, num_blocks=1).to_dict()}
    return KindExample(networks, ("t1",), ("t1ce",), (("t1",), "t1ce"))

__all__ = ["CycleGANKind", "example"]
