"""Elastic restart: a real ``torchrun --nnodes 1 --nproc-per-node 2 --max-restarts 1`` (gloo, CPU) stage-1 run whose
rank 1 is killed (SIGKILL, from outside: no test hook in the training code) after the first checkpoint; torchrun
restarts both workers, which resume from the checkpoint and finish with identical replicas."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml
from support.paths import REPO

from training.config import load_config
from training.runtime.distributed import elastic_restart_count
from training.runtime.runs import RunFolder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

STEPS, CHECKPOINT_EVERY = 24, 4


def _rank_process(launcher: psutil.Process, rank: int, restart: int) -> psutil.Process | None:
    """The worker process of ``rank`` in torchrun attempt ``restart`` (read from its environment)."""
    for child in launcher.children(recursive=True):
        try:
            env = child.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if env.get("RANK") == str(rank) and env.get("TORCHELASTIC_RESTART_COUNT") == str(restart):
            return child
    return None


@pytest.mark.slow
def test_torchrun_restarts_a_killed_rank_and_resumes_from_the_checkpoint(tmp_path):
    config = load_config("phantom-tiny").to_dict()
    config["stage1"].update(steps=STEPS, log_every=1, checkpoint_every=CHECKPOINT_EVERY)
    (tmp_path / "elastic.yaml").write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
               "--max-restarts", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", "-m", "training.cli",
               "stage1", "--config", str(tmp_path / "elastic.yaml"), "--run-dir", str(run_dir), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = RunFolder(run_dir)
    try:
        deadline = time.monotonic() + 240
        victim = None
        while victim is None and time.monotonic() < deadline and launcher.poll() is None:
            if (run_dir / "stage1" / "last.json").exists():  # a checkpoint exists: kill rank 1 mid-run
                victim = _rank_process(psutil.Process(launcher.pid), rank=1, restart=0)
            time.sleep(0.05)
        assert victim is not None, "rank 1 was not found running after the first checkpoint"
        killed_at = run.load_checkpoint("stage1")["step"]
        victim.send_signal(signal.SIGKILL)
        out, err = launcher.communicate(timeout=300)
    finally:
        if launcher.poll() is None:  # a failed assertion above: stop the whole torchrun tree
            for process in psutil.Process(launcher.pid).children(recursive=True) + [psutil.Process(launcher.pid)]:
                process.kill()
            launcher.communicate()
    assert launcher.returncode == 0, err[-3000:]
    assert "torchrun restarted the workers (restart 1); resuming from the last checkpoint" in err
    assert killed_at < STEPS  # the kill came before the end

    replicas = json.loads((run_dir / "stage1" / "replicas.json").read_text())
    assert replicas["world_size"] == 2 and replicas["step"] == STEPS and replicas["identical"]
    assert run.load_checkpoint("stage1")["step"] == STEPS
    steps = [int(row["step"]) for row in csv.DictReader(open(run_dir / "stage1" / "metrics.csv"))]
    restart = next(i for i in range(1, len(steps)) if steps[i] <= steps[i - 1])  # where the second attempt began
    resumed_from = steps[restart] - 1
    assert resumed_from >= killed_at >= CHECKPOINT_EVERY and resumed_from % CHECKPOINT_EVERY == 0  # a checkpoint, not 0
    assert steps[:restart] == list(range(1, steps[restart - 1] + 1)) and steps[restart:] == list(range(resumed_from + 1, STEPS + 1))


def test_restart_count_comes_from_torchrun(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    assert elastic_restart_count() == 0
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    assert elastic_restart_count() == 2
