"""The smallest valid bundle content of a translator kind, for tests and smoke runs (never a model to use).

Each kind's module defines ``example() -> KindExample``, named by its
:class:`~MRSynthLib.methods.translators.registry.KindSpec`; the tests build a random-weight bundle of every registered
kind from it, so a new kind is covered without editing them.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_SLOTS = ("t1", "t1ce", "t2", "flair", "pd")
"""The slot order of the examples of any-to-any kinds."""


@dataclass(frozen=True)
class KindExample:
    """Attributes:
        networks: card ``networks`` entries of the kind's own parts and extra entries (e.g. ``diffusion``); the
            autoencoder's is added by the caller.
        inputs, outputs: the bundle's input and output contrasts.
        task: ``(inputs, target)`` a bundle of this example can synthesize.
    """

    networks: dict
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    task: tuple[tuple[str, ...], str]


def tiny_sampling() -> dict:
    """A 3-step sampler card entry for the diffusion kinds' examples."""
    from MRSynthLib.methods.translators.samplers import SamplingConfig

    return SamplingConfig(steps=3, eta=0.5, latent_scale=1.5).to_dict()
