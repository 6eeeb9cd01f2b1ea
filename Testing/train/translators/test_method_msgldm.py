"""MSG-LDM (``method.kind: msgldm``): the math of each defining component, then a few training steps on
tiny phantoms with a falling held-out loss, export, and synthesis / compare from the bundle.

Stage 1 is the frozen autoencoder of the built-in bundle (``msgldm-phantom-tiny``), so only MSG-LDM trains.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from MRSynthLib.networks.hfib import HighFrequencyInjection
from MRSynthLib.networks.msgldm import MSGLDM, MSGLDMConfig
from MRSynthLib.networks.msgldm_encoders import StructureEncoder
from MRSynthLib.networks.msgldm_fusion import GatedScaleFusion, ScaleCrossAttention, neighbourhoods
from training.translators.msgldm_losses import (
    amplitude_spectrum,
    dct,
    dct_matrix,
    label_fractions,
    segmentation_loss,
    structure_loss,
    style_contrastive_loss,
)
from training.translators.stage2_msgldm import drop_inputs

TINY = MSGLDMConfig(channels=(4, 8), style_dim=4, style_width=4, attention_width=4, attention_heads=2,
                    denoiser_channels=(4, 8), norm_num_groups=4, num_head_channels=4)


def test_hfib_is_a_residual_identity_without_injection():
    torch.manual_seed(0)
    hfib = HighFrequencyInjection(3, 3)
    x = torch.randn(2, 3, 6, 7, 5)
    conv = hfib.inject[0]
    torch.nn.init.zeros_(conv.weight)
    torch.nn.init.zeros_(conv.bias)
    torch.testing.assert_close(hfib(x), x)
    low, high = hfib.split(x)
    torch.testing.assert_close(low + high, x)
    assert StructureEncoder(3, 4, (4, 8))(torch.randn(1, 4, 8, 8, 8))[1].shape == (1, 8, 4, 4, 4)


def test_dct_is_orthonormal_and_structure_loss_is_zero_only_on_identical_inputs():
    matrix = dct_matrix(7, torch.float64)
    torch.testing.assert_close(matrix @ matrix.T, torch.eye(7, dtype=torch.float64))
    torch.manual_seed(1)
    x = torch.randn(2, 3, 6, 8, 5)
    torch.testing.assert_close((dct(x) ** 2).sum(), (x**2).sum())  # Parseval
    assert float(dct(torch.ones(1, 1, 4, 4, 4)).flatten()[1:].abs().max()) < 1e-5  # constant: DC only
    assert float(structure_loss(x, x.clone())) < 1e-6
    assert float(structure_loss(x, x + 0.2 * torch.randn_like(x))) > 1e-2
    assert float(structure_loss(x, torch.roll(x, 2, dims=2))) > 1e-2
    assert torch.all(amplitude_spectrum(x) >= 0)


def test_style_contrastive_loss_is_lower_when_embeddings_cluster_by_modality():
    torch.manual_seed(2)
    labels = torch.arange(4).repeat(5)
    clustered = torch.eye(4)[labels] + 0.05 * torch.randn(20, 4)
    mixed = torch.eye(4)[torch.arange(20) // 5] + 0.05 * torch.randn(20, 4)  # clusters that ignore the labels
    assert float(style_contrastive_loss(clustered, labels)) < float(style_contrastive_loss(torch.randn(20, 4), labels))
    assert float(style_contrastive_loss(clustered, labels)) < 0.5 * float(style_contrastive_loss(mixed, labels))
    assert float(style_contrastive_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]))) == 0.0  # no positives


def test_segmentation_targets_are_block_fractions_and_the_loss_is_minimal_at_them():
    labels = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    labels[0, :2, :2, :2] = 5
    labels[0, 0, 0, 0] = 9  # not a class: background
    fractions = label_fractions(labels, (4, 5), 2)
    assert fractions.shape == (1, 3, 2, 2, 2)
    torch.testing.assert_close(fractions.sum(1), torch.ones(1, 2, 2, 2))
    assert float(fractions[0, 2, 0, 0, 0]) == pytest.approx(7 / 8) and float(fractions[0, 1].max()) == 0.0
    perfect = segmentation_loss(torch.log(fractions.clamp_min(1e-6)), fractions)
    assert float(perfect) < float(segmentation_loss(torch.zeros_like(fractions), fractions))


def test_mmsf_weights_sum_to_one_over_available_inputs_and_are_zero_for_missing_ones():
    torch.manual_seed(3)
    fusion = GatedScaleFusion(3, 6, 5)
    features = torch.randn(2, 5, 6, 4, 4, 4)
    available = torch.tensor([[1.0, 0, 1, 0, 1], [0, 1, 0, 0, 0]])
    with torch.no_grad():
        fused, weights = fusion(features, available, torch.eye(5)[[3, 2]])
    assert fused.shape == (2, 6, 4, 4, 4)
    torch.testing.assert_close(weights.sum(1), torch.ones(2, 4, 4, 4))
    assert float(weights[0, [1, 3]].abs().max()) == 0.0 and float(weights[1, [0, 2, 3, 4]].abs().max()) == 0.0
    changed = features.clone()
    changed[0, 1] += 100.0  # a missing input's features do not reach the fusion
    with torch.no_grad():
        torch.testing.assert_close(fusion(changed, available, torch.eye(5)[[3, 2]])[0][0], fused[0])


@torch.no_grad()
def test_msse_attends_to_lower_scales_and_keeps_the_top_scale_shape():
    torch.manual_seed(4)
    attention = ScaleCrossAttention(3, (4, 6, 8), width=8, heads=2)
    top, lower = torch.randn(1, 4, 8, 8, 8), [torch.randn(1, 6, 4, 4, 4), torch.randn(1, 8, 2, 2, 2)]
    out = attention(top, lower)
    assert out.shape == top.shape
    weights = attention.attention(top, lower)
    assert weights.shape == (1, 2, 2 * 27, 8, 8, 8)
    torch.testing.assert_close(weights.sum(2), torch.ones(1, 2, 8, 8, 8))
    for i in range(2):  # changing either lower scale changes the top-scale output
        changed = [x.clone() for x in lower]
        changed[i][..., 0, 0, 0] += 3.0
        assert float((attention(top, changed) - out).abs().max()) > 1e-4
    near = neighbourhoods(torch.arange(27.0).view(1, 1, 3, 3, 3), 1)
    assert near.shape == (1, 1, 27, 3, 3, 3) and torch.equal(near[0, 0, :, 1, 1, 1], torch.arange(27.0))


@torch.no_grad()
def test_structure_graph_contributions_and_denoiser_shapes():
    torch.manual_seed(5)
    network = MSGLDM(TINY).eval()
    latents = torch.randn(2, 5, 4, 8, 8, 8)
    available = torch.tensor([[1.0, 1, 0, 0, 0], [0, 0, 1, 0, 0]])
    target = torch.eye(5)[[3, 4]]
    structure, weights = network.structure(latents, available, target)
    assert structure.shape == (2, 4, 8, 8, 8) and weights.shape == (2, 5, 8, 8, 8)
    torch.testing.assert_close(weights.sum(1), torch.ones(2, 8, 8, 8))
    assert float(weights[0, 2:].abs().max()) == 0.0 and torch.allclose(weights[1, 2], torch.ones(8, 8, 8))
    velocity = network.denoise(torch.randn(2, 4, 8, 8, 8), torch.rand(2), structure, target)
    assert velocity.shape == (2, 4, 8, 8, 8)
    changed = latents.clone()
    changed[1, 0] += 5.0  # slot 0 is missing in element 1: no effect there
    torch.testing.assert_close(network.structure(changed, available, target)[0][1], structure[1])


def test_input_dropout_keeps_one_to_all_other_inputs_and_never_the_target():
    rng = np.random.default_rng(0)
    counts = set()
    for _ in range(200):
        target, inputs = drop_inputs(rng, [0, 1, 2, 3])
        assert target not in inputs and inputs and set(inputs) <= {0, 1, 2, 3}
        counts.add(len(inputs))
    assert counts == {1, 2, 3}  # 0 .. M-2 of the M-1 others dropped


def _fake_cases(labels: bool) -> list:
    from training.translators.stage2_latents import LatentCase

    rng = np.random.default_rng(0)
    shape = (16, 16, 16)
    mask = np.ones(shape, bool)
    return [LatentCase(f"c{i}", np.zeros((5,) + shape, np.float32), torch.randn(5, 4, 8, 8, 8), [0, 1, 2, 3], mask,
                       np.argwhere(mask)[::50], shape, rng.integers(0, 8, shape).astype(np.uint8) if labels else None)
            for i in range(2)]


@pytest.mark.parametrize("labels", [True, False])
def test_segmentation_loss_is_on_with_labels_and_off_without(labels):
    from MRSynthLib.networks.autoencoder import LatentAutoencoder
    from training.config import load_config
    from training.translators.stage2_msgldm import MSGLDMTrainer

    torch.manual_seed(0)
    config = load_config("msgldm-phantom-tiny")
    cases = _fake_cases(labels)
    trainer = MSGLDMTrainer(config, LatentAutoencoder(config.autoencoder), config.translator.contrasts, cases, cases)
    terms = trainer.step(np.random.default_rng(0))
    assert (terms["segmentation"] > 0) == labels
    assert terms["diffusion"] > 0 and terms["style"] > 0 and terms["structure"] > 0
    assert np.isclose(terms["loss"], terms["diffusion"] + terms["segmentation"] + 0.1 * terms["style"]
                      + 0.1 * terms["structure"], rtol=1e-5)


def _rows(path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
def test_msgldm_trains_exports_and_synthesizes(tmp_path):
    from MRSynthLib.models.bundle import load_bundle
    from MRSynthLib.commands.cli import main as mrsynth_main
    from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case
    from MRSynthLib.synthesis import synthesize
    from training.cli import main as train_main

    run_dir, bundle_dir = tmp_path / "run", tmp_path / "bundle"
    assert train_main(["stage2", "--config", "msgldm-phantom-tiny", "--run-dir", str(run_dir), "--quiet"]) == 0
    stage = run_dir / "stage2_msgldm"
    validation = _rows(stage / "validation.csv")
    assert [int(r["step"]) for r in validation] == [0, 4, 8]
    held_out = [float(r["val_loss"]) for r in validation]  # fixed batch, times and noise
    assert held_out[-1] < held_out[0], held_out
    logged = _rows(stage / "metrics.csv")
    losses = [float(r["loss"]) for r in logged]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    assert {"diffusion", "segmentation", "style", "structure"} <= set(logged[0])
    assert float(logged[0]["segmentation"]) > 0  # phantoms carry labels: the auxiliary loss is on
    assert not (run_dir / "stage1").exists()  # the built-in autoencoder, frozen

    assert train_main(["export", "--config", "msgldm-phantom-tiny", "--run-dir", str(run_dir),
                       "--output", str(bundle_dir)]) == 0
    bundle = load_bundle(bundle_dir)
    assert bundle.card.method == "fsq-msgldm"
    assert bundle.card.networks["onnx"]["parity"]["max_relative_difference"] < 1e-4
    assert bundle.card.validation["translator"]["last"]["val_psnr"] > 0

    phantom = generate_phantom(PhantomConfig(size=(32, 36, 32), spacing=(2.0, 2.0, 2.0), seed=77))
    case = write_phantom_case(phantom, tmp_path / "case")
    files = {"t1": case / "t1.nii.gz", "t2": case / "t2.nii.gz"}
    results = {b: synthesize(files, "flair", model=bundle, samples=2, seed=1, backend=b) for b in ("torch", "onnx")}
    reference = sitk.ReadImage(str(files["t1"]))
    for result in results.values():
        assert result.synthetic.GetSize() == reference.GetSize()
        maps = [sitk.GetArrayFromImage(result.contributions[c]) for c in ("t1", "t2")]
        inside = sitk.GetArrayFromImage(result.synthetic) != 0
        assert np.allclose((maps[0] + maps[1])[inside], 1.0, atol=1e-3)  # gate shares of the two inputs
        assert float(sitk.GetArrayFromImage(result.uncertainty).max()) > 0
    for a, b in zip([results["torch"].synthetic, results["torch"].uncertainty],
                    [results["onnx"].synthetic, results["onnx"].uncertainty]):
        a, b = sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b)
        assert np.abs(a - b).max() / max(float(np.abs(a).max()), 1e-6) < 1e-4

    out = tmp_path / "compare"
    assert mrsynth_main(["compare", "--input", f"t1={files['t1']}", "--input", f"t2={files['t2']}", "--target", "flair",
                         "--reference", str(case / "flair.nii.gz"), "--model", str(bundle_dir), "--output-dir", str(out),
                         "--backend", "torch"]) == 0
    assert list(out.glob("*.csv")) and list(out.glob("*.png"))
