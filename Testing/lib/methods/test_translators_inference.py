"""Inference of the generative translator kinds (ldm, cyclegan, targetcode): bundles, both backends, the
numpy driver's sampling, uncertainty and contribution maps, the command line.

The bundles here have random weights (plumbing and parity only); trained ones: test_translators_training.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from MRSynthLib.models.bundle import ModelCard, load_bundle
from MRSynthLib.errors import ContrastError
from MRSynthLib.networks.autoencoder import AutoencoderConfig
from MRSynthLib.networks.configs.denoiser import DenoiserConfig
from MRSynthLib.methods.translators.graphs import build_part
from MRSynthLib.preprocessing.preprocess import PreprocessSpec
from MRSynthLib.methods.translators.samplers import SamplingConfig, Schedule
from MRSynthLib.synthesis import synthesize
from MRSynthLib.methods.translators.engines import KIND_GRAPHS, OnnxGraphEngine, TorchGraphEngine, choose_backend
from MRSynthLib.methods.translators.driver import predict_translator
from MRSynthLib.methods.translators.kind_example import ALL_SLOTS
from MRSynthLib.methods.translators.registry import KINDS as REGISTERED_KINDS
from support.images import blob_array, make_image
from support.processes import synthesize_without_torch
from support.bundles import randomize_zero_parameters
from training.bundles.stage2_bundle import write_translator_bundle

SLOTS = ALL_SLOTS
AUTOENCODER = AutoencoderConfig(channels=(8, 8), fsq_levels=(8, 5, 5, 5)).to_dict()


def _kind_table() -> dict:
    """kind: (parts, extra card entries, inputs, outputs, a task (inputs, target), card networks), from every kind's
    registered example (``KindSpec.example``): a new kind is tested here without editing this file."""
    table = {}
    for name, spec in REGISTERED_KINDS.items():
        example = spec.example()
        networks = {"autoencoder": AUTOENCODER, **example.networks}
        extra = tuple(k for k in example.networks if k not in spec.parts)
        table[name] = (spec.parts, extra, example.inputs, example.outputs, example.task, networks)
    return table


KINDS = _kind_table()


def random_translator_bundle(folder: Path, kind: str) -> Path:
    """A complete bundle of ``kind`` with random weights (seeded), ONNX graphs included."""
    parts, extra, inputs, outputs, _, networks = KINDS[kind]
    torch.manual_seed(0)
    modules = {name: randomize_zero_parameters(build_part(name, networks[name])) for name in parts}
    card = ModelCard(name=f"random-{kind}", version="0.0.1", method=f"fsq-{kind}", input_contrasts=inputs,
                     output_contrasts=outputs, preprocessing=PreprocessSpec(spacing=(6.0, 6.0, 6.0)),
                     networks={k: networks[k] for k in parts + extra}, weights={},
                     description="random weights, for tests only")
    return write_translator_bundle(folder, card, modules)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("translator-bundles")
    return {kind: load_bundle(random_translator_bundle(root / kind, kind)) for kind in KINDS}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("case")
    paths = {}
    for i, name in enumerate(SLOTS):
        path = folder / f"{name}.nii.gz"
        sitk.WriteImage(make_image((blob_array((26, 30, 34), seed=i) * (1.0 + i)).astype(np.float32),
                                   spacing=(5.0, 6.0, 7.0)), str(path))
        paths[name] = path
    return paths


def _arrays(result) -> dict[str, np.ndarray]:
    out = {"synthetic": sitk.GetArrayFromImage(result.synthetic)}
    if result.uncertainty is not None:
        out["uncertainty"] = sitk.GetArrayFromImage(result.uncertainty)
    out.update({f"contribution {k}": sitk.GetArrayFromImage(v) for k, v in result.contributions.items()})
    return out


def test_every_registered_kind_is_exercised_here():
    assert set(KINDS) == set(REGISTERED_KINDS) and all(KINDS[k][0][0] == "autoencoder" for k in KINDS)


@pytest.mark.parametrize("kind", list(KINDS))
def test_bundle_holds_every_graph_pinned_and_parity_checked(bundles, kind):
    card = bundles[kind].card
    meta = card.networks["onnx"]
    assert set(meta["graphs"]) == set(KIND_GRAPHS[kind])
    assert all(path in card.weights for path in meta["graphs"].values())
    assert meta["parity"]["max_relative_difference"] < 1e-4
    assert card.method == f"fsq-{kind}" and "std over" in card.uncertainty
    assert choose_backend(bundles[kind], "auto", "cpu") == "onnx"


@pytest.mark.parametrize("kind", list(KINDS))
def test_torch_and_onnx_agree_end_to_end(bundles, case, kind):
    inputs, target = KINDS[kind][4]
    runs = {}
    for backend in ("torch", "onnx"):
        result = synthesize({c: case[c] for c in inputs}, target, model=bundles[kind], samples=3, seed=4, backend=backend)
        assert result.provenance["backend"] == backend and result.provenance["method"] == f"fsq-{kind}"
        assert result.synthetic.GetSize() == sitk.ReadImage(str(case[inputs[0]])).GetSize()
        assert set(result.contributions) == set(inputs)
        runs[backend] = _arrays(result)
    for key, reference in runs["torch"].items():
        scale = max(float(np.abs(reference).max()), 1e-6)
        assert np.abs(runs["onnx"][key] - reference).max() / scale < 1e-4, key
    assert runs["torch"]["uncertainty"].max() > 0
    total = sum(v for k, v in runs["torch"].items() if k.startswith("contribution"))
    inside = total > 0
    np.testing.assert_allclose(total[inside], 1.0, atol=1e-5)


def test_ldm_synthetic_is_sample_zero_and_seeded(bundles):
    engine = OnnxGraphEngine(bundles["ldm"])
    rng = np.random.default_rng(0)
    arrays = {"t1": rng.random((16, 24, 16), dtype=np.float32), "t2": rng.random((16, 24, 16), dtype=np.float32)}
    one = predict_translator(engine, arrays, "flair", samples=1, seed=7, contributions=False)
    four = predict_translator(engine, arrays, "flair", samples=4, seed=7, contributions=False)
    # does not change with the number of samples (up to float rounding: the batch size differs)
    np.testing.assert_allclose(one.synthetic, four.synthetic, atol=1e-5 * np.abs(one.synthetic).max())
    assert one.uncertainty is None and four.uncertainty.max() > 0 and four.contributions == {}
    again = predict_translator(engine, arrays, "flair", samples=4, seed=7, contributions=False)
    np.testing.assert_array_equal(again.uncertainty, four.uncertainty)
    other = predict_translator(engine, arrays, "flair", samples=1, seed=8, contributions=False)
    assert not np.allclose(other.synthetic, one.synthetic)


@pytest.mark.parametrize("kind", list(KINDS))
def test_sliding_windows_run_and_keep_contributions_normalised(bundles, kind):
    engine = OnnxGraphEngine(bundles[kind])
    inputs, target = KINDS[kind][4]
    rng = np.random.default_rng(1)
    arrays = {c: rng.random((40, 32, 24), dtype=np.float32) for c in inputs}
    tiled = predict_translator(engine, arrays, target, samples=2, window=16, overlap=4)
    assert tiled.windows > 1 and tiled.synthetic.shape == (40, 32, 24) and np.isfinite(tiled.synthetic).all()
    assert tiled.uncertainty.shape == (40, 32, 24)
    np.testing.assert_allclose(sum(tiled.contributions.values()), 1.0, atol=1e-5)


class FakeEngine:
    """A numpy engine with hand-made graphs: downsampling 1, one latent channel, encode/decode identity."""

    backend, device, downsampling = "fake", "cpu", 1

    def __init__(self, kind: str, graphs: dict, networks: dict) -> None:
        self.kind = kind
        self.card = SimpleNamespace(name="fake", method=f"fsq-{kind}", networks=networks)
        self.graphs = graphs

    def encode(self, images):
        return images

    def decode(self, latents):
        return latents[:, :1]

    def run(self, graph, **inputs):
        return self.graphs[graph](**inputs)


def test_ldm_contribution_is_occlusion_sensitivity():
    """A denoiser that only looks at t1: t1 gets all the contribution, t2 none."""
    schedule = Schedule("cosine")

    def denoiser(x, t, latents, available, target_onehot, guide):
        x0 = latents[:, 0] * available[:, :1, None, None, None]  # slot 0 (t1), (B, 1, *s)
        eps = (x - schedule.alpha(t[0]) * x0) / schedule.sigma(t[0])
        return (schedule.velocity(x0, eps, float(t[0])),)

    graphs = {"translator_fuse": lambda latents, **_: (np.zeros((1, 1) + latents.shape[3:], np.float32), None),
              "translator_head": lambda hidden, **_: (hidden,), "denoiser": denoiser}
    networks = {"translator": {"contrasts": ["t1", "t2", "flair"], "hidden": 1},
                "denoiser": DenoiserConfig(latent_channels=1, channels=(8,), attention_levels=(False,)).to_dict(),
                "diffusion": SamplingConfig(steps=4).to_dict()}
    engine = FakeEngine("ldm", graphs, networks)
    rng = np.random.default_rng(2)
    arrays = {"t1": rng.random((6, 6, 6), dtype=np.float32) + 0.5, "t2": rng.random((6, 6, 6), dtype=np.float32)}
    result = predict_translator(engine, arrays, "flair", samples=2, seed=0)
    np.testing.assert_allclose(result.synthetic, arrays["t1"], atol=1e-4)  # the oracle reproduces t1
    np.testing.assert_allclose(result.contributions["t1"], 1.0, atol=1e-6)
    np.testing.assert_allclose(result.contributions["t2"], 0.0, atol=1e-6)
    alone = predict_translator(engine, {"t2": arrays["t2"]}, "flair", samples=1)
    np.testing.assert_array_equal(alone.contributions["t2"], 1.0)  # one input contributes everything


def test_targetcode_contributions_are_the_precision_weights():
    """Input t1 predicts with variance 1, t2 with variance 3: weights 3/4 and 1/4, and so is the fusion."""

    def head(hidden, target_onehot, channel_scale):
        k = hidden.shape[0]
        source = hidden[:, :1]  # the fake features carry the input's own value and its log-variance
        return source, np.broadcast_to(hidden[:, 1:2], source.shape).copy()

    def features(latents, source_onehot, target_onehot):
        logvar = np.where(source_onehot[:, 0] == 1, 0.0, np.log(3.0)).astype(np.float32)
        return (np.concatenate([latents, np.broadcast_to(logvar[:, None, None, None, None], latents.shape)], axis=1),)

    networks = {"targetcode": {"contrasts": ["t1", "t2", "flair"], "hidden": 2, "dropout": 0.0}}
    engine = FakeEngine("targetcode", {"targetcode_features": features, "targetcode_head": lambda **kw: head(**kw)},
                        networks)
    arrays = {"t1": np.full((4, 4, 4), 1.0, np.float32), "t2": np.full((4, 4, 4), 5.0, np.float32)}
    result = predict_translator(engine, arrays, "flair")
    np.testing.assert_allclose(result.contributions["t1"], 0.75, atol=1e-6)
    np.testing.assert_allclose(result.contributions["t2"], 0.25, atol=1e-6)
    np.testing.assert_allclose(result.synthetic, 0.75 * 1.0 + 0.25 * 5.0, atol=1e-5)


def test_cyclegan_accepts_only_its_source_and_target(bundles, case):
    with pytest.raises(ContrastError, match="does not accept input t2"):
        synthesize({"t2": case["t2"]}, "t1ce", model=bundles["cyclegan"])
    with pytest.raises(ContrastError, match="cannot synthesize flair"):
        synthesize({"t1": case["t1"]}, "flair", model=bundles["cyclegan"])
    result = synthesize({"t1": case["t1"]}, "t1ce", model=bundles["cyclegan"])
    contribution = sitk.GetArrayFromImage(result.contributions["t1"])
    assert set(np.unique(contribution)) <= {0.0, 1.0} and contribution.max() == 1.0


def test_ldm_skips_occlusion_runs_when_no_contributions_are_asked(bundles, case):
    result = synthesize({"t1": case["t1"], "t2": case["t2"]}, "flair", model=bundles["ldm"], contributions=False)
    assert result.contributions == {}
    assert "diffusion" in result.timings


def test_cli_writes_uncertainty_and_one_contribution_map_per_input(bundles, case, tmp_path):
    from MRSynthLib.commands.cli import main

    output = tmp_path / "flair.nii.gz"
    code = main(["synthesize", "--model", str(bundles["ldm"].path), "--input", f"t1={case['t1']}", "--input",
                 f"t2={case['t2']}", "--target", "flair", "--output", str(output), "--uncertainty",
                 str(tmp_path / "std.nii.gz"), "--samples", "2", "--contributions-dir", str(tmp_path / "contrib"),
                 "--progress", "none"])
    assert code == 0
    assert (tmp_path / "std.nii.gz").exists()
    assert sorted(p.name for p in (tmp_path / "contrib").glob("*.nii.gz")) == ["contribution_t1.nii.gz",
                                                                               "contribution_t2.nii.gz"]
    sidecar = json.loads(output.with_name("flair.json").read_text())
    assert sidecar["method"] == "fsq-ldm" and "diffusion samples" in sidecar["uncertainty"]


def test_onnx_backend_runs_the_diffusion_loop_without_torch(bundles, case, tmp_path):
    output = tmp_path / "out.nii.gz"
    done = synthesize_without_torch(["--model", bundles["ldm"].path, "--input", f"t1={case['t1']}", "--target", "flair",
                                     "--output", output, "--samples", "2", "--progress", "none"], timeout=180)
    assert done.returncode == 0, done.stderr
    assert json.loads(output.with_name("out.json").read_text())["backend"] == "onnx"


def test_torch_engine_loads_the_same_weights_as_the_card_says(bundles):
    engine = TorchGraphEngine(bundles["targetcode"], "cpu")
    assert set(engine.graphs) >= set(KIND_GRAPHS["targetcode"]) and engine.downsampling == 2
