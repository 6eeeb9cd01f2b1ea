import pytest
import torch

from MRSynthLib.networks.autoencoder import AutoencoderConfig, FSQAutoencoder
from MRSynthLib.networks.fsq import FSQ
from MRSynthLib.networks.fusion import FusionConfig, FusionTranslator


def test_fsq_codes_indices_round_trip():
    fsq = FSQ((8, 5, 5, 5))
    assert fsq.codebook_size == 1000
    codes = fsq(torch.randn(2, 4, 3, 3, 3) * 3)
    indices = fsq.codes_to_indices(codes)
    assert indices.min() >= 0 and indices.max() < 1000
    torch.testing.assert_close(fsq.indices_to_codes(indices), codes)
    every = torch.arange(1000).view(1, 10, 10, 10)
    torch.testing.assert_close(fsq.codes_to_indices(fsq.indices_to_codes(every)), every)


def test_fsq_values_on_grid_and_gradient_passes():
    fsq = FSQ((3, 4))
    z = torch.randn(1, 2, 5, 5, requires_grad=True)
    q = fsq(z)
    for c, level in enumerate((3, 4)):
        steps = (q[:, c] + 1) * (level - 1) / 2
        torch.testing.assert_close(steps, steps.round())
    q.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_fsq_rejects_bad_levels():
    with pytest.raises(ValueError, match="levels"):
        FSQ((1, 5))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_autoencoder_shapes(spatial_dims):
    config = AutoencoderConfig(spatial_dims=spatial_dims, channels=(4, 8, 8), fsq_levels=(5, 5, 5))
    model = FSQAutoencoder(config)
    x = torch.randn((2, 1) + (16,) * spatial_dims)
    recon, codes, _ = model(x)
    assert recon.shape == x.shape
    assert codes.shape == (2, 3) + (4,) * spatial_dims
    assert AutoencoderConfig.from_dict(config.to_dict()) == config


def test_fusion_weights_sum_to_one_over_available_inputs_and_ignore_missing():
    torch.manual_seed(0)
    translator = FusionTranslator(FusionConfig(hidden=8, num_blocks=1)).eval()
    latents = torch.randn(2, 5, 4, 4, 4, 4)
    available = torch.tensor([[1.0, 0, 1, 1, 0], [0, 1, 0, 0, 0]])
    target = torch.tensor([1, 4])
    prediction, weights = translator(latents, available, target)
    assert prediction.shape == (2, 4, 4, 4, 4) and weights.shape == (2, 5, 4, 4, 4)
    torch.testing.assert_close(weights.sum(1), torch.ones(2, 4, 4, 4))
    assert torch.all(weights[0, [1, 4]] == 0) and torch.all(weights[1, 1] == 1)
    # what sits in a missing slot has no influence
    changed = latents.clone()
    changed[0, 1] = 100.0
    torch.testing.assert_close(translator(changed, available, target)[0], prediction)
