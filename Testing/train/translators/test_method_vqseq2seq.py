"""VQ-Seq2Seq (``method.kind vqseq2seq``): the math of its components, partially paired data, and a tiny run
that trains (held-out loss falls), exports a bundle with ONNX graphs and synthesizes through the library and
the command line with uncertainty and contribution maps. Plumbing on tiny phantoms, not image quality."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml

from MRSynthLib.networks.vqseq2seq import VQSeq2SeqConfig, VQSeq2SeqTranslator, common_gaussian, reparameterise
from training.config import ConfigError, SourceConfig, load_config
from training.translators.stage2_vqseq2seq import random_pair
from training.translators.vqseq2seq_augment import DomainAugmenter
from training.vqseq2seq_config import DomainAugmentConfig
from training.translators.vqseq2seq_losses import SlicePerceptualLoss, masked_consistency_mse, patch_contrastive


# ---------------------------------------------------------------- component math

def test_reparameterised_samples_have_the_gaussians_mean_and_std():
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(3, 4, generator=generator)
    logvar = torch.rand(3, 4, generator=generator) * 4 - 3
    noise = torch.randn((200_000, 3, 4), generator=generator)
    samples = reparameterise(mean, logvar, noise)
    std = torch.exp(0.5 * logvar)
    assert torch.allclose(samples.mean(0), mean, atol=4 * float(std.max()) / 200_000**0.5)
    assert torch.allclose(samples.std(0), std, rtol=0.01)
    # gradients reach both parameters (the reparameterisation trick)
    mean.requires_grad_(True)
    logvar.requires_grad_(True)
    reparameterise(mean, logvar, noise[:10]).sum().backward()
    assert mean.grad is not None and logvar.grad is not None and float(logvar.grad.abs().sum()) > 0


def test_common_gaussian_combines_sequences_by_precision_and_adds_their_spread():
    q = torch.randn(2, 1, 3, 4, 4, 4)
    lv = torch.randn(2, 1, 3, 4, 4, 4)
    mean, logvar, weights = common_gaussian(q, lv)  # one sequence: its own Gaussian, weight 1
    assert torch.allclose(mean, q[:, 0]) and torch.allclose(logvar, lv[:, 0], atol=1e-5)
    assert torch.allclose(weights, torch.ones_like(weights))

    same = torch.cat([q, q], 1)
    mean, logvar, weights = common_gaussian(same, torch.zeros_like(same))  # two agreeing unit Gaussians
    assert torch.allclose(mean, q[:, 0], atol=1e-6) and torch.allclose(logvar, torch.full_like(logvar, np.log(0.5)))
    assert torch.allclose(weights, torch.full_like(weights, 0.5))

    a, b = torch.zeros(1, 1, 1, 1, 1, 1), torch.ones(1, 1, 1, 1, 1, 1)
    lv2 = torch.tensor([0.0, float(np.log(3.0))]).view(1, 2, 1, 1, 1, 1)  # variances 1 and 3 → precisions 1 and 1/3
    mean, logvar, weights = common_gaussian(torch.cat([a, b], 1), lv2)
    assert torch.allclose(weights.flatten(), torch.tensor([0.75, 0.25]))
    assert torch.isclose(mean.flatten()[0], torch.tensor(0.25))
    within, between = 1 / (1 + 1 / 3), 0.75 * 0.25**2 + 0.25 * 0.75**2  # product variance + spread
    assert torch.isclose(torch.exp(logvar).flatten()[0], torch.tensor(within + between), atol=1e-6)


def test_patch_contrastive_is_lower_for_matched_voxels_than_for_shuffled_ones():
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(2, 8, 4, 4, 4, generator=generator)
    mask = torch.ones(2, 1, 4, 4, 4, dtype=torch.bool)
    matched = a + 0.05 * torch.randn(a.shape, generator=generator)
    order = torch.randperm(64, generator=generator)
    shuffled = a.flatten(2)[:, :, order].view_as(a)
    low = patch_contrastive(a, matched, mask, 32, 0.1, torch.Generator().manual_seed(0))
    high = patch_contrastive(a, shuffled, mask, 32, 0.1, torch.Generator().manual_seed(0))
    assert float(low) < 0.1 < np.log(32) * 0.5 < float(high)
    # voxels outside the mask are never sampled
    outside = mask.clone()
    outside[:, :, :2] = False
    noisy = a.clone()
    noisy[:, :, :2] = torch.randn(noisy[:, :, :2].shape, generator=generator)
    assert torch.isclose(patch_contrastive(a, noisy, outside, 32, 0.1, torch.Generator().manual_seed(0)),
                         patch_contrastive(a, a, outside, 32, 0.1, torch.Generator().manual_seed(0)))


def test_consistency_mse_is_zero_for_equal_latents_and_pulls_both_sides():
    a = torch.randn(1, 4, 3, 3, 3, requires_grad=True)
    b = torch.randn(1, 4, 3, 3, 3, requires_grad=True)
    mask = torch.ones(1, 1, 3, 3, 3, dtype=torch.bool)
    assert float(masked_consistency_mse(a.detach(), a.detach().clone(), mask)) == 0.0
    masked_consistency_mse(a, b, mask).backward()
    assert torch.allclose(a.grad, -b.grad)  # each side is pulled towards the other, symmetrically
    mask[..., 0] = False  # masked voxels carry no loss
    c = b.detach().clone()
    c[..., 0] += 5
    assert torch.isclose(masked_consistency_mse(b.detach(), c, mask), torch.tensor(0.0))


def test_domain_augmentation_changes_intensities_but_keeps_geometry():
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, 16)] * 3, indexing="ij")
    mask = zz**2 + yy**2 + xx**2 < 0.7
    image = np.where(mask, 0.5 + 0.3 * np.sin(4 * xx), 0.0).astype(np.float32)
    augmenter = DomainAugmenter(DomainAugmentConfig(gamma_range=(0.5, 2.0), noise_std=0.05, bias_coefficients=(0.2, 0.4)))
    outs = [augmenter.intensity(image, mask, seed=s) for s in range(8)]
    for out in outs:
        assert out.shape == image.shape and np.all(out[~mask] == 0)  # same grid, background stays background
        assert np.corrcoef(out[mask], image[mask])[0, 1] > 0.5  # the same anatomy (no spatial transform)
    changed = [np.abs(out[mask] - image[mask]).mean() > 0.01 for out in outs]
    assert sum(changed) >= 5  # each transform is drawn with probability 1/2: most draws change intensities
    assert np.array_equal(outs[3], augmenter.intensity(image, mask, seed=3))  # seeded
    rng = np.random.default_rng(0)
    codes = np.stack([augmenter.code(rng, 4, exclude=1) for _ in range(200)])
    onehot = (codes.max(1) == 1) & (codes.sum(1) == 1)
    assert 40 < onehot.sum() < 160 and not np.any(codes[onehot][:, 1])  # other contrasts, or random vectors
    assert np.all((codes >= 0) & (codes <= 1))


def test_translator_encodes_to_codebook_entries_and_decodes_per_target_code():
    torch.manual_seed(0)
    config = VQSeq2SeqConfig(latent_channels=4, contrasts=("t1", "t2", "flair"), hidden=8, num_blocks=1,
                             common_channels=3, codebook_size=16)
    net = VQSeq2SeqTranslator(config)
    latents = torch.rand(2, 4, 4, 4, 4) * 2 - 1
    net.train()
    net.encode_train(latents)  # the first training batch initialises the codebook
    net.eval()
    common, logvar = net.encode_common(latents)
    assert common.shape == logvar.shape == (2, 3, 4, 4, 4)
    entries = net.quantizer.embedding
    flat = common.permute(0, 2, 3, 4, 1).reshape(-1, 3)
    assert float(((flat[:, None] - entries[None]) ** 2).sum(-1).min(1).values.max()) < 1e-12  # every voxel is a codebook entry
    eye = torch.eye(3)
    with torch.no_grad():
        for p in net.head.dynamic.parameters():  # make the dynamic layer code-dependent
            p.normal_(0, 0.5)
        outs = [net.decode_common(common, eye[[k, k]]) for k in range(3)]
    assert all(o.shape == (2, 4, 4, 4, 4) and float(o.abs().max()) <= 1 for o in outs)  # tanh for FSQ codes
    assert float((outs[0] - outs[1]).abs().max()) > 1e-3  # the target code changes the output
    assert VQSeq2SeqConfig.from_dict(config.to_dict()) == config


def test_perceptual_loss_uses_a_local_torchscript_network(tmp_path):
    with pytest.raises(ConfigError, match="perceptual_network"):
        SlicePerceptualLoss(str(tmp_path / "missing.pt"))
    torch.manual_seed(0)
    network = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()))
    network.save(str(tmp_path / "features.pt"))
    loss = SlicePerceptualLoss(str(tmp_path / "features.pt"))
    truth = torch.rand(2, 1, 8, 10, 12)
    prediction = truth.clone().requires_grad_(True)
    assert float(loss(prediction, truth).detach()) == 0.0
    value = loss(prediction + 0.3 * torch.rand_like(truth), truth)
    value.backward()
    assert float(value) > 0 and prediction.grad is not None and not any(p.requires_grad for p in loss.parameters())


# ---------------------------------------------------------------- partially paired data

def test_phantom_source_keeps_some_contrasts_per_case_and_pairs_come_only_from_them():
    from training.inputs.data_cache import preprocess_case
    from training.inputs.data_sources import list_source_cases
    from MRSynthLib.preprocessing.preprocess import PreprocessSpec

    source = SourceConfig(kind="phantom", train_cases=6, val_cases=1, size=(24, 28, 24), contrasts_per_case=2)
    cases = list_source_cases(source, seed=0, spacing=(8.0, 8.0, 8.0))
    kept = [c.phantom_contrasts for c in cases]
    assert all(len(k) == 2 for k in kept) and len(set(kept)) > 1  # two contrasts each, not the same everywhere
    assert kept == [c.phantom_contrasts for c in list_source_cases(source, 0, (8.0, 8.0, 8.0))]  # seeded
    full = list_source_cases(SourceConfig(kind="phantom", train_cases=6, val_cases=1, size=(24, 28, 24)), 0, (8.0,) * 3)
    assert [c.phantom for c in full] == [c.phantom for c in cases]  # the phantoms themselves are unchanged
    arrays, _ = preprocess_case(cases[0], PreprocessSpec(spacing=(8.0, 8.0, 8.0), size_multiple=4), True, None)
    assert {k for k in arrays if k not in ("mask", "foreground", "labels")} == set(kept[0])
    with pytest.raises(ValueError, match="contrasts_per_case"):
        SourceConfig(kind="brats2021", root="x", contrasts_per_case=2)

    rng = np.random.default_rng(0)
    draws = {random_pair(rng, [0, 3]) for _ in range(50)} | {random_pair(rng, [1, 2, 4]) for _ in range(200)}
    assert draws == {(0, 3), (3, 0), (1, 2), (2, 1), (1, 4), (4, 1), (2, 4), (4, 2)}
    with pytest.raises(ValueError, match="two contrasts"):
        random_pair(rng, [2])


# ---------------------------------------------------------------- train, export, synthesize

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``mrsynth-train all`` on the tiny partially paired config (stage 1 VQ autoencoder + VQ-Seq2Seq + export)."""
    from training.cli import main as train_main

    root = tmp_path_factory.mktemp("vqseq2seq")
    data = load_config("vqseq2seq-phantom-tiny").to_dict()
    data["stage2"].update(steps=24, checkpoint_every=8, log_every=1)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(data))
    assert train_main(["all", "--config", str(config), "--run-dir", str(root / "run"), "--output", str(root / "bundle"),
                       "--quiet"]) == 0
    # resuming after the last step restores the state (codebook included) and trains nothing more
    assert train_main(["stage2", "--config", str(config), "--run-dir", str(root / "run"), "--resume", "--quiet"]) == 0
    return root


def _rows(path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
def test_vqseq2seq_trains_on_partially_paired_phantoms_with_falling_loss(tiny_run):
    split = json.loads((tiny_run / "run" / "split.json").read_text())
    assert split  # the run recorded its split
    stage = tiny_run / "run" / "stage2_vqseq2seq"
    validation = _rows(stage / "validation.csv")
    assert [int(r["step"]) for r in validation] == [0, 8, 16, 24]
    held_out = [float(r["val_loss"]) for r in validation]
    assert held_out[-1] < held_out[0], held_out  # the fixed held-out batch's loss falls
    losses = [float(r["loss"]) for r in _rows(stage / "metrics.csv")]
    assert len(losses) == 24 and np.mean(losses[-8:]) < np.mean(losses[:8]), losses
    row = _rows(stage / "metrics.csv")[0]
    assert {"latent_l1", "pixel_l1", "pixel_ssim_loss", "consistency_mse", "contrastive", "commitment", "nll"} <= set(row)


@pytest.mark.slow
def test_vqseq2seq_bundle_synthesizes_with_uncertainty_and_contributions(tiny_run, tmp_path):
    from MRSynthLib.models.bundle import load_bundle
    from MRSynthLib.commands.cli import main as mrsynth
    from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case
    from MRSynthLib.synthesis import synthesize

    bundle = load_bundle(tiny_run / "bundle")
    assert bundle.card.method == "vq-vqseq2seq"
    assert bundle.card.networks["onnx"]["parity"]["max_relative_difference"] < 1e-4
    assert "reparameterised" in bundle.card.uncertainty
    assert not list((tiny_run / "bundle").rglob("last*")) and not list((tiny_run / "bundle").rglob("best*"))

    case = write_phantom_case(generate_phantom(PhantomConfig(size=(24, 28, 24), spacing=(8.0, 8.0, 8.0), seed=77)),
                              tmp_path / "case")
    files = {c: case / f"{c}.nii.gz" for c in ("t1", "t2")}
    results = {b: synthesize(files, "flair", model=bundle, samples=3, seed=1, backend=b) for b in ("torch", "onnx")}
    reference = sitk.ReadImage(str(files["t1"]))
    brain = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "brainmask.nii.gz"))) > 0
    for result in results.values():
        assert result.synthetic.GetSize() == reference.GetSize() and result.synthetic.GetSpacing() == reference.GetSpacing()
        std = sitk.GetArrayFromImage(result.uncertainty)
        assert float(std[brain].mean()) > 0  # reparameterised samples spread
        maps = np.stack([sitk.GetArrayFromImage(m) for m in result.contributions.values()])
        assert set(result.contributions) == {"t1", "t2"}
        assert np.allclose(maps.sum(0)[brain], 1.0, atol=1e-3)  # precision weights over the inputs
    for a, b in zip([results["torch"].synthetic, results["torch"].uncertainty], [results["onnx"].synthetic,
                                                                                 results["onnx"].uncertainty]):
        a, b = sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b)
        assert np.abs(a - b).max() / max(float(np.abs(a).max()), 1e-6) < 1e-4
    # sliding windows: the sampling noise is cut from one volume-wide draw, so any window plan works
    from MRSynthLib.methods.translators.engines import load_engine
    from MRSynthLib.methods.translators.driver import predict_translator

    rng = np.random.default_rng(0)
    arrays = {c: rng.random((24, 32, 24), dtype=np.float32) for c in ("t1", "t2")}
    windowed = predict_translator(load_engine(bundle, "torch", "cpu"), arrays, "flair", samples=2, window=16, overlap=4)
    assert windowed.windows > 1 and np.isfinite(windowed.uncertainty).all() and windowed.synthetic.shape == (24, 32, 24)
    # the synthetic image is the decoded mean: the sample count does not change it
    again = synthesize(files, "flair", model=bundle, samples=5, seed=2, backend="torch")
    assert np.array_equal(sitk.GetArrayFromImage(again.synthetic), sitk.GetArrayFromImage(results["torch"].synthetic))

    out = tmp_path / "cli"
    assert mrsynth(["synthesize", "--input", f"t1={files['t1']}", "--input", f"t2={files['t2']}", "--target", "flair",
                    "--model", str(tiny_run / "bundle"), "--output", str(out / "flair.nii.gz"), "--samples", "2",
                    "--uncertainty", str(out / "std.nii.gz"), "--contributions-dir", str(out / "contrib"),
                    "--backend", "torch"]) == 0
    assert sorted(p.name for p in (out / "contrib").iterdir() if p.name.endswith(".nii.gz")) == ["contribution_t1.nii.gz", "contribution_t2.nii.gz"]
    assert mrsynth(["compare", "--input", f"t1={files['t1']}", "--target", "flair", "--reference",
                    str(case / "flair.nii.gz"), "--model", str(tiny_run / "bundle"), "--output-dir", str(tmp_path / "cmp"),
                    "--backend", "torch"]) == 0
    assert list((tmp_path / "cmp").glob("*.csv"))
