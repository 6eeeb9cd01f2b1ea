"""Stage-1 encoder/decoder blocks: Haar wavelet pair + residual block (3D-WLDM), HFIB (MSG-LDM), LHE (RSF)."""

import pytest
import torch

from MRSynthLib.networks.autoencoder import AutoencoderConfig, LatentAutoencoder
from MRSynthLib.networks.hfib import HighFrequencyInjection
from MRSynthLib.networks.lhe import LHEConfig, SliceTransformer, SliceTransformerEnhancement, align_moments
from MRSynthLib.networks.wavelet import WaveletResidualBlock, haar_dwt, haar_idwt


@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (2, 3, 4, 6, 8)])
def test_haar_pair_reconstructs_exactly_and_preserves_energy(shape):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    low, high = haar_dwt(x)
    n = len(shape) - 2
    half = tuple(s // 2 for s in shape[2:])
    assert low.shape == shape[:2] + half and high.shape == (shape[0], (2**n - 1) * shape[1]) + half
    torch.testing.assert_close(haar_idwt(low, high), x, rtol=0, atol=1e-12)
    torch.testing.assert_close((low**2).sum() + (high**2).sum(), (x**2).sum())  # orthonormal
    constant = torch.full(shape, 3.0, dtype=torch.float64)
    c_low, c_high = haar_dwt(constant)
    torch.testing.assert_close(c_low, torch.full_like(c_low, 3.0 * 2 ** (n / 2)))
    assert c_high.abs().max() < 1e-12  # a constant has no detail


def test_haar_rejects_odd_sizes():
    with pytest.raises(ValueError, match="even"):
        haar_dwt(torch.zeros(1, 1, 5, 4, 4))


@pytest.mark.parametrize("spatial", [(8, 8, 8), (7, 6, 5), (6, 10)])
def test_wavelet_residual_block_is_a_residual_on_any_size(spatial):
    torch.manual_seed(0)
    block = WaveletResidualBlock(len(spatial), 4)
    x = torch.randn((2, 4) + spatial, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert block.low[0].weight.grad.abs().sum() > 0 and block.high[0].weight.grad.abs().sum() > 0
    for conv in (block.low[2], block.high[2]):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    torch.testing.assert_close(block(x), x)  # zero branches: identity


def test_hfib_splits_exactly_and_learns_its_sigma():
    torch.manual_seed(0)
    hfib = HighFrequencyInjection(3, 2, sigma=1.2)
    x = torch.randn(1, 2, 8, 9, 10)
    low, high = hfib.split(x)
    torch.testing.assert_close(low + high, x)
    assert hfib.split(torch.full((1, 2, 6, 6, 6), 2.0))[1].abs().max() < 1e-5  # constant: no high frequency
    smooth_var, input_var = float(low.detach().var()), float(x.var())
    assert smooth_var < 0.5 * input_var  # low-pass removes most of white noise
    hfib(x).square().mean().backward()
    assert hfib.log_sigma.grad is not None and float(hfib.log_sigma.grad.abs()) > 0


def test_align_moments_copies_channel_statistics():
    torch.manual_seed(0)
    source, reference = torch.randn(2, 3, 4, 5, 6) * 7 + 2, torch.randn(2, 3, 4, 5, 6) * 0.3 - 1
    aligned = align_moments(source, reference)
    dims = (2, 3, 4)
    torch.testing.assert_close(aligned.mean(dims), reference.mean(dims), atol=1e-5, rtol=0)
    torch.testing.assert_close(aligned.std(dims, correction=0), reference.std(dims, correction=0), atol=1e-4, rtol=1e-4)


def test_slice_transformer_sees_each_slice_alone():
    torch.manual_seed(0)
    branch = SliceTransformer(LHEConfig(dim=8, depth=1, heads=2, slice_chunk=3), patch=2).eval()
    image = torch.randn(1, 1, 8, 8, 8)
    changed = image.clone()
    changed[:, :, 5] += 1.0  # input slice 5 belongs to output slab 2
    with torch.no_grad():
        before, after = branch(image), branch(changed)
    assert before.shape == (1, 8, 4, 4, 4)
    difference = (after - before).abs().amax(dim=(0, 1, 3, 4))
    assert difference[2] > 1e-3 and torch.all(difference[[0, 1, 3]] == 0)
    branch.chunk = 64  # the slice chunking does not change the result
    with torch.no_grad():
        torch.testing.assert_close(branch(image), before)


def test_lhe_is_a_residual_fusion_with_aligned_features():
    torch.manual_seed(0)
    lhe = SliceTransformerEnhancement(LHEConfig(dim=8, depth=1, heads=2), spatial_dims=3, channels=6, patch=4)
    conv = torch.randn(2, 6, 2, 2, 2)
    image = torch.randn(2, 1, 8, 8, 8)
    fused = lhe(conv, image)
    assert fused.shape == conv.shape
    branch = (fused - conv) / lhe.gain
    torch.testing.assert_close(branch.mean((2, 3, 4)), conv.mean((2, 3, 4)), atol=1e-4, rtol=0)
    fused.square().sum().backward()
    assert lhe.gain.grad is not None and lhe.branch.embed.weight.grad.abs().sum() > 0
    with torch.no_grad():
        lhe.gain.zero_()
    torch.testing.assert_close(lhe(conv, image), conv)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_autoencoder_with_every_block_trains(spatial_dims):
    torch.manual_seed(0)
    config = AutoencoderConfig(spatial_dims=spatial_dims, channels=(4, 8, 8), fsq_levels=(5, 5, 5), wavelet=True,
                               hfib=True, lhe=LHEConfig(enabled=True, dim=8, depth=1, heads=2))
    model = LatentAutoencoder(config)
    x = torch.rand((2, 1) + (16,) * spatial_dims)
    out = model(x)
    assert out.reconstruction.shape == x.shape and out.latent.shape == (2, 3) + (4,) * spatial_dims
    out.reconstruction.sub(x).abs().mean().backward()
    for name in ("lhe.gain", "lhe.branch.embed.weight"):
        assert dict(model.encoder.named_parameters())[name].grad is not None
    assert any("log_sigma" in n and p.grad is not None for n, p in model.encoder.named_parameters())
    assert any(isinstance(m, WaveletResidualBlock) for m in model.decoder.modules())


def _onnx_round_trip(module, example, run_input, folder, name):
    import warnings

    import onnxruntime

    path = folder / f"{name}.onnx"
    axes = {0: "batch", 2: "z", 3: "y", 4: "x"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": axes, "y": axes})
    return onnxruntime.InferenceSession(str(path)).run(None, {"x": run_input.numpy()})[0]


class _Encode(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.encode(x)


class _Decode(_Encode):
    def forward(self, x):
        return self.model.decode(x)


@pytest.mark.slow
@pytest.mark.parametrize("latent", ["kl", "vq"])
def test_every_option_exports_to_onnx_with_dynamic_sizes(tmp_path, latent):
    """The inference graphs (encode, decode) export with dynamic batch and size and match torch."""
    torch.manual_seed(0)
    config = AutoencoderConfig(channels=(4, 8), latent=latent, wavelet=True, hfib=True,
                               lhe=LHEConfig(enabled=True, dim=8, depth=1, heads=2))
    model = LatentAutoencoder(config)
    model(torch.rand(2, 1, 16, 16, 16))  # VQ: first training batch initialises the codebook
    model.eval()
    x = torch.rand(2, 1, 12, 16, 20)  # another batch size and shape than the export example
    with torch.no_grad():
        latent_torch = model.encode(x)
        image_torch = model.decode(latent_torch)
    latent_onnx = _onnx_round_trip(_Encode(model), torch.rand(1, 1, 8, 8, 8), x, tmp_path, "encoder")
    image_onnx = _onnx_round_trip(_Decode(model), torch.rand(1, 4, 4, 4, 4), latent_torch, tmp_path, "decoder")
    assert latent_onnx.shape == latent_torch.shape and image_onnx.shape == x.shape
    assert abs(image_onnx - image_torch.numpy()).max() < 1e-4
    if latent == "vq":  # near-ties may pick another entry: every output must still be a codebook entry
        rows = torch.from_numpy(latent_onnx).permute(0, 2, 3, 4, 1).reshape(-1, 4)
        assert (rows[:, None] - model.bottleneck.embedding[None]).abs().amax(2).min(1).values.max() < 1e-6
    else:
        assert abs(latent_onnx - latent_torch.numpy()).max() < 1e-4
