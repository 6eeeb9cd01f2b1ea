"""Training-loop mechanics: a real 2-process torchrun (gloo, CPU) run, exact resume, rank helpers and
gradient checkpointing."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from support.paths import REPO
from training.runtime.acceleration import autocast, bf16_enabled, checkpoint_blocks, enable_gradient_checkpointing
from training.config import load_config
from training.runtime.distributed import (DistContext, broadcast_object, gather_objects, init_distributed, mean_across_ranks,
                                  run_everywhere, run_on_main, state_sha256, wrap_model)
from training.runtime.runs import RunFolder


@pytest.fixture
def one_thread():
    """Tiny convolutions run fastest on one thread (and a loaded machine punishes more)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_two_process_torchrun_trains_identical_replicas(tmp_path):
    """phantom-tiny (16^3 patches, 6 steps) with a VQ latent (EMA codebook all-reduced across ranks) and the
    PatchGAN from step 2 (its discriminator is DDP-wrapped too), on 2 CPU processes."""
    import yaml

    config = load_config("phantom-tiny").to_dict()
    config["autoencoder"].update(latent="vq", vq={**config["autoencoder"]["vq"], "dim": 4, "codebook_size": 32})
    config["stage1_loss"]["gan"].update(enabled=True, start_step=2, channels=8, layers=2)
    (tmp_path / "tiny-vq-gan.yaml").write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m",
               "training.cli", "stage1", "--config", str(tmp_path / "tiny-vq-gan.yaml"), "--run-dir", str(run_dir), "--quiet"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    replicas = json.loads((run_dir / "stage1" / "replicas.json").read_text())
    assert replicas["world_size"] == 2 and replicas["backend"] == "gloo" and replicas["step"] == 6
    assert replicas["modules"] == ["autoencoder", "discriminator"]
    assert len(replicas["sha256"]) == 2 and replicas["sha256"][0] == replicas["sha256"][1] and replicas["identical"]
    rows = list(csv.DictReader(open(run_dir / "stage1" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4, 6]  # rank 0 alone logs
    assert float(rows[0]["gan_d"]) == 0.0 and float(rows[-1]["gan_d"]) > 0  # the discriminator trained after warm-up
    assert (run_dir / "stage1" / "best.json").exists() and (run_dir / "split.json").exists()


@pytest.mark.slow
def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(tmp_path, monkeypatch, one_thread):
    import dataclasses

    import training.autoencoder.stage1 as stage1
    from training.inputs.data import load_volumes

    config = load_config("phantom-tiny")
    config = dataclasses.replace(config, stage1=dataclasses.replace(config.stage1, steps=4, log_every=1, checkpoint_every=2))
    train, val = load_volumes(config.data, config.preprocessing, config.seed)
    whole = RunFolder(tmp_path / "whole")
    whole.prepare(config)
    stage1.train_stage1(config, whole, train, val, progress=False)

    real_stream = stage1.batch_stream

    def interrupted(sampler, start, stop, *args, **kwargs):
        for step, batch in zip(range(start, stop), real_stream(sampler, start, stop, *args, **kwargs)):
            if step == 3:  # after the step-2 checkpoint
                raise KeyboardInterrupt
            yield batch

    parts = RunFolder(tmp_path / "parts")
    parts.prepare(config)
    monkeypatch.setattr(stage1, "batch_stream", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stage1.train_stage1(config, parts, train, val, progress=False)
    monkeypatch.setattr(stage1, "batch_stream", real_stream)
    assert parts.load_checkpoint("stage1")["step"] == 2
    stage1.train_stage1(config, parts, train, val, resume=True, progress=False)
    final = [RunFolder.load_checkpoint(run, "stage1")["model"] for run in (whole, parts)]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])


def test_single_process_helpers_are_no_ops():
    ctx = init_distributed("cpu")
    assert ctx == DistContext() and ctx.is_main and not ctx.distributed
    assert gather_objects(ctx, 3) == [3] and broadcast_object(ctx, "x") == "x" and mean_across_ranks(ctx, 2.5) == 2.5
    assert run_on_main(ctx, lambda: 7) == 7 and run_everywhere(ctx, lambda: 8) == 8
    model = torch.nn.Linear(2, 2)
    assert wrap_model(model, ctx) is model
    with pytest.raises(ValueError):
        run_everywhere(ctx, lambda: int("x"))
    copy = torch.nn.Linear(2, 2)
    copy.load_state_dict(model.state_dict())
    assert state_sha256(copy) == state_sha256(model)
    with torch.no_grad():
        copy.bias[0] += 1e-6
    assert state_sha256(copy) != state_sha256(model)


def test_bf16_and_checkpointing_switches_act_on_cuda_only():
    assert not bf16_enabled(True, torch.device("cpu"))
    with autocast(False, torch.device("cpu")):
        assert torch.ones(2).dtype == torch.float32


def test_gradient_checkpointing_keeps_gradients_and_state_dict_keys(one_thread):
    from MRSynthLib.networks.autoencoder import AutoencoderConfig, LatentAutoencoder

    torch.manual_seed(0)
    plain = LatentAutoencoder(AutoencoderConfig(channels=(8, 16), fsq_levels=(5, 5, 5)))
    checkpointed = LatentAutoencoder(AutoencoderConfig(channels=(8, 16), fsq_levels=(5, 5, 5)))
    checkpointed.load_state_dict(plain.state_dict())
    assert enable_gradient_checkpointing(checkpointed) == len(checkpoint_blocks(plain)) > 2
    assert list(checkpointed.state_dict()) == list(plain.state_dict())
    x = torch.rand(2, 1, 16, 16, 16)
    for model in (plain, checkpointed):
        model(x)[0].square().mean().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    with torch.no_grad():  # inference bypasses the recomputation
        assert torch.equal(checkpointed(x)[0], plain(x)[0])
