"""Bundles with seeded random weights (plumbing only, never image-quality results)."""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from MRSynthLib.models.bundle import ModelCard, sha256_file, write_card
from MRSynthLib.networks.autoencoder import AutoencoderConfig, FSQAutoencoder
from MRSynthLib.networks.fusion import FusionConfig, FusionTranslator
from MRSynthLib.preprocessing.preprocess import PreprocessSpec


def random_bundle(folder, name="random-test", translator: FusionConfig | None = None, seed: int = 0):
    """A bundle with seeded random weights: plumbing only, never an image-quality result. Seeded (without touching
    the global generator) so that tests on it do not depend on which tests ran before (CI once drew weights whose
    output was ~0, which broke a relative tolerance)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    ae_config = AutoencoderConfig(channels=(4, 4, 4), fsq_levels=(5, 5, 5, 5))
    tr_config = translator or FusionConfig(hidden=8, num_blocks=1)
    weights = {}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        models = (("autoencoder.safetensors", FSQAutoencoder(ae_config)),
                  ("translator.safetensors", FusionTranslator(tr_config)))
    for file_name, model in models:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / file_name))
        weights[file_name] = sha256_file(folder / file_name)
    card = ModelCard(name=name, version="0.0.0", method="fsq-fusion",
                     input_contrasts=("t1", "t1ce", "t2", "flair", "pd"),
                     output_contrasts=("t1", "t1ce", "t2", "flair", "pd"),
                     preprocessing=PreprocessSpec(spacing=(4.0, 4.0, 4.0)),
                     networks={"autoencoder": ae_config.to_dict(), "translator": tr_config.to_dict()},
                     weights=weights, description="random weights for tests")
    write_card(card, folder)
    return folder


def randomize_zero_parameters(module: torch.nn.Module) -> torch.nn.Module:
    """MONAI zero-initialises the denoiser's output layer; give such parameters random values so that a
    random-weight network's output depends on its inputs (tests only)."""
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.abs().max() == 0:
                parameter.normal_(0.0, 0.1)
    return module
