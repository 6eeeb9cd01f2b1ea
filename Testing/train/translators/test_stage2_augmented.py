"""Stage 2 sees scanner-like intensity variation: augmented latent copies of the inputs, clean targets."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from MRSynthLib.networks.autoencoder import FSQAutoencoder
from support.images import blob_array
from training.config import load_config
from training.inputs.data import Volume
from training.translators.stage2 import encode_augmented, encode_volumes, sample_batch


def _setup():
    config = load_config("phantom-tiny")  # downsampling 4, 4 latent channels
    augmentation = dataclasses.replace(config.augmentation, gamma_probability=1.0, bias_probability=1.0,
                                       noise_probability=1.0, flip_probability=1.0, affine_probability=1.0)
    config = dataclasses.replace(config, augmentation=augmentation,
                                 stage2=dataclasses.replace(config.stage2, augmented_copies=2, batch_size=8,
                                                            patch_size=(16, 16, 16)))
    torch.manual_seed(0)
    autoencoder = FSQAutoencoder(config.autoencoder).eval()
    images = {name: (blob_array((24, 24, 24), seed=i) / 140.0).astype(np.float32)
              for i, name in enumerate(("t1", "t2", "flair"))}
    volume = Volume("test/a", images, images["t1"] > 0)
    return config, autoencoder, [volume]


class _PoolingEncoder:
    """Encodes by 4x average pooling: every intensity change shows in the codes (a random FSQ network rounds
    small changes away, which would hide whether the augmentation ran)."""

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool3d(image, 4).repeat(1, 4, 1, 1, 1)


def test_augmented_copies_change_the_inputs_not_the_grid():
    config, _, volumes = _setup()
    autoencoder = _PoolingEncoder()
    slots = config.translator.contrasts
    clean = encode_volumes(autoencoder, volumes, slots)
    copies = encode_augmented(autoencoder, volumes, slots, config.augmentation, 2, seed=5)
    again = encode_augmented(autoencoder, volumes, slots, config.augmentation, 2, seed=5)
    assert len(copies[0]) == 2 and copies[0][0].dtype == torch.float16
    assert copies[0][0].shape == clean[0].shape
    assert torch.equal(copies[0][0], again[0][0])  # seeded
    present = [slots.index(n) for n in ("t1", "t2", "flair")]
    for version in copies[0]:
        assert (version[present].float() - clean[0][present]).abs().mean() > 1e-3  # intensities changed
        assert version[slots.index("pd")].abs().sum() == 0  # missing contrasts stay empty


def _latent_windows(codes: torch.Tensor):
    """Every 16^3-voxel patch window (start a multiple of 4) of a 24^3 volume, on ``codes`` ``(..., 6, 6, 6)``."""
    starts = range(0, 24 - 16 + 1, 4)
    return [codes[..., z // 4:z // 4 + 4, y // 4:y // 4 + 4, x // 4:x // 4 + 4] for z in starts for y in starts for x in starts]


def test_sampled_inputs_mix_clean_and_augmented_while_targets_stay_clean():
    config, _, volumes = _setup()
    autoencoder = _PoolingEncoder()
    slots = config.translator.contrasts
    clean = encode_volumes(autoencoder, volumes, slots)
    copies = encode_augmented(autoencoder, volumes, slots, config.augmentation, 2, seed=5)
    config = dataclasses.replace(config, stage2=dataclasses.replace(config.stage2, corrupt_probability=0.0))
    rng = np.random.default_rng(0)
    seen_augmented = False
    for _ in range(4):
        latents, available, target, target_codes, images = sample_batch(volumes, clean, config, rng, slots,
                                                                         None, copies)
        for b in range(latents.shape[0]):
            # the target codes are a window of the clean codes of the target contrast
            assert any(torch.equal(target_codes[b], w) for w in _latent_windows(clean[0][int(target[b])]))
            given = [i for i in range(len(slots)) if available[b, i] > 0]
            if not any(torch.allclose(latents[b][given], w, atol=1e-3) for w in _latent_windows(clean[0][given])):
                seen_augmented = True  # differs by more than float16 rounding: an augmented copy
    assert seen_augmented
