"""Networks and configs of the generative translator kinds (denoiser, latent CycleGAN, target-code translator)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from MRSynthLib.errors import BundleError
from MRSynthLib.networks.cyclegan import GeneratorConfig, LatentGenerator, build_discriminator
from MRSynthLib.networks.denoiser import DenoiserConfig, LatentDenoiser, conditioning
from MRSynthLib.networks.targetcode import TargetCodeConfig, TargetCodeTranslator, precision_fusion
from MRSynthLib.methods.translators.engines import method_kind
from MRSynthLib.methods.translators.window import precision_weights
from training.config import ConfigError, config_from_dict, load_config
from support.bundles import randomize_zero_parameters

TINY_DENOISER = DenoiserConfig(channels=(8, 8), attention_levels=(False, False), norm_num_groups=4, num_head_channels=8)


def _denoiser_inputs(b=2, s=(4, 4, 4), m=5, lat=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, lat, *s, generator=g), torch.rand(b, generator=g), torch.randn(b, m, lat, *s, generator=g),
            torch.tensor([[1.0, 0, 1, 0, 0]] * b), torch.eye(m)[[3] * b], torch.randn(b, lat, *s, generator=g))


def test_denoiser_predicts_a_latent_and_ignores_missing_slots():
    torch.manual_seed(0)
    net = randomize_zero_parameters(LatentDenoiser(TINY_DENOISER)).eval()
    x, t, latents, available, target, guide = _denoiser_inputs()
    with torch.no_grad():
        out = net(x, t, latents, available, target, guide)
        assert out.shape == x.shape
        changed = latents.clone()
        changed[:, 1] += 5.0  # slot 1 is missing: its content must not matter
        np.testing.assert_array_equal(net(x, t, changed, available, target, guide).numpy(), out.numpy())
        changed[:, 0] += 5.0  # slot 0 is given: it must
        assert not torch.allclose(net(x, t, changed, available, target, guide), out)
        assert not torch.allclose(net(x, t * 0.5, latents, available, target, guide), out)  # time enters


def test_conditioning_layout_and_guidance_switch():
    x, t, latents, available, target, guide = _denoiser_inputs()
    stack = conditioning(latents, available, target, guide)
    assert stack.shape[1] == TINY_DENOISER.condition_channels == 5 * 4 + 2 * 5 + 4
    np.testing.assert_array_equal(stack[:, 4:8].numpy(), 0.0)  # slot 1 zeroed
    np.testing.assert_array_equal(stack[:, 20:25, 0, 0, 0].numpy(), available.numpy())
    np.testing.assert_array_equal(stack[:, 25:30, 1, 2, 3].numpy(), target.numpy())
    unguided = LatentDenoiser(dataclasses.replace(TINY_DENOISER, guidance=False)).eval()
    with torch.no_grad():
        np.testing.assert_array_equal(unguided(x, t, latents, available, target, guide).numpy(),
                                      unguided(x, t, latents, available, target, guide * 0).numpy())


def test_denoiser_config_round_trip_and_checks():
    assert DenoiserConfig.from_dict(TINY_DENOISER.to_dict()) == TINY_DENOISER
    assert TINY_DENOISER.multiple == 2
    with pytest.raises(ValueError, match="attention_levels"):
        DenoiserConfig(channels=(8, 8, 8), attention_levels=(False,))
    with pytest.raises(ValueError, match="norm_num_groups"):
        DenoiserConfig(channels=(6, 8), norm_num_groups=4)


def test_generator_head_split_matches_forward_and_dropout_mask_is_explicit():
    torch.manual_seed(0)
    net = LatentGenerator(GeneratorConfig(hidden=8, num_blocks=1)).eval()
    z = torch.rand(2, 4, 4, 6, 4) * 2 - 1
    with torch.no_grad():
        plain = net(z)
        assert plain.shape == z.shape and plain.abs().max() < 1
        features = net.features(z)
        np.testing.assert_allclose(net.head_from(features, torch.ones(2, 8)).numpy(), plain.numpy(), atol=1e-6)
        mask = torch.tensor([[0.0] * 4 + [2.0] * 4] * 2)
        assert not torch.allclose(net.head_from(features, mask), plain)


def test_patch_discriminator_scores_latent_patches():
    critic = build_discriminator(3, 4, channels=8, layers=2)
    scores = critic(torch.rand(3, 4, 16, 16, 16))[-1]
    assert scores.shape[:2] == (3, 1) and scores.ndim == 5


def test_targetcode_predicts_mean_and_bounded_logvar_per_target():
    torch.manual_seed(0)
    net = TargetCodeTranslator(TargetCodeConfig(hidden=8, num_blocks=1)).eval()
    z = torch.rand(2, 4, 4, 4, 4) * 2 - 1
    src, tgt = torch.eye(5)[[0, 0]], torch.eye(5)[[1, 1]]
    with torch.no_grad():
        net.dynamic.weight.normal_()  # the per-target part of the output layer starts at zero; make it matter
        mean, logvar = net(z, src, tgt)
        assert mean.shape == logvar.shape == z.shape
        assert mean.abs().max() < 1 and logvar.min() >= -10 and logvar.max() <= 4
        other_mean, _ = net(z, src, torch.eye(5)[[2, 2]])
        assert not torch.allclose(mean, other_mean)  # the target code steers the output


def test_precision_fusion_weights_follow_inverse_variance_and_skip_missing_inputs():
    means = torch.stack([torch.zeros(1, 2, 3), torch.ones(1, 2, 3), 5 * torch.ones(1, 2, 3)], dim=1)  # (B=1, K=3, ...)
    logvars = torch.stack([torch.zeros(1, 2, 3), torch.full((1, 2, 3), np.log(3.0)), torch.zeros(1, 2, 3)], dim=1)
    fused, weights = precision_fusion(means, logvars, torch.tensor([[1.0, 1.0, 0.0]]))
    np.testing.assert_allclose(weights[0, :, 0, 0].numpy(), [0.75, 0.25, 0.0], atol=1e-6)  # precisions 1 : 1/3
    np.testing.assert_allclose(fused.numpy(), 0.25, atol=1e-6)
    np.testing.assert_allclose(precision_weights(logvars[0, :2].numpy()), weights[0, :2].numpy(), atol=1e-6)


def test_method_kinds_are_parsed_with_the_latent_prefix():
    assert method_kind("fsq-ldm") == "ldm" and method_kind("vq-cyclegan") == "cyclegan"
    assert method_kind("kl-targetcode") == "targetcode"
    assert method_kind("fsq-fusion") is None and method_kind("regression") is None and method_kind("xx-ldm") is None


def test_unknown_method_is_refused_by_the_engines():
    from types import SimpleNamespace

    from MRSynthLib.methods.translators.engines import TorchGraphEngine

    card = SimpleNamespace(name="x", method="fsq-teleport", networks={"autoencoder": {"channels": [8]}})
    with pytest.raises(BundleError, match="fsq-teleport"):
        TorchGraphEngine.from_parts(card, {})


@pytest.mark.parametrize("name", ["phantom-tiny-ldm", "phantom-tiny-cyclegan", "phantom-tiny-targetcode",
                                  "phantom-methods-ldm", "phantom-methods-targetcode", "phantom-methods-cyclegan-t1-t1ce",
                                  "phantom-methods-cyclegan-t2-flair", "brats-ldm"])
def test_translator_configs_load_and_round_trip(name):
    config = load_config(name)
    assert config.method.kind in ("ldm", "cyclegan", "targetcode")
    assert config_from_dict(config.to_dict()) == config
    multiple = config.autoencoder.downsampling * (config.method.ldm.denoiser.multiple if config.method.kind == "ldm" else 1)
    assert all(p % multiple == 0 for p in config.stage2.patch_size)


def test_fusion_configs_keep_their_resolved_form():
    assert "method" not in load_config("phantom-tiny").to_dict()  # run folders of fusion configs resolve as before
    assert load_config("brats-fusion").method.kind == "fusion"


def test_method_section_errors_name_the_key():
    base = load_config("phantom-tiny-ldm").to_dict()
    with pytest.raises(ConfigError, match="kind must be one of"):
        config_from_dict({**base, "method": {**base["method"], "kind": "gan"}})
    with pytest.raises(ConfigError, match="fusion_from is only used by kind ldm"):
        config_from_dict({**base, "method": {**base["method"], "kind": "targetcode", "fusion_from": "x"}})
    bad = {**base["method"], "kind": "cyclegan", "cyclegan": {"generator": {"source": "t1", "target": "t1"}}}
    with pytest.raises(ConfigError, match="must differ"):
        config_from_dict({**base, "method": bad})
    with pytest.raises(ConfigError, match="sampler"):
        config_from_dict({**base, "method": {**base["method"], "ldm": {"sampling": {"sampler": "heun"}}}})


def test_missing_einops_is_one_clear_sentence(monkeypatch):
    import sys

    from MRSynthLib.errors import MRSynthError

    monkeypatch.setitem(sys.modules, "einops", None)
    with pytest.raises(MRSynthError, match="pip install einops"):
        LatentDenoiser(TINY_DENOISER)
