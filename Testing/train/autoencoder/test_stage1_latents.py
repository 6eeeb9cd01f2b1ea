"""Stage-1 latents (FSQ, VQ, KL) and the autoencoder config: round trips and defining behaviour."""

import json
import math

import pytest
import torch

from MRSynthLib.networks.autoencoder import AutoencoderConfig, LatentAutoencoder
from MRSynthLib.networks.fsq import FSQ
from MRSynthLib.networks.kl import GaussianLatent, KLConfig, kl_divergence
from MRSynthLib.networks.vq import VectorQuantizer, VQConfig
from support.paths import REPO

BUILTIN = REPO / "Resources" / "Models" / "mrsynth-phantom-fsq"


def test_fsq_codes_are_fixed_points_of_the_rounding():
    fsq = FSQ((8, 5, 3))
    codes = fsq(torch.randn(2, 3, 4, 4, 4) * 3)
    torch.testing.assert_close(fsq.round_bounded(codes), codes)
    latent, regularizer = fsq.train_latent(torch.randn(1, 3, 2, 2, 2))
    assert float(regularizer) == 0.0 and latent.shape == (1, 3, 2, 2, 2)


def _is_row_of(rows: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``(N,)`` True where a row of ``rows`` equals (float tolerance) some row of ``table``."""
    return (rows[:, None] - table[None]).abs().amax(dim=2).min(dim=1).values < 1e-6


def _vq(size=2, dim=2, **kwargs) -> VectorQuantizer:
    vq = VectorQuantizer(VQConfig(codebook_size=size, dim=dim, **kwargs))
    vq.initialised.fill_(1.0)  # tests place the codebook themselves
    return vq


def test_vq_returns_codebook_entries_with_straight_through_gradient():
    torch.manual_seed(0)
    vq = VectorQuantizer(VQConfig(codebook_size=16, dim=3)).eval()
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    quantised, commitment = vq.train_latent(z)
    rows = quantised.detach().movedim(1, -1).reshape(-1, 3)
    assert _is_row_of(rows, vq.embedding).all()  # every output vector is a codebook entry
    expected = vq.embedding[vq.codes_to_indices(z.detach())].movedim(-1, 1)
    torch.testing.assert_close(quantised.detach(), expected)
    torch.testing.assert_close(commitment, torch.mean((z.detach() - expected) ** 2))
    torch.testing.assert_close(vq.inference_latent(z.detach()), expected)
    upstream = torch.randn_like(z)
    (quantised * upstream).sum().backward()
    torch.testing.assert_close(z.grad, upstream)  # straight-through


def test_vq_ema_moves_codes_toward_the_data():
    torch.manual_seed(0)
    vq = _vq(decay=0.8, dead_code_threshold=0.01).train()
    vq.embedding.copy_(torch.tensor([[0.0, 0.0], [-5.0, -5.0]]))
    vq.embedding_sum.copy_(vq.embedding * 4)
    vq.cluster_size.fill_(4.0)
    target = torch.tensor([2.0, 1.0])
    distances = []
    for _ in range(25):
        z = target.view(1, 2, 1, 1) + 0.05 * torch.randn(1, 2, 4, 4)
        vq(z)
        distances.append(float((vq.embedding[0] - target).norm()))
    assert distances[-1] < 0.1 < distances[0] < math.sqrt(5.0)  # sqrt(5): the distance before any update
    torch.testing.assert_close(vq.embedding[1], torch.tensor([-5.0, -5.0]), atol=1e-2, rtol=0)  # unused: stays


def test_vq_dead_codes_restart_on_data():
    torch.manual_seed(0)
    vq = _vq(size=3, decay=0.5, dead_code_threshold=1.0).train()
    vq.embedding.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]]))
    vq.embedding_sum.copy_(vq.embedding * 2)
    vq.cluster_size.fill_(2.0)
    z = torch.rand(1, 2, 4, 4)  # all data in [0, 1]²: code 2 is never chosen
    data = z.movedim(1, -1).reshape(-1, 2)
    vq(z)  # usage of code 2: 2 -> 1, still alive
    torch.testing.assert_close(vq.embedding[2], torch.tensor([100.0, 100.0]), atol=1e-2, rtol=0)
    vq(z)  # 1 -> 0.5 < threshold: restarted on a data vector of this batch
    assert _is_row_of(vq.embedding[2:], data).all()
    assert vq.cluster_size[2] >= vq.config.dead_code_threshold


def test_vq_first_training_batch_initialises_the_codebook():
    torch.manual_seed(0)
    vq = VectorQuantizer(VQConfig(codebook_size=4, dim=2)).train()
    z = torch.rand(1, 2, 3, 3) + 10
    vq(z)
    assert bool(vq.initialised) and torch.all(vq.embedding > 9)


def test_kl_latent_mean_at_inference_and_sample_spread_in_training():
    torch.manual_seed(0)
    latent = GaussianLatent(KLConfig(channels=2, scale_factor=0.5))
    mean = torch.randn(1, 2, 8, 8, 8)
    logvar = torch.full_like(mean, math.log(4.0))
    z = torch.cat([mean, logvar], dim=1)
    latent.eval()
    torch.testing.assert_close(latent.train_latent(z)[0], mean)
    torch.testing.assert_close(latent.inference_latent(z), mean * 0.5)
    torch.testing.assert_close(latent.to_decoder(latent.inference_latent(z)), mean)
    latent.train()
    samples = torch.stack([latent.train_latent(z)[0] for _ in range(200)])
    assert abs(float(samples.std(dim=0).mean()) - 2.0) < 0.05  # exp(logvar / 2)
    assert abs(float(samples.mean(dim=0).sub(mean).abs().mean())) < 0.15


def test_kl_divergence_closed_form():
    zero = torch.zeros(1, 2, 3, 3)
    assert float(kl_divergence(zero, zero)) == 0.0
    mean, logvar = torch.full((1, 1, 2, 2), 1.0), torch.full((1, 1, 2, 2), math.log(2.0))
    expected = 0.5 * (1.0 + 2.0 - 1.0 - math.log(2.0))
    assert float(kl_divergence(mean, logvar)) == pytest.approx(expected)


@pytest.mark.parametrize("latent", ["fsq", "vq", "kl"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_autoencoder_latents_round_trip(latent, spatial_dims):
    torch.manual_seed(0)
    config = AutoencoderConfig(spatial_dims=spatial_dims, channels=(4, 8), fsq_levels=(5, 5, 5), latent=latent,
                               vq=VQConfig(codebook_size=8, dim=3), kl=KLConfig(channels=3))
    model = LatentAutoencoder(config)
    x = torch.rand((2, 1) + (16,) * spatial_dims)
    out = model(x)  # training mode: VQ initialises its codebook, KL samples
    assert out.reconstruction.shape == x.shape and out.latent.shape == (2, 3) + (8,) * spatial_dims
    assert out.regularizer.ndim == 0 and torch.isfinite(out.regularizer)
    out.reconstruction.mean().add(out.regularizer).backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    model.eval()
    with torch.no_grad():
        codes = model.encode(x)
        torch.testing.assert_close(model.decode(codes), model(x).reconstruction)
    assert AutoencoderConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_builtin_bundle_card_and_weights_still_load_unchanged():
    from safetensors.torch import load_file

    card = json.loads((BUILTIN / "bundle.json").read_text())
    old = card["networks"]["autoencoder"]
    assert set(old) == {"spatial_dims", "channels", "fsq_levels", "full_resolution_residual"}
    config = AutoencoderConfig.from_dict(old)
    assert config.latent == "fsq" and not (config.lhe.enabled or config.wavelet or config.hfib)
    model = LatentAutoencoder(config)
    model.load_state_dict(load_file(str(BUILTIN / "autoencoder.safetensors")), strict=True)


def test_autoencoder_config_rejects_bad_values():
    with pytest.raises(TypeError, match="unknown autoencoder keys"):
        AutoencoderConfig.from_dict({"channels": [4], "fsq_levels": [5], "quantiser": "fsq"})
    with pytest.raises(ValueError, match="latent must be one of fsq, vq, kl"):
        AutoencoderConfig(latent="vae")
    with pytest.raises(ValueError, match="spatial_dims"):
        AutoencoderConfig(spatial_dims=1)
