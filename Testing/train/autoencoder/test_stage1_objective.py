"""Stage-1 objective: AFL, SRB (frozen teacher from a local file), PatchGAN warm-up, the combined loss."""

import dataclasses
import sys
import types

import pytest
import torch
from torch import nn

from MRSynthLib.networks.autoencoder import AutoencoderConfig, LatentAutoencoder
from MRSynthLib.networks.lhe import LHEConfig
from training.config import ConfigError, load_config
from training.loss_config import GANConfig, SRBConfig, Stage1LossConfig, TeacherConfig
from training.autoencoder.losses import AdaptiveFrequencyLoss, gradient_attention, high_frequency
from training.autoencoder.objective import Stage1Objective, central_crop, measure_latent_scale
from training.autoencoder.srb import SemanticAlignment
from training.autoencoder.teachers import load_teacher
from support.teachers import save_teacher


def step_volume(shape=(16, 16, 16)) -> torch.Tensor:
    """``(1, 1, *shape)``: 0 on the left half, 1 on the right half (one sharp edge across x)."""
    volume = torch.zeros((1, 1) + shape)
    volume[..., shape[-1] // 2:] = 1.0
    return volume


def test_afl_is_zero_for_identical_volumes_and_weighs_edges_more():
    afl = AdaptiveFrequencyLoss(sigma=1.0)
    target = step_volume()
    assert float(afl(target, target)) == 0.0
    at_edge, in_flat = target.clone(), target.clone()
    at_edge[..., 6:10, 6:10, 7:9] += 0.2  # a 4x4x2 error on the edge (x = 7, 8 straddle it)
    in_flat[..., 6:10, 6:10, 1:3] += 0.2  # the same error inside the flat left half
    assert torch.allclose((at_edge - target).abs().sum(), (in_flat - target).abs().sum())
    assert float(afl(at_edge, target)) > 2 * float(afl(in_flat, target))
    # teacher attention multiplies the gradient attention
    emphasis = torch.ones_like(target)
    emphasis[..., 6:10, :, :] = 3.0
    assert float(afl(at_edge, target, emphasis)) > float(afl(at_edge, target))


def test_high_frequency_residual_and_gradient_attention():
    ramp = torch.linspace(0, 1, 12).view(1, 1, 1, 1, 12).expand(1, 1, 12, 12, 12)
    assert high_frequency(ramp, 1.0)[..., 3:-3].abs().max() < 1e-5  # smoothing keeps a linear ramp inside
    assert high_frequency(torch.full((1, 1, 6, 6, 6), 0.7), 1.0).abs().max() < 1e-6
    attention = gradient_attention(step_volume())
    assert float(attention.mean()) == pytest.approx(1.0, abs=1e-4)
    assert float(attention[..., 7:9].min()) > 0 and float(attention[..., 2].abs().max()) == 0.0


@pytest.mark.parametrize("with_attention, export", [(True, False), (False, False), (True, True)])
def test_srb_aligns_the_latent_with_a_frozen_local_teacher(tmp_path, with_attention, export):
    torch.manual_seed(0)
    teacher = load_teacher(save_teacher(tmp_path, with_attention, export))
    assert teacher.embedding_dim() == 16 and not any(p.requires_grad for p in teacher.parameters())
    srb = SemanticAlignment(teacher, latent_channels=4, hidden=16, downsampling=2)
    latent = torch.randn(2, 4, 4, 4, 4, requires_grad=True)
    image = torch.rand(2, 1, 8, 8, 8)
    slices = torch.tensor([3, 6])
    loss, attention = srb(latent, image, slices)
    assert 0.0 <= float(loss) <= 2.0
    loss.backward()
    assert latent.grad[:, :, [1, 3]].abs().sum() > 0  # only the latent slabs holding slices 3 and 6 learn
    assert latent.grad[:, :, [0, 2]].abs().sum() == 0
    assert all(p.grad is None for p in teacher.parameters())
    if with_attention:
        assert attention.shape == image.shape
        assert torch.all(attention[0, 0, [0, 1, 2, 4, 5, 6, 7]] == 1) and float(attention[0, 0, 3].mean()) == pytest.approx(1, abs=1e-4)
    else:
        assert attention is None
    if export:
        return
    optimiser = torch.optim.Adam(srb.projector.parameters(), lr=3e-2)
    fixed = latent.detach()
    first = float(srb(fixed, image, slices)[0].detach())
    for _ in range(10):
        optimiser.zero_grad()
        srb(fixed, image, slices)[0].backward()
        optimiser.step()
    assert float(srb(fixed, image, slices)[0]) < 0.5 * first


def test_teacher_loading_errors_name_the_fix(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="srb.enabled: false"):
        load_teacher(TeacherConfig())
    with pytest.raises(ConfigError, match="does not exist"):
        load_teacher(TeacherConfig(path=str(tmp_path / "missing.pt")))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="not a TorchScript file or torch.export program"):
        load_teacher(TeacherConfig(path=str(garbage)))
    monkeypatch.setitem(sys.modules, "timm", None)  # timm is optional: behave as if not installed
    with pytest.raises(ConfigError, match="pip install timm"):
        load_teacher(TeacherConfig(path=str(garbage), timm_model="vit_base_patch16_224.dino"))


def test_timm_teacher_adapter_with_a_stand_in_module(tmp_path, monkeypatch):
    """The timm path (timm is not installed here): a stand-in with timm's ViT interface."""

    class FakeViT(nn.Module):
        num_prefix_tokens = 1

        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2d(3, 8, 8, stride=8)
            self.cls = nn.Parameter(torch.randn(1, 1, 8))

        def forward_features(self, x):
            tokens = self.patch(x).flatten(2).transpose(1, 2)
            return torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)

        def forward_head(self, tokens, pre_logits=False):
            return tokens[:, 0]

    calls = {}

    def create_model(name, pretrained, num_classes, pretrained_cfg_overlay):
        calls.update(name=name, file=pretrained_cfg_overlay["file"], num_classes=num_classes)
        return FakeViT()

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    weights = tmp_path / "dino.pth"
    weights.write_bytes(b"stand-in")
    teacher = load_teacher(TeacherConfig(path=str(weights), timm_model="vit_base_patch16_224.dino", input_size=32))
    embeddings, attention = teacher(torch.rand(3, 12, 10))
    assert calls == {"name": "vit_base_patch16_224.dino", "file": str(weights), "num_classes": 0}
    assert embeddings.shape == (3, 8) and attention.shape == (3, 12, 10)
    torch.testing.assert_close(attention.mean(dim=(1, 2)), torch.ones(3), atol=1e-4, rtol=0)


def tiny_config(tmp_path=None, **losses):
    config = load_config("phantom-tiny")
    autoencoder = AutoencoderConfig(channels=(4, 8), fsq_levels=(5, 5, 5, 5))
    return dataclasses.replace(config, autoencoder=autoencoder, stage1_loss=Stage1LossConfig(**losses))


def test_patchgan_warm_up_and_constant_log_columns():
    torch.manual_seed(0)
    config = tiny_config(gan=GANConfig(enabled=True, start_step=2, channels=4, layers=2))
    model, objective = LatentAutoencoder(config.autoencoder), Stage1Objective(config)
    batch = torch.rand(2, 1, 16, 16, 16)
    columns, adversarial = [], []
    before = [p.detach().clone() for p in objective.adversary.discriminator.parameters()]
    for step in range(4):
        loss, terms, output = objective(model, batch, step)
        loss.backward()
        assert all(p.grad is None for p in objective.adversary.discriminator.parameters())  # generator pass only
        terms.update(objective.discriminator_step(batch, output.reconstruction, step))
        columns.append(tuple(terms))
        adversarial.append((terms["gan_g"], terms["gan_d"]))
        if step == 1:
            assert all(torch.equal(a, b) for a, b in zip(before, objective.adversary.discriminator.parameters()))
    assert len(set(columns)) == 1
    assert adversarial[0] == adversarial[1] == (0.0, 0.0) and all(g > 0 and d > 0 for g, d in adversarial[2:])
    assert not all(torch.equal(a, b) for a, b in zip(before, objective.adversary.discriminator.parameters()))
    state = objective.state_dict()
    restored = Stage1Objective(config)
    restored.load_state_dict(state)
    for a, b in zip(objective.adversary.discriminator.parameters(), restored.adversary.discriminator.parameters()):
        assert torch.equal(a, b)


def test_objective_with_every_term(tmp_path):
    torch.manual_seed(0)
    teacher = save_teacher(tmp_path)
    config = tiny_config(afl_weight=0.5, kl_weight=1e-3, srb=SRBConfig(enabled=True, projector_hidden=8, teacher=teacher),
                         gan=GANConfig(enabled=True, channels=4, layers=2))
    config = dataclasses.replace(config, autoencoder=dataclasses.replace(
        config.autoencoder, latent="kl", wavelet=True, hfib=True, lhe=LHEConfig(enabled=True, dim=8, depth=1, heads=2)))
    model, objective = LatentAutoencoder(config.autoencoder), Stage1Objective(config)
    batch = torch.rand(2, 1, 16, 16, 16)
    loss, terms, output = objective(model, batch, step=0)
    assert set(terms) == {"l1", "kl", "srb", "afl", "gan_g"} and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in objective.generator_parameters())
    assert "projector" in objective.state_dict() and "adversary" in objective.state_dict()
    scale = measure_latent_scale(model, [batch[:1], batch[1:]])
    with torch.no_grad():
        means = model.bottleneck.split(model.encoder(batch))[0]
    assert scale == pytest.approx(1 / float(means.double().std()), rel=1e-4)
    assert central_crop(torch.zeros(1, 1, 9, 300, 130), 128, 4).shape == (1, 1, 9, 128, 128)


def test_srb_without_teacher_stops_with_a_clear_message():
    config = tiny_config(srb=SRBConfig(enabled=True))
    with pytest.raises(ConfigError, match="teacher.path is empty"):
        Stage1Objective(config)
