"""Window logic of ``<latent>-sscf`` bundles (SSCF: segmentation-assisted synthesis with memory retrieval).

Per window: encode every given input with the autoencoder, run ``sscf_encode`` (gated fusion of the
given inputs, tumour probability, retrieval descriptors), ``sscf_retrieve`` (cross-image affinity with
every entry of the memory bank stored in the bundle), choose an entry here (numpy: the most similar
valid one; none when no entry has the target and a shared contrast, then no style is injected) and run
``sscf_head`` (region-wise AdaIN with that entry's target-contrast prototype, head).

- synthetic: the nearest prototype, no dropout;
- uncertainty: N stochastic passes, each with an MC channel-dropout mask, alternating with a left-right
  flip (as the other deterministic kinds), and cycling through the ``top_k`` nearest prototypes
  (pass ``k`` uses rank ``(k // 2) % top_k``), so retrieval ambiguity shows in the spread;
- contributions: the fusion gates of the given inputs (normalised over them).

Arrays are model-space ``(z, y, x)``; latents ``(L, z', y', x')``.
"""

from __future__ import annotations

import numpy as np

from MRSynthLib.models.bundle import card_network
from MRSynthLib.networks.configs.sscf import SSCFConfig
from MRSynthLib.errors import ContrastError
from MRSynthLib.methods.translators.dropout import DropoutKind
from MRSynthLib.methods.translators.kind_example import ALL_SLOTS, KindExample
from MRSynthLib.methods.translators.window import Window, WindowResult, encode_each

INVALID = -2.0  # = MRSynthLib.networks.sscf_memory.INVALID (kept here so this module needs no torch)


def ranked_selection(affinity: np.ndarray, rank: int) -> np.ndarray:
    """``(B, N)`` affinities → ``(B, N)`` one-hot of the ``rank``-th best valid entry (zeros: no valid entry).

    Ranks beyond the number of valid entries wrap around to the valid ones."""
    out = np.zeros_like(affinity, dtype=np.float32)
    for row, scores in enumerate(affinity):
        order = np.argsort(-scores, kind="stable")
        valid = order[scores[order] > INVALID / 2]
        if len(valid):
            out[row, valid[rank % len(valid)]] = 1.0
    return out


class SSCFKind(DropoutKind):
    """``<latent>-sscf``: see the module docstring."""

    def __init__(self, engine, names: list[str], target: str, samples: int, seed: int, sample_batch: int,
                 contributions: bool) -> None:
        super().__init__(samples, seed, sample_batch)
        config = card_network(engine.card, "sscf", SSCFConfig)
        slots = config.contrasts
        unknown = [n for n in names + [target] if n not in slots]
        if unknown:
            raise ContrastError(f"Model {engine.card.name} knows the contrasts {', '.join(slots)}, not "
                                f"{', '.join(unknown)}: choose among those.")
        self.engine = engine
        self.hidden, self.dropout, self.top_k = config.hidden, config.dropout, config.top_k
        m = len(slots)
        self.slot_codes = np.eye(m, dtype=np.float32)[[slots.index(n) for n in names]]
        self.target_onehot = np.eye(m, dtype=np.float32)[[slots.index(target)]]
        self.mask = np.ones((1, len(names)), np.float32)
        self.latent_multiple = 1

    def _encode(self, latents: np.ndarray) -> dict[str, np.ndarray]:
        """``(K, L, *s)`` → fused features, tumour probability, gates ``(K, *s)`` and affinity ``(N,)``."""
        hidden, weights, tumour, descriptors = self.engine.run(
            "sscf_encode", latents=latents[None], slot_codes=self.slot_codes, target_onehot=self.target_onehot,
            mask=self.mask)
        affinity = self.engine.run("sscf_retrieve", descriptors=descriptors, slot_codes=self.slot_codes,
                                   target_onehot=self.target_onehot, mask=self.mask)[0]
        return {"hidden": hidden, "tumour": tumour, "weights": weights[0], "affinity": affinity[0]}

    def head_images(self, state: dict, scales: np.ndarray, ranks: list[int] | None = None):
        """Decoded images ``(P, Z, Y, X)`` for dropout masks ``scales`` ``(P, H)`` and prototype ranks."""
        p = len(scales)
        ranks = ranks if ranks is not None else [0] * p
        selection = np.concatenate([ranked_selection(state["affinity"][None], r) for r in ranks])
        latent = self.engine.run("sscf_head", hidden=np.repeat(state["hidden"], p, axis=0),
                                 tumour=np.repeat(state["tumour"], p, axis=0), selection=selection,
                                 target_onehot=np.repeat(self.target_onehot, p, axis=0), channel_scale=scales)[0]
        return self.engine.decode(latent)[:, 0], None

    def pass_images(self, state: dict, scales: np.ndarray, passes: list[int]) -> np.ndarray:
        """Pass ``k`` also cycles the prototype: rank ``(k // 2) mod top_k`` of the retrieval."""
        return self.head_images(state, scales, [(k // 2) % self.top_k for k in passes])[0]

    def run(self, window: Window) -> WindowResult:
        window.report("encode", 0.0)
        latents = encode_each(self.engine, window.inputs)  # (K, L, *s)
        window.report("translate", 0.0)
        state = self._encode(latents)
        window.report("decode", 0.0)
        image, _ = self.head_images(state, np.ones((1, self.hidden), np.float32))
        flipped = self._encode(np.ascontiguousarray(latents[..., ::-1])) if self.samples > 1 else None
        moments, count = self.stochastic_moments({False: state, True: flipped}, window.report)
        return WindowResult(image[0], moments, state["weights"], count)


def example() -> KindExample:
    """A tiny ``sscf`` bundle's content (:mod:`MRSynthLib.methods.translators.kind_example`)."""
    from MRSynthLib.networks.configs.sscf import SSCFConfig

    networks = {"sscf": SSCFConfig(hidden=8, num_blocks=1, bank_size=4, top_k=2).to_dict()}
    return KindExample(networks, ALL_SLOTS, ALL_SLOTS, (("t1", "t2", "flair"), "t1ce"))
