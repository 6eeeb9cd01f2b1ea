"""Training on ``runtime.device`` and across ranks (issue 17): nothing left on the CPU, float32 where bf16 breaks a
loss, identical replicas for stage 2 under torchrun, and a trained bundle that runs where torch cannot import."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml

from support.paths import REPO

from support.images import blob_array, make_image

from support.processes import synthesize_without_torch
from MRSynthLib.networks.autoencoder import FSQAutoencoder
from MRSynthLib.networks.kl import kl_divergence
from MRSynthLib.networks.vq import VectorQuantizer, VQConfig
from training.runtime.acceleration import autocast
from training.config import load_config
from training.inputs.data import Volume
from training.runtime.distributed import DistContext
from training.runtime.placement import misplaced, to_device
from training.translators.stage2 import FusionTrainer, encode_fusion_codes


@pytest.fixture
def meta_nonzero():
    """``torch.nonzero`` on meta tensors (the fusion gate picks the given inputs with it) assumes all non-zero."""
    import torch.fx.experimental._config as fx_config

    previous = fx_config.meta_nonzero_assume_all_nonzero
    fx_config.meta_nonzero_assume_all_nonzero = True
    yield
    fx_config.meta_nonzero_assume_all_nonzero = previous


def _tiny_fusion_setup():
    config = load_config("phantom-tiny")
    stage2 = dataclasses.replace(config.stage2, batch_size=2, patch_size=(16, 16, 16), corrupt_probability=0.5,
                                 ssim_weight=0.5)
    config = dataclasses.replace(config, stage2=stage2)
    torch.manual_seed(0)
    autoencoder = FSQAutoencoder(config.autoencoder)
    images = {name: (blob_array((24, 24, 24), seed=i) / 140.0).astype(np.float32)
              for i, name in enumerate(("t1", "t2", "flair"))}
    return config, autoencoder, [Volume("test/a", images, images["t1"] > 0)]


def test_fusion_stage2_step_runs_entirely_on_the_device(meta_nonzero):
    """A step on the ``meta`` device: any parameter, buffer, optimiser state or batch tensor left on the CPU would
    either raise (an op mixing devices) or show in ``misplaced``. Before issue 17 the fusion stage 2 had no device."""
    config, autoencoder, volumes = _tiny_fusion_setup()
    codes = encode_fusion_codes(config, autoencoder, volumes, volumes)  # the one-time encoding, on the CPU here
    device = torch.device("meta")
    trainer = FusionTrainer(config, autoencoder, volumes, volumes, codes, DistContext(device=device))
    batch = trainer.batch(np.random.default_rng(0))
    terms, decoded = trainer.step(batch)
    assert set(terms) >= {"loss", "latent_l1", "l1", "ssim_loss"} and decoded.device == device
    assert len(trainer.optimizer.state) == len(list(trainer.translator.parameters()))  # the step really ran
    modules = {"translator": trainer.translator, "autoencoder": trainer.autoencoder, "image_loss": trainer.image_loss}
    assert misplaced(device, modules, {"optimizer": trainer.optimizer}, {"batch": batch, "terms": terms}) == []


def test_misplaced_names_every_tensor_left_behind():
    module = torch.nn.Linear(2, 2)
    module.register_buffer("scale", torch.ones(1))
    optimizer = torch.optim.AdamW(module.parameters())
    module(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    wrong = misplaced(torch.device("meta"), {"net": module}, {"opt": optimizer}, {"batch": {"x": [torch.ones(1)]}})
    assert "net.weight (cpu)" in wrong and "net.scale (cpu)" in wrong and "batch.x[0] (cpu)" in wrong
    assert any(w.startswith("opt.state[0].exp_avg") for w in wrong)
    moved = to_device({"x": [torch.ones(1)], "n": 3}, torch.device("meta"))
    assert misplaced(torch.device("meta"), tensors={"moved": moved}) == [] and moved["n"] == 3
    assert misplaced(torch.device("cpu"), {"net": module}, {"opt": optimizer}) == []


def test_kl_and_vq_commitment_stay_float32_inside_bf16_autocast():
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    mean, logvar = (0.01 * torch.randn(2, 4, 6, 6, 6)).bfloat16(), (0.01 * torch.randn(2, 4, 6, 6, 6)).bfloat16()
    with autocast(True, cpu):
        mixed = kl_divergence(mean, logvar)
    exact = kl_divergence(mean.float(), logvar.float())
    assert mixed.dtype == torch.float32 and torch.allclose(mixed, exact, rtol=1e-6)
    quantizer = VectorQuantizer(VQConfig(codebook_size=8, dim=4)).eval()
    z = torch.randn(1, 4, 3, 3, 3).bfloat16()
    with autocast(True, cpu):
        _, commitment = quantizer.train_latent(z)
    assert commitment.dtype == torch.float32


# ----------------------------------------------------------------------------- two ranks (torchrun, gloo)


def _torchrun(args: list[str], cwd) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m",
               "training.cli", *args, "--quiet"]
    return subprocess.run(command, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)


def _identical(replicas_file) -> dict:
    replicas = json.loads(replicas_file.read_text())
    assert replicas["world_size"] == 2 and replicas["backend"] == "gloo" and replicas["identical"]
    assert replicas["sha256"][0] == replicas["sha256"][1]
    return replicas


@pytest.fixture(scope="module")
def two_rank_fusion_run(tmp_path_factory):
    """``mrsynth-train all`` of phantom-tiny (fusion) on two gloo ranks: stage 1, stage 2, bundle with ONNX."""
    root = tmp_path_factory.mktemp("ddp-fusion")
    done = _torchrun(["all", "--config", "phantom-tiny", "--run-dir", str(root / "run"), "--output",
                      str(root / "bundle")], REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.mark.slow
def test_fusion_stage2_trains_data_parallel_with_identical_replicas(two_rank_fusion_run):
    run = two_rank_fusion_run / "run"
    _identical(run / "stage1" / "replicas.json")
    assert _identical(run / "stage2" / "replicas.json")["modules"] == ["translator"]
    steps = [int(row.split(",")[0]) for row in (run / "stage2" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [2, 4, 6]  # rank 0 alone logs


@pytest.mark.slow
def test_a_bundle_from_train_all_synthesizes_where_torch_cannot_import(two_rank_fusion_run, tmp_path):
    bundle = two_rank_fusion_run / "bundle"
    card = json.loads((bundle / "bundle.json").read_text())
    assert card["networks"]["onnx"]["parity"]["max_relative_difference"] < 1e-4
    case = {}
    for i, name in enumerate(("t1", "t2")):
        case[name] = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(make_image(blob_array((28, 32, 36), seed=i).astype(np.float32), spacing=(3.0, 3.5, 4.0)),
                        str(case[name]))
    output = tmp_path / "flair.nii.gz"
    done = synthesize_without_torch(["--model", bundle, "--input", f"t1={case['t1']}", "--input", f"t2={case['t2']}",
                                     "--target", "flair", "--output", output, "--backend", "onnx", "--progress", "none"])
    assert done.returncode == 0, done.stderr
    assert json.loads(output.with_name("flair.json").read_text())["backend"] == "onnx"


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["phantom-tiny-targetcode", "sscf-phantom-tiny"])
def test_a_translator_kind_trains_data_parallel_with_identical_replicas(two_rank_fusion_run, tmp_path, config_name):
    """A kind on the frozen autoencoder of the two-rank bundle (stage 1 skipped). SSCF's memory bank grows from the
    batches: every replica pushes every rank's entries, so the banks (buffers, hashed too) stay identical."""
    config = load_config(config_name).to_dict()
    config["method"]["stage1_from"] = str(two_rank_fusion_run / "bundle")
    path = tmp_path / f"{config_name}.yaml"
    path.write_text(yaml.safe_dump(config))
    done = _torchrun(["stage2", "--config", str(path), "--run-dir", str(tmp_path / "run")], REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    stage = load_config(config_name).method.stage
    replicas = _identical(tmp_path / "run" / stage / "replicas.json")
    assert replicas["step"] == load_config(config_name).stage2.steps and not (tmp_path / "run" / "stage1").exists()


@pytest.mark.slow
def test_no_onnx_skips_the_graphs_of_a_kind_bundle(tmp_path):
    """``--no-onnx`` writes a torch-only bundle for the translator kinds too (the graphs are the default)."""
    from training.cli import main as train

    bundle = tmp_path / "bundle"
    assert train(["all", "--config", "phantom-tiny-targetcode", "--run-dir", str(tmp_path / "run"), "--output",
                  str(bundle), "--no-onnx", "--quiet"]) == 0
    card = json.loads((bundle / "bundle.json").read_text())
    assert "onnx" not in card["networks"] and not (bundle / "onnx").exists()
    assert card["method"] == "fsq-targetcode" and card["weights"]
