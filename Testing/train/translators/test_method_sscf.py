"""SSCF (``method.kind sscf``): the math of its components, and a tiny phantom run that trains with a falling
loss, exports a bundle (memory bank inside) and synthesizes on both backends. Plumbing, not image quality."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml
from safetensors.torch import load_file, save_file

from MRSynthLib.networks.sscf import SSCFConfig, SSCFTranslator
from MRSynthLib.networks.sscf_adain import adain, region_adain, region_moments, weighted_moments
from MRSynthLib.networks.sscf_memory import INVALID, MemoryBank, top_selection
from MRSynthLib.methods.translators.sscf import ranked_selection
from training.translators.stage2_sscf import segmentation_loss, tumour_fraction


def test_adain_transfers_channel_statistics():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 5, 6, 7) * 3 + 2
    mean, std = torch.randn(2, 6), torch.rand(2, 6) + 0.5
    out_mean, out_std = weighted_moments(adain(x, mean, std), eps=0.0)
    torch.testing.assert_close(out_mean, mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_std, std, atol=1e-5, rtol=1e-5)


def test_region_adain_styles_each_region_and_strength_zero_is_identity():
    torch.manual_seed(1)
    x = torch.randn(1, 4, 6, 6, 6) * 2 + 1
    mask = torch.zeros(1, 1, 6, 6, 6)
    mask[..., :3] = 1.0
    mean, std = torch.randn(1, 2, 4), torch.rand(1, 2, 4) + 0.5
    out = region_adain(x, mask, mean, std)
    for region, weights in ((0, 1 - mask), (1, mask)):
        got_mean, got_std = weighted_moments(out, weights, eps=0.0)
        torch.testing.assert_close(got_mean, mean[:, region], atol=1e-4, rtol=0)
        torch.testing.assert_close(got_std, std[:, region], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(region_adain(x, mask, mean, std, strength=torch.zeros(1, 1)), x)
    # a region without voxels stores the whole patch's statistics as its prototype
    means, stds = region_moments(x, torch.zeros(1, 1, 6, 6, 6))
    whole = weighted_moments(x)
    torch.testing.assert_close(means[:, 1], whole[0])
    torch.testing.assert_close(stds[:, 1], whole[1])


def _entry(value: float, slots: int = 3, channels: int = 4):
    return (torch.full((1, slots, channels), value), torch.ones(1, slots), torch.full((1, slots, 2, channels), value),
            torch.ones(1, slots, 2, channels), torch.tensor([value]))


def test_bank_is_fifo_with_fixed_capacity_and_round_trips_through_safetensors(tmp_path):
    bank = MemoryBank(3, 3, 4)
    assert bank.size == 0
    for value in range(5):
        bank.push(*_entry(float(value)))
    assert bank.size == 3 and int(bank.pushed) == 5
    kept = sorted(bank.tumour.tolist())
    assert kept == [2.0, 3.0, 4.0]  # 0 and 1, the oldest, were evicted first
    assert sorted(bank.stamp.tolist()) == [2, 3, 4]
    assert bank.tumour[int(torch.argmax(bank.stamp))] == 4.0  # the newest replaced the oldest slot
    save_file({k: v.contiguous() for k, v in bank.state_dict().items()}, str(tmp_path / "bank.safetensors"))
    loaded = MemoryBank(3, 3, 4)
    loaded.load_state_dict(load_file(str(tmp_path / "bank.safetensors")))
    for name, tensor in bank.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_affinity_retrieves_the_most_similar_valid_entry():
    torch.manual_seed(2)
    m, h = 3, 8
    bank = MemoryBank(6, m, h)
    features = torch.randn(4, m, h)
    present = torch.ones(4, m)
    present[3, 2] = 0.0  # entry 3 lacks the target (slot 2)
    bank.push(features, present, torch.randn(4, m, 2, h), torch.rand(4, m, 2, h) + 0.1, torch.zeros(4))
    codes = torch.eye(m)[:2]  # slots 0 and 1 given
    target = torch.eye(m)[[2]]
    for wanted in range(3):
        query = features[wanted, :2][None] + 0.01 * torch.randn(1, 2, h)
        affinity = bank.affinity(query, codes, target, torch.ones(1, 2))
        assert int(torch.argmax(affinity)) == wanted
        assert torch.all(affinity[0, 3:] == INVALID)  # entry 3 lacks the target; 4, 5 are empty
        assert top_selection(affinity)[0].tolist() == [float(i == wanted) for i in range(6)]
    # the prototype of a one-hot selection is that entry's target statistics; no selection: strength 0
    mean, std, strength = bank.prototype(top_selection(affinity), target)
    torch.testing.assert_close(mean[0], bank.means[2, 2])
    assert float(strength) == 1.0
    assert float(bank.prototype(torch.zeros(1, 6), target)[2]) == 0.0
    # numpy ranking used at inference: rank wraps over the valid entries, none valid -> no selection
    scores = np.array([[0.2, 0.9, INVALID, 0.5]], np.float32)
    assert ranked_selection(scores, 0).tolist() == [[0, 1, 0, 0]]
    assert ranked_selection(scores, 1).tolist() == [[0, 0, 0, 1]]
    assert ranked_selection(scores, 3).tolist() == [[0, 1, 0, 0]]
    assert not ranked_selection(np.full((1, 4), INVALID, np.float32), 0).any()


def test_lsgan_losses_are_zero_at_the_optimum():
    from training.autoencoder.adversarial import PatchAdversary
    from training.loss_config import GANConfig

    class Identity(torch.nn.Module):  # scores = input: an optimal critic for real = 1, fake = 0
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return [x * self.scale]

    adversary = PatchAdversary(GANConfig(enabled=True, channels=4, layers=1), spatial_dims=3)
    adversary.discriminator = Identity()
    adversary.optimizer = torch.optim.SGD(adversary.discriminator.parameters(), lr=0.0)
    real, fake = torch.ones(2, 1, 4, 4, 4), torch.zeros(2, 1, 4, 4, 4)
    assert adversary.discriminator_step(real, fake) == 0.0  # D(real) = 1, D(fake) = 0
    assert float(adversary.generator_loss(torch.ones(2, 1, 4, 4, 4))) == 0.0  # the generator fooled D
    assert float(adversary.generator_loss(fake)) == 1.0


def test_segmentation_loss_only_with_labels():
    target = torch.zeros(2, 1, 4, 4, 4)
    target[0, :, :2] = 1.0
    logits = torch.randn(2, 1, 4, 4, 4, requires_grad=True)
    assert segmentation_loss(logits, target, torch.tensor([False, False])) is None
    loss = segmentation_loss(logits, target, torch.tensor([True, False]))
    loss.backward()
    assert float(loss.detach()) > 0 and logits.grad[0].abs().sum() > 0 and logits.grad[1].abs().sum() == 0
    perfect = (target * 2 - 1) * 30.0
    assert float(segmentation_loss(perfect, target, torch.tensor([True, True]))) < 1e-3
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[:4, :4, :4] = 5
    labels[:2, 4:, 4:] = 7  # an MS lesion is not tumour
    fraction = tumour_fraction(labels, (4, 5, 6), 4)
    assert fraction.shape == (1, 2, 2, 2) and fraction[0, 0, 0, 0] == 1.0 and fraction.sum() == 1.0


def test_translator_any_subset_gates_and_no_prototype_is_plain_decoding():
    torch.manual_seed(3)
    net = SSCFTranslator(SSCFConfig(hidden=8, num_blocks=1, bank_size=4, top_k=2)).eval()
    eye = torch.eye(5)
    latents = torch.rand(2, 2, 4, 4, 4, 4) * 2 - 1
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # the second sample has only its first input
    hidden, weights, tumour, descriptors = net.encode(latents, eye[[0, 2]], eye[[1, 1]], mask)
    assert hidden.shape == (2, 8, 4, 4, 4) and tumour.shape == (2, 1, 4, 4, 4) and descriptors.shape == (2, 2, 8)
    torch.testing.assert_close(weights.sum(1), torch.ones(2, 4, 4, 4))
    assert torch.all(weights[1, 1] == 0)
    assert torch.all(net.retrieve(descriptors, eye[[0, 2]], eye[[1, 1]], mask) == INVALID)  # empty bank
    scale = torch.ones(2, 8)
    plain = net.fusion.head_from(net.refine(hidden), scale)
    torch.testing.assert_close(net.head_from(hidden, tumour, torch.zeros(2, 4), eye[[1, 1]], scale), plain)


def test_trainer_without_labels_trains_without_the_segmentation_term():
    import dataclasses

    from MRSynthLib.networks.autoencoder import AutoencoderConfig, LatentAutoencoder
    from training.config import load_config
    from training.translators.stage2_latents import LatentCase
    from training.translators.stage2_sscf import SSCFTrainer

    torch.manual_seed(4)
    config = load_config("sscf-phantom-tiny")
    config = dataclasses.replace(config, stage2=dataclasses.replace(config.stage2, patch_size=(8, 8, 8)))
    autoencoder = LatentAutoencoder(AutoencoderConfig(channels=(8, 8))).eval().requires_grad_(False)
    rng = np.random.default_rng(0)

    def case(name, present):
        images = np.zeros((5, 8, 8, 8), np.float32)
        images[present] = rng.random((len(present), 8, 8, 8), dtype=np.float32)
        latents = torch.zeros(5, 4, 4, 4, 4)
        latents[present] = autoencoder.encode(torch.from_numpy(images[present])[:, None])
        mask = np.ones((8, 8, 8), bool)
        return LatentCase(name, images, latents, present, mask, np.argwhere(mask), (8, 8, 8), labels=None)

    trainer = SSCFTrainer(config, autoencoder, config.translator.contrasts, [case("a", [0, 2, 3]), case("b", [0, 1])],
                          [case("v", [0, 2])])
    terms = [trainer.step(np.random.default_rng([0, i])) for i in range(2)]
    assert all(np.isnan(t["segmentation"]) and np.isfinite(t["loss"]) for t in terms)
    assert trainer.network.bank.size == 4 and float(trainer.network.bank.tumour.max()) <= 1.0
    assert np.isnan(trainer.held_out_loss()["val_segmentation"])


# --- a tiny end-to-end run ----------------------------------------------------------------------------------

def _rows(path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from training.cli import main as train_main
    from training.config import load_config

    root = tmp_path_factory.mktemp("sscf")
    data = load_config("sscf-phantom-tiny").to_dict()
    data["stage2"].update(steps=10, log_every=1, checkpoint_every=5)
    config = root / "sscf.yaml"
    config.write_text(yaml.safe_dump(data))
    assert train_main(["all", "--config", str(config), "--run-dir", str(root / "run"), "--output", str(root / "bundle"),
                       "--quiet"]) == 0
    return root


def test_sscf_trains_with_falling_loss_and_fills_its_bank(tiny_run):
    stage = tiny_run / "run" / "stage2_sscf"
    rows = _rows(stage / "metrics.csv")
    loss = [float(r["loss"]) for r in rows]
    assert len(loss) == 10
    assert np.mean(loss[-4:]) < np.mean(loss[:4]), loss
    assert all(np.isfinite(float(r["segmentation"])) for r in rows)  # phantoms carry labels: the branch trains
    assert np.isfinite(float(rows[-1]["gan_generator"])) and np.isnan(float(rows[0]["gan_generator"]))  # warm-up
    assert float(rows[-1]["bank"]) == 8.0  # capacity
    validation = _rows(stage / "validation.csv")
    assert [int(r["step"]) for r in validation] == [0, 5, 10]
    assert all(float(r["val_psnr"]) > 0 and "val_tumour_psnr" in r for r in validation)


def test_sscf_bundle_synthesizes_on_both_backends(tiny_run, tmp_path):
    from MRSynthLib.models.bundle import load_bundle
    from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case
    from MRSynthLib.synthesis import synthesize

    bundle = load_bundle(tiny_run / "bundle")
    assert bundle.card.method == "fsq-sscf"
    assert bundle.card.networks["onnx"]["parity"]["max_relative_difference"] < 1e-4
    bank = load_file(str(bundle.weight_path("sscf.safetensors")))
    assert int(bank["bank.pushed"]) == 20 and bool((bank["bank.stamp"] >= 0).all())  # saved with the weights
    case = write_phantom_case(generate_phantom(PhantomConfig(size=(24, 28, 24), spacing=(8.0, 8.0, 8.0), seed=77)),
                              tmp_path / "case")
    files = {c: case / f"{c}.nii.gz" for c in ("t2", "flair")}
    results = {b: synthesize(files, "t1", model=bundle, samples=3, seed=1, backend=b) for b in ("torch", "onnx")}
    reference = sitk.ReadImage(str(files["t2"]))
    for result in results.values():
        assert result.synthetic.GetSize() == reference.GetSize()
        assert sorted(result.contributions) == ["flair", "t2"]
        assert sitk.GetArrayFromImage(result.uncertainty).max() > 0
    images = {b: [r.synthetic, r.uncertainty, *r.contributions.values()] for b, r in results.items()}
    for a, b in zip(images["torch"], images["onnx"]):
        a, b = sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b)
        assert np.abs(a - b).max() <= 1e-4 * max(np.abs(a).max(), 1e-6)
