"""Synthesis with a ``<latent>-wldm`` bundle (3D-WLDM), window by window, numpy only.

Per window: encode the inputs, split each input latent into its structure and modality halves
(``wldm_split`` graph), then sample the target latent with the DSCA denoiser (``wldm_denoiser``)
conditioned on the input latents and halves, with the seeded numpy samplers of
:mod:`MRSynthLib.methods.translators.samplers`; decode. The sampling loop, noise, uncertainty and contributions are those
of the ``ldm`` kind (:class:`MRSynthLib.methods.translators.ldm.DiffusionKind`):

- uncertainty: voxel-wise std over N diffusion samples (sample 0 is the synthetic image);
- contributions: one input → a map of ones; several → occlusion sensitivity (each input's share of the
  latent change when the deterministic sample 0 is redrawn without it, same noise).

Without ``window``, volumes larger than :data:`AUTO_WINDOW` per axis are processed in windows of that edge (grown to
the smallest that still overlaps on the network's grid: 128 voxels for a 4x autoencoder with a 16x denoiser).
"""

from __future__ import annotations

import numpy as np

from MRSynthLib.models.bundle import card_network
from MRSynthLib.networks.configs.wldm import WLDMDenoiserConfig
from MRSynthLib.errors import ContrastError
from MRSynthLib.methods.translators.samplers import SamplingConfig
from MRSynthLib.methods.translators.ldm import DiffusionKind
from MRSynthLib.methods.translators.kind_example import ALL_SLOTS, KindExample, tiny_sampling
from MRSynthLib.methods.translators.window import onehot

AUTO_WINDOW = 64
"""Automatic sliding-window edge (model-space voxels) of ``wldm``: DSCA's cross-attention costs (voxels x tokens)
per skip, quadratic in the window, so whole-volume windows (the other kinds' default) would need gigabytes."""


class WLDMKind(DiffusionKind):
    """``<latent>-wldm``: latent split + DSCA denoiser (no fusion guide)."""

    denoiser_graph = "wldm_denoiser"
    auto_window = AUTO_WINDOW

    def __init__(self, engine, names: list[str], target: str, samples: int, seed: int, sample_batch: int,
                 contributions: bool) -> None:
        denoiser = card_network(engine.card, "wldm_denoiser", WLDMDenoiserConfig)
        self.engine = engine
        self.slots = denoiser.contrasts
        unknown = [n for n in names + [target] if n not in self.slots]
        if unknown:
            raise ContrastError(f"Model {engine.card.name} knows the contrasts {', '.join(self.slots)}, not "
                                f"{', '.join(unknown)}: choose inputs and a target among them.")
        self.sampling = card_network(engine.card, "diffusion", SamplingConfig)
        self.latent_channels = denoiser.latent_channels
        self.latent_multiple = denoiser.multiple
        self.split_channels = denoiser.split_channels
        self.names, self.samples, self.seed = names, samples, seed
        self.batch = max(1, sample_batch)
        self.contributions = contributions
        self.slot_index = [self.slots.index(n) for n in names]
        self.target_onehot = onehot(len(self.slots), [self.slots.index(target)])

    def _member(self, latents: np.ndarray, given: list[int]) -> dict[str, np.ndarray]:
        """Conditioning of one diffusion run from the inputs ``given``: latents scaled by ``latent_scale``,
        structure and modality halves of the unscaled latents, every array with a batch of 1."""
        m = len(self.slots)
        structure, modality = self.engine.run("wldm_split", latents=np.ascontiguousarray(latents[given]))
        shape = latents.shape[2:]
        condition = {"latents": np.zeros((1, m) + latents.shape[1:], np.float32),
                     "available": np.zeros((1, m), np.float32), "target_onehot": self.target_onehot,
                     "structure": np.zeros((1, m, self.split_channels) + shape, np.float32),
                     "modality": np.zeros((1, m, self.split_channels) + shape, np.float32)}
        for row, k in enumerate(given):
            slot = self.slot_index[k]
            condition["latents"][0, slot] = latents[k] * self.sampling.latent_scale
            condition["available"][0, slot] = 1.0
            condition["structure"][0, slot] = structure[row]
            condition["modality"][0, slot] = modality[row]
        return condition


def example() -> KindExample:
    """A tiny ``wldm`` bundle's content (:mod:`MRSynthLib.methods.translators.kind_example`)."""
    from MRSynthLib.networks.configs.latent_split import LatentSplitConfig
    from MRSynthLib.networks.configs.wldm import WLDMDenoiserConfig

    networks = {"wldm_split": LatentSplitConfig(split_channels=2).to_dict(),
                "wldm_denoiser": WLDMDenoiserConfig(split_channels=2, channels=(8, 16), attention_channels=8,
                                                    norm_num_groups=4).to_dict(),
                "diffusion": tiny_sampling()}
    return KindExample(networks, ALL_SLOTS, ALL_SLOTS, (("t1", "t2"), "flair"))
