"""3D-WLDM (``method.kind wldm``): the math of its components, the CT path (pseudo-CT phantom, HU window,
MAE in HU), and training a few steps on tiny phantoms MR→CT and MR→MR, exported and synthesized.

(The Haar DWT/IDWT perfect reconstruction is tested in test_stage1_blocks.py.)
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml

from MRSynthLib.models.bundle import load_bundle
from MRSynthLib.quality.metrics import evaluate_volumes
from MRSynthLib.networks.dsca import DSCA, CrossAttention
from MRSynthLib.networks.latent_split import LatentSplit, LatentSplitConfig, modality_loss, structure_loss
from MRSynthLib.networks.wldm import WLDMDenoiser, WLDMDenoiserConfig
from MRSynthLib.preprocessing.normalization import NormalizationSpec, ct_to_hounsfield, normalize
from MRSynthLib.phantom import CONTRASTS, CT_HOUNSFIELD, PhantomConfig, generate_phantom, write_phantom_case
from MRSynthLib.synthesis import synthesize
from training.cli import main as train_main
from training.config import config_from_dict as load_config_dict
from training.config import load_config

# ---------------------------------------------------------------------------------------------- components


def test_cosine_losses_are_low_for_matching_pairs_and_high_for_mismatched_ones():
    g = torch.Generator().manual_seed(0)
    anatomy = torch.randn(4, 3, 4, 4, 4, generator=g)
    other = torch.randn(4, 3, 4, 4, 4, generator=g)
    paired, unpaired = torch.ones(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)
    # structure: a paired batch (same anatomy, other contrast = small perturbation) vs an unpaired one
    paired_loss = structure_loss(anatomy, anatomy + 0.1 * other, paired)
    assert paired_loss < 0.01
    assert structure_loss(anatomy, other, paired) > 0.8  # different anatomy scored as a pair: high
    assert structure_loss(anatomy, anatomy, unpaired) == pytest.approx(1.0)  # same anatomy claimed unpaired: high
    assert structure_loss(anatomy, -anatomy, unpaired) == 0.0  # dissimilar and unpaired: no loss
    # modality: spatial means compared; same contrast -> similar, different contrast -> dissimilar
    style = torch.randn(4, 3, 1, 1, 1, generator=g)
    same = modality_loss(style + 0.05 * other, style + 0.05 * anatomy, paired)
    different = modality_loss(style + 0.05 * other, style + 0.05 * anatomy, unpaired)
    assert same < 0.05 < 0.9 < different


def test_latent_split_halves_and_merge_shapes():
    split = LatentSplit(LatentSplitConfig(latent_channels=4, split_channels=3))
    structure, modality = split(torch.randn(2, 4, 4, 6, 4))
    assert structure.shape == modality.shape == (2, 3, 4, 6, 4)
    assert split.merge(structure, modality).shape == (2, 4, 4, 6, 4)


def _identity_attention(attention: CrossAttention, channels: int, gain: float = 1.0) -> None:
    with torch.no_grad():
        eye = torch.eye(channels).view(channels, channels, 1, 1, 1)
        for conv in (attention.query, attention.key, attention.value):
            conv.weight.copy_(eye * (gain if conv is not attention.value else 1.0))
            if conv.bias is not None:
                conv.bias.zero_()


def test_dsca_modality_filtering_subtracts_the_modality_component():
    c = 3
    block = DSCA(3, c, c, c)
    _identity_attention(block.filtering, c)
    with torch.no_grad():
        block.emphasis.value.weight.zero_()  # isolate the filtering branch
    structure = torch.randn(1, c, 2, 2, 2)
    anatomy = torch.randn(1, c, 4, 4, 4)
    style = torch.tensor([0.7, -1.2, 0.4]).view(1, c, 1, 1, 1)  # one modality token: every voxel attends to it
    out = block(anatomy + style, structure, style)
    torch.testing.assert_close(out, anatomy, atol=1e-6, rtol=0)  # the modality latent's component is removed
    other = block(anatomy + style, structure, -style)
    assert not torch.allclose(other, out)  # the output depends on the modality latent
    zero = block(anatomy + style, structure, torch.zeros_like(style))
    torch.testing.assert_close(zero, anatomy + style)  # a zero modality latent subtracts nothing


def test_dsca_structure_emphasis_attends_to_the_matching_structure_token():
    c = 4
    attention = CrossAttention(3, c, c, c)
    _identity_attention(attention, c, gain=8.0)
    tokens = torch.eye(c).view(1, c, c, 1, 1)  # 4 structure tokens, token k = channel k
    features = torch.eye(c)[[2, 0, 3, 1]].T.reshape(1, c, c, 1, 1)  # voxel i is one-hot on channel [2, 0, 3, 1][i]
    with torch.no_grad():
        weights = attention.weights(features, tokens)[0]
    torch.testing.assert_close(weights.sum(-1), torch.ones(c))
    assert weights.argmax(-1).tolist() == [2, 0, 3, 1] and float(weights.max(-1).values.min()) > 0.9


def test_denoiser_uses_the_available_slots_structure_and_modality_only():
    torch.manual_seed(0)
    config = WLDMDenoiserConfig(latent_channels=4, contrasts=("t1", "t2", "ct"), split_channels=4, channels=(8, 16),
                                attention_channels=8, kv_pool=2, norm_num_groups=4)
    net = WLDMDenoiser(config).eval()
    s = (8, 8, 8)
    x, t, latents = torch.randn(1, 4, *s), torch.tensor([0.3]), torch.randn(1, 3, 4, *s)
    available, target = torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    structure, modality = torch.randn(1, 3, 4, *s), torch.randn(1, 3, 4, *s)
    with torch.no_grad():
        base = net(x, t, latents, available, target, structure, modality)
        assert base.shape == x.shape
        changed = modality.clone()
        changed[:, 0] += 1.0
        assert not torch.allclose(net(x, t, latents, available, target, structure, changed), base)
        changed = structure.clone()
        changed[:, 1] += 1.0
        assert not torch.allclose(net(x, t, latents, available, target, changed, modality), base)
        unused = structure.clone()
        unused[:, 2] += 5.0  # the target slot is not available: its halves are ignored
        torch.testing.assert_close(net(x, t, latents, available, target, unused, modality), base)


def test_trainer_pairs_flag_same_case_window_and_contrast():
    from MRSynthLib.networks.autoencoder import AutoencoderConfig, LatentAutoencoder
    from training.translators.stage2_latents import LatentCase
    from training.translators.stage2_wldm import WLDMTrainer

    data = load_config("wldm-phantom-ct-tiny").to_dict()
    data["stage2"]["batch_size"] = 8
    config = load_config_dict(data)
    autoencoder = LatentAutoencoder(AutoencoderConfig(channels=(8, 8), fsq_levels=(8, 5, 5, 5)))
    slots = config.translator.contrasts  # t1, t2, flair, ct
    rng = np.random.default_rng(0)

    def case(name):
        latents = torch.from_numpy(rng.standard_normal((4, 4, 8, 8, 8)).astype(np.float32))
        return LatentCase(name, np.zeros((4, 16, 16, 16), np.float32), latents, [0, 1, 2, 3],
                          np.ones((16, 16, 16), bool), np.argwhere(np.ones((16, 16, 16), bool)), (16, 16, 16))

    trainer = WLDMTrainer(config, autoencoder, slots, [case("a"), case("b")], [case("c")])
    batch = trainer._batch(np.random.default_rng(1), trainer.train_cases)
    assert batch["target_onehot"][:, 3].all()  # MR -> CT: the target is always ct
    assert (batch["available"][:, 3] == 0).all() and (batch["available"].sum(1) >= 1).all()  # never an input
    assert batch["same_b"].all()  # every target is ct: same modality
    order = list(range(1, 8)) + [0]
    torch.testing.assert_close(batch["a_next"], batch["a"][order])
    for i, j in enumerate(order):  # unpaired structure unless the two draws share case and window
        identical = torch.equal(batch["b"][i], batch["b"][j])
        assert bool(batch["paired_next"][i]) == identical
    terms = {k: float(v) for k, v in trainer.step(np.random.default_rng(2)).items()}
    assert {"loss", "diffusion", "structure", "modality", "merge"} <= set(terms) and np.isfinite(terms["loss"])


# ---------------------------------------------------------------------------------------------- CT


def test_ct_normalisation_round_trip_in_hounsfield_units():
    spec = NormalizationSpec(ct_window=(-20.0, 80.0))
    hu = np.array([-20.0, 0.0, 8.0, 28.0, 40.0, 79.5, 120.0], np.float32)
    scaled, window = normalize(hu, None, spec, contrast="ct")
    assert window == (-20.0, 80.0)
    np.testing.assert_allclose(ct_to_hounsfield(scaled, spec), hu, atol=1e-4)  # exact inside [-20, -20 + 1.5 * 100]
    assert normalize(hu, None, spec, contrast="t1")[1] != window  # MR contrasts keep their percentile rule
    assert NormalizationSpec.from_dict(spec.to_dict()) == spec
    assert "ct_window" not in NormalizationSpec().to_dict()  # older cards and cache keys stay unchanged


def test_mae_in_hounsfield_units():
    reference = np.full((8, 8, 8), -1000.0)
    reference[2:6, 2:6, 2:6] = 30.0
    prediction = reference.copy()
    prediction[2:6, 2:6, 2:6] += 12.5
    brain = reference > -500
    report = evaluate_volumes(reference, prediction, brain, hounsfield=True)
    assert report["brain"]["mae_hu"] == pytest.approx(12.5)
    assert "mae_hu" not in evaluate_volumes(reference, prediction, brain)["brain"]


def test_pseudo_ct_is_off_by_default_and_leaves_the_mr_images_unchanged():
    config = dict(size=(24, 24, 24), spacing=(6.0, 6.0, 6.0), seed=4, tumour=False, partial_volume=False)
    plain = generate_phantom(PhantomConfig(**config))
    with_ct = generate_phantom(PhantomConfig(**config, ct=True, ct_noise_hu=0.0))
    assert set(plain.images) == set(CONTRASTS) and "ct" in with_ct.images
    for name in CONTRASTS:
        np.testing.assert_array_equal(sitk.GetArrayFromImage(plain.images[name]), sitk.GetArrayFromImage(with_ct.images[name]))
    ct, labels = sitk.GetArrayFromImage(with_ct.images["ct"]), sitk.GetArrayFromImage(with_ct.labels)
    for label, tissue in ((0, "background"), (1, "csf"), (2, "gray_matter"), (3, "white_matter")):
        assert float(np.median(ct[labels == label])) == pytest.approx(CT_HOUNSFIELD[tissue], abs=1.0)
    assert with_ct.provenance()["pseudo_ct"]["hounsfield_units"]["white_matter"] == CT_HOUNSFIELD["white_matter"]


# ---------------------------------------------------------------------------------------------- training


def _rows(path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def _short_run(data: dict, steps: int = 10) -> dict:
    data["stage2"].update(steps=steps, log_every=1, checkpoint_every=steps // 2)
    return data


def _assert_trained(stage) -> None:
    losses = [float(r["loss"]) for r in _rows(stage / "metrics.csv")]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    held_out = [float(r["val_loss"]) for r in _rows(stage / "validation.csv")]
    assert held_out[-1] < held_out[0], held_out


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory):
    """MR -> CT: stage 1 (wavelet autoencoder, CT included), split head + DSCA denoiser, exported bundle."""
    root = tmp_path_factory.mktemp("wldm-ct")
    data = _short_run(load_config("wldm-phantom-ct-tiny").to_dict())
    data["data"]["cache_dir"] = str(root / "cache")
    config = root / "ct.yaml"
    config.write_text(yaml.safe_dump(data))
    assert train_main(["all", "--config", str(config), "--run-dir", str(root / "run"), "--output", str(root / "bundle"),
                       "--quiet"]) == 0
    return root


@pytest.fixture(scope="module")
def ct_case(tmp_path_factory):
    phantom = generate_phantom(PhantomConfig(size=(24, 28, 24), spacing=(8.0, 8.0, 8.0), seed=77, ms_lesions=1, ct=True))
    return write_phantom_case(phantom, tmp_path_factory.mktemp("case") / "case")


def test_mr_to_ct_trains_exports_and_synthesizes_hounsfield_units(ct_run, ct_case):
    _assert_trained(ct_run / "run" / "stage2_wldm")
    bundle = load_bundle(ct_run / "bundle")
    assert bundle.card.method == "fsq-wldm" and bundle.card.output_contrasts == ("ct",)
    assert tuple(bundle.card.input_contrasts) == ("t1", "t2", "flair")
    assert bundle.card.networks["autoencoder"]["wavelet"] is True
    assert bundle.card.networks["onnx"]["parity"]["max_relative_difference"] < 1e-4
    assert "Hounsfield" in bundle.card.output_intensity
    assert np.isfinite(bundle.card.validation["translator"]["last"]["val_mae_hu"])
    files = {c: ct_case / f"{c}.nii.gz" for c in ("t1", "t2", "flair")}
    results = {b: synthesize(files, "ct", model=bundle, samples=2, seed=1, backend=b) for b in ("torch", "onnx")}
    reference = sitk.ReadImage(str(ct_case / "ct.nii.gz"))
    synthetic = sitk.GetArrayFromImage(results["torch"].synthetic)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_case / "brainmask.nii.gz"))) > 0
    assert results["torch"].synthetic.GetSize() == reference.GetSize()
    assert synthetic[~mask].min() == -1000.0  # air outside the head, HU inside it
    assert -20.0 <= float(np.median(synthetic[mask])) <= 130.0
    onnx = sitk.GetArrayFromImage(results["onnx"].synthetic)
    assert np.abs(onnx - synthetic).max() < 1e-2  # HU: 100 x the normalised tolerance
    from MRSynthLib.quality.metrics import evaluate_images

    report = evaluate_images(reference, results["torch"].synthetic, hounsfield=True)
    assert 0.0 < report["brain"]["mae_hu"] < 1000.0


def test_mr_to_mr_trains_on_a_frozen_autoencoder_and_synthesizes(ct_run, ct_case, tmp_path):
    data = _short_run(load_config("wldm-phantom-tiny").to_dict(), steps=6)
    ct = load_config("wldm-phantom-ct-tiny")
    data["preprocessing"] = ct.to_dict()["preprocessing"]  # the frozen autoencoder's preprocessing (stage1_from)
    data["translator"]["contrasts"] = ["t1", "t2", "flair"]
    data["data"]["cache_dir"] = str(ct_run / "cache")
    data["data"]["sources"][0]["ct"] = True  # the same preprocessed phantoms (the CT is simply not a slot)
    data["method"]["stage1_from"] = str(ct_run / "bundle")
    config = tmp_path / "mr.yaml"
    config.write_text(yaml.safe_dump(data))
    run, out = tmp_path / "run", tmp_path / "bundle"
    assert train_main(["stage2", "--config", str(config), "--run-dir", str(run), "--quiet"]) == 0
    assert not (run / "stage1").exists()
    held_out = [float(r["val_loss"]) for r in _rows(run / "stage2_wldm" / "validation.csv")]
    assert held_out[-1] < held_out[0], held_out
    assert train_main(["export", "--config", str(config), "--run-dir", str(run), "--output", str(out)]) == 0
    bundle = load_bundle(out)
    assert bundle.card.output_contrasts == ("t1", "t2", "flair")
    files = {c: ct_case / f"{c}.nii.gz" for c in ("t1", "t2")}
    result = synthesize(files, "flair", model=bundle, samples=3, seed=2, backend="torch")
    assert result.uncertainty is not None and float(sitk.GetArrayFromImage(result.uncertainty).max()) > 0
    maps = {n: sitk.GetArrayFromImage(m) for n, m in result.contributions.items()}
    assert set(maps) == {"t1", "t2"}
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_case / "brainmask.nii.gz"))) > 0
    np.testing.assert_allclose((maps["t1"] + maps["t2"])[mask].mean(), 1.0, atol=0.05)  # shares of the latent change
    single = synthesize({"t1": files["t1"]}, "flair", model=bundle, samples=1, seed=2, backend="torch")
    assert float(sitk.GetArrayFromImage(single.contributions["t1"])[mask].min()) == pytest.approx(1.0, abs=1e-5)
