"""The fusion translator's multi-scale (U-Net) body: shapes, card round trip, padding in inference, ONNX parity,
and stage 2's context patches (the translator sees the whole patch, the image loss its central part)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from MRSynthLib.models.bundle import load_bundle
from MRSynthLib.runtime.inference import predict
from MRSynthLib.networks.fusion import FusionConfig, FusionTranslator, pad_to_multiple
from MRSynthLib.runtime.onnx_backend import OnnxEngine
from MRSynthLib.runtime.torch_backend import TorchEngine
from support.bundles import random_bundle
from training.config import ConfigError, load_config
from training.bundles.onnx_export import add_onnx_parts
from training.translators.stage2 import decode_window

UNET = FusionConfig(hidden=8, num_blocks=1, body_levels=2)


def test_unet_body_keeps_the_latent_grid_and_sees_beyond_the_single_scale_body():
    torch.manual_seed(0)
    translator = FusionTranslator(UNET).eval()
    assert float(translator.body.scale) == 0.0  # ReZero: the body adds nothing at initialisation ...
    with torch.no_grad():
        translator.body.scale.fill_(1.0)  # ... and reaches far once trained (here: set by hand)
    latents = torch.zeros(1, 5, UNET.latent_channels, 16, 16, 16)
    available = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0]])
    base, weights = translator(latents, available, torch.tensor([3]))
    assert base.shape == (1, UNET.latent_channels, 16, 16, 16) and weights.shape == (1, 5, 16, 16, 16)
    poked = latents.clone()
    poked[0, 0, :, 0, 0, 0] = 1.0  # a change in one corner voxel ...
    changed, _ = translator(poked, available, torch.tensor([3]))
    reach = (changed - base).abs().amax(dim=(0, 1)).nonzero().amax(dim=0)
    assert reach.min() >= 8  # ... moves outputs at least 8 latent voxels away on every axis (single scale: 5)


def test_body_levels_card_round_trip_and_validation():
    assert "body_levels" not in FusionConfig().to_dict()  # cards of the single-scale body are unchanged
    assert FusionConfig.from_dict(UNET.to_dict()) == UNET and UNET.latent_multiple == 4
    with pytest.raises(ValueError, match="body_levels"):
        FusionConfig(body_levels=7)


def test_pad_to_multiple_pads_at_the_end_and_crops_back():
    tensor = torch.arange(2 * 3 * 5 * 6 * 7, dtype=torch.float32).view(2, 3, 5, 6, 7)
    padded, crop = pad_to_multiple(tensor, 4)
    assert padded.shape == (2, 3, 8, 8, 8)
    assert torch.equal(padded[crop], tensor) and padded[:, :, 5:].abs().sum() == 0


@pytest.fixture(scope="module")
def unet_bundle(tmp_path_factory):
    folder = random_bundle(tmp_path_factory.mktemp("bundles") / "unet", translator=UNET)
    add_onnx_parts(folder)
    return load_bundle(folder)


def test_inference_pads_odd_grids_and_backends_agree(unet_bundle):
    """Random weights (plumbing only): a 20x28x36 grid (latent 5x7x9, not a multiple of 4) runs whole and in
    windows on torch and onnxruntime, outputs on the input grid, the two backends within 1e-4."""
    assert unet_bundle.card.networks["onnx"]["latent_multiple"] == 4
    rng = np.random.default_rng(0)
    arrays = {name: rng.random((20, 28, 36), dtype=np.float32) for name in ("t1", "t2")}
    engines = [TorchEngine(unet_bundle, "cpu"), OnnxEngine(unet_bundle)]
    for window in (0, 32):
        results = [predict(e, arrays, "flair", samples=3, window=window, overlap=8) for e in engines]
        for result in results:
            assert result.synthetic.shape == result.uncertainty.shape == (20, 28, 36)
            assert set(result.contributions) == {"t1", "t2"} and result.contributions["t1"].shape == (20, 28, 36)
        assert results[0].windows == results[1].windows == (1 if window == 0 else 2)  # padded grid 32x32x48
        scale = np.abs(results[0].synthetic).max()
        assert np.abs(results[0].synthetic - results[1].synthetic).max() <= 1e-4 * scale


def _with_stage2(config, **changes):
    return dataclasses.replace(config, stage2=dataclasses.replace(config.stage2, **changes))


def test_decode_window_is_the_central_part_of_the_patch():
    config = load_config("phantom-tiny")  # autoencoder downsampling 4
    config = dataclasses.replace(config, translator=dataclasses.replace(config.translator, body_levels=1))
    latent, image = decode_window(_with_stage2(config, patch_size=(24, 24, 24), decode_size=(8, 16, 8)))
    assert latent == (slice(2, 4), slice(1, 5), slice(2, 4))
    assert image == (slice(8, 16), slice(4, 20), slice(8, 16))
    whole, _ = decode_window(_with_stage2(config, patch_size=(16, 16, 16)))
    assert whole == (slice(0, 4),) * 3
    with pytest.raises(ConfigError, match="patch_size .* multiples of 8"):
        decode_window(_with_stage2(config, patch_size=(20, 20, 20)))
    with pytest.raises(ConfigError, match="decode_size"):
        decode_window(_with_stage2(config, patch_size=(16, 16, 16), decode_size=(6, 8, 8)))
