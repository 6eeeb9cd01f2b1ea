"""``mrsynth batch --scheduler`` on a real ``dask.distributed`` LocalCluster (2 worker processes), tiny phantoms.

One corrupt case and one worker killed (SIGKILL) while it runs a case: every good case is written once, complete
and bit-identical to the local batch; the corrupt case is one ``failed`` row; no partial or temp files. A client
killed mid-batch leaves a summary of what finished, and ``--resume`` skips those and redoes the rest.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.paths import REPO
from support.bundles import random_bundle

from MRSynthLib.commands import batch_dask
from MRSynthLib.runtime.backends import available_cores
from MRSynthLib.models.bundle import load_bundle
from MRSynthLib.commands.cli import main
from MRSynthLib.errors import BundleError
from MRSynthLib.files.imageio import read_image
from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

GOOD = [f"case{i}" for i in range(6)]
CORRUPT = "case9"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask")
    for index, case_id in enumerate(GOOD + [CORRUPT]):
        phantom = generate_phantom(PhantomConfig(size=(24, 24, 20), spacing=(6.0, 6.0, 6.0), seed=index))
        write_phantom_case(phantom, root / "data" / case_id)
    (root / "data" / CORRUPT / "t2.nii.gz").write_bytes(b"\x1f\x8b\x08 damaged")
    return root / "data", random_bundle(root / "bundle")


def _argv(data: Path, bundle: Path, out: Path, *extra: str) -> list[str]:
    return ["batch", "--input-dir", str(data), "--target", "flair", "--output-dir", str(out), "--model", str(bundle),
            "--samples", "2", *extra]


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """The same batch without --scheduler (this process)."""
    data, bundle = dataset
    out = tmp_path_factory.mktemp("local") / "out"
    assert main(_argv(data, bundle, out, "--progress", "none")) == 1
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real LocalCluster: 2 worker processes (1 thread each) under nannies that restart a killed worker."""
    import dask

    scratch = tmp_path_factory.mktemp("dask-scratch")
    with dask.config.set({**batch_dask.ONE_CASE_PER_WORKER_THREAD, "distributed.scheduler.allowed-failures": 2,
                          "temporary-directory": str(scratch)}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                     local_directory=str(scratch), silence_logs=logging.ERROR) as local, \
            distributed.Client(local) as client:
        yield local.scheduler_address, client


def _rows(out: Path) -> dict[str, dict]:
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert len({r["case"] for r in rows}) == len(rows)  # every case once
    return {r["case"]: r for r in rows}


def _outputs(out: Path, case_id: str) -> list[Path]:
    return sorted(p for p in (out / case_id).rglob("*") if p.is_file())


def _assert_complete_and_identical(out: Path, reference: Path, cases: list[str]) -> None:
    for case_id in cases:
        names = [p.relative_to(out).as_posix() for p in _outputs(out, case_id)]
        assert names == [p.relative_to(reference).as_posix() for p in _outputs(reference, case_id)], case_id
        for kind in ("synthetic", "uncertainty"):
            written = out / case_id / f"flair_{kind}.nii.gz"
            assert written.read_bytes() == (reference / case_id / f"flair_{kind}.nii.gz").read_bytes(), written
            assert read_image(written).GetSize() == (24, 24, 20)
    assert not [p for p in out.rglob(".*") if ".part" in p.name]  # no temp file of a killed write left


def _start_cli(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "MRSynthLib.commands.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV)


def _executing(dask_worker=None):
    return os.getpid(), [str(ts.key) for ts in dask_worker.state.executing]


def _kill_a_worker_mid_case(client, timeout: float = 120.0) -> tuple[str, str]:
    """SIGKILL the first worker seen executing a case; returns its address and the case id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for address, (pid, keys) in client.run(_executing).items():
            for key in keys:
                if key.startswith("mrsynth-case-"):  # mrsynth-case-<batch>-<case>
                    os.kill(pid, signal.SIGKILL)
                    return address, key.split("-", 3)[-1]
        time.sleep(0.02)
    pytest.fail("no worker was seen running a case")


@pytest.mark.slow
def test_cluster_batch_survives_a_killed_worker_and_matches_the_local_batch(dataset, reference, cluster, tmp_path):
    data, bundle = dataset
    address, client = cluster
    out = tmp_path / "out"
    process = _start_cli(_argv(data, bundle, out, "--scheduler", address, "--progress", "jsonl"))
    killed_worker, killed_case = _kill_a_worker_mid_case(client)
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 1, stderr  # the corrupt case failed, nothing else
    events = [json.loads(line) for line in stdout.splitlines()]
    assert events[-1]["event"] == "done" and events[-1]["failed"] == 1 and events[-1]["cases"] == 7
    assert sorted(e["stage"] for e in events[:-1]) == sorted([f"case {c} ok" for c in GOOD] + [f"case {CORRUPT} failed"])

    rows = _rows(out)
    assert sorted(rows) == sorted(GOOD + [CORRUPT])
    assert all(rows[c]["status"] == "ok" for c in GOOD)
    failed = rows[CORRUPT]
    assert failed["status"] == "failed" and "\n" not in failed["message"] and "t2.nii.gz" in failed["message"]
    assert failed["message"] == _rows(reference)[CORRUPT]["message"]  # the same sentence as the local batch
    assert not (out / CORRUPT).exists() or not _outputs(out, CORRUPT)
    _assert_complete_and_identical(out, reference, GOOD)

    sidecar = json.loads((out / killed_case / "flair_synthetic.json").read_text())
    assert sidecar["batch"]["worker"] != killed_worker  # the killed case was rerun on another worker
    assert sidecar["batch"]["runner"] == "dask" and sidecar["batch"]["scheduler"] == address
    assert sidecar["bundle"]["sha256"] == sidecar["batch"]["client_bundle_sha256"] == load_bundle(bundle).sha256
    assert sidecar["batch"]["threads"] == max(1, available_cores() // 2)  # 2 single-thread workers on this host


@pytest.mark.slow
def test_resume_after_the_client_was_killed(dataset, reference, cluster, tmp_path):
    data, bundle = dataset
    address, _ = cluster
    out = tmp_path / "out"
    argv = _argv(data, bundle, out, "--scheduler", address)
    process = _start_cli([*argv, "--progress", "jsonl"])
    for line in process.stdout:
        if json.loads(line)["stage"].endswith(" ok"):  # a case has finished: kill the client now
            process.send_signal(signal.SIGKILL)
            break
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    finished = {c for c, r in _rows(out).items() if r["status"] == "ok"} if (out / "summary.csv").exists() else set()
    for case_id in GOOD:  # whatever carries a final name is complete (a case may be partly written)
        for path in _outputs(out, case_id) if (out / case_id).exists() else []:
            if path.suffix == ".json":
                assert json.loads(path.read_text())["notice"].startswith("SYNTHETIC")
            elif not path.name.startswith("."):
                assert read_image(path).GetSize() == (24, 24, 20)

    assert main([*argv, "--resume", "--progress", "none"]) == 1
    rows = _rows(out)
    assert {c for c in GOOD if rows[c]["status"] == "skipped"} >= finished
    assert all(rows[c]["status"] in ("skipped", "ok") for c in GOOD) and rows[CORRUPT]["status"] == "failed"
    assert any(rows[c]["status"] == "ok" for c in GOOD)  # the client died mid-batch: some cases were redone
    _assert_complete_and_identical(out, reference, GOOD)


def _set_allowed_failures(dask_scheduler=None, value=0):
    previous, dask_scheduler.allowed_failures = dask_scheduler.allowed_failures, value
    return previous


@pytest.mark.slow
def test_a_case_whose_workers_keep_dying_fails_alone(dataset, cluster, tmp_path):
    """allowed-failures 0: the first worker death of a case is final; that case is one failed row, the rest ok."""
    data, bundle = dataset
    address, client = cluster
    previous = client.run_on_scheduler(_set_allowed_failures, value=0)
    try:
        out = tmp_path / "out"
        process = _start_cli(_argv(data, bundle, out, "--scheduler", address, "--progress", "none"))
        _, killed_case = _kill_a_worker_mid_case(client)
        _, stderr = process.communicate(timeout=240)
    finally:
        client.run_on_scheduler(_set_allowed_failures, value=previous)
    assert process.returncode == 1, stderr
    rows = _rows(out)
    assert rows[killed_case]["status"] == "failed" and rows[CORRUPT]["status"] == "failed"
    assert rows[killed_case]["message"].startswith(f"case {killed_case}: the Dask worker running it died once (killed,")
    assert all(rows[c]["status"] == "ok" for c in GOOD if c != killed_case)
    assert not [p for p in out.rglob(".*") if ".part" in p.name]
    for path in _outputs(out, killed_case) if (out / killed_case).exists() else []:  # complete, if any
        assert path.suffix == ".json" or read_image(path).GetSize() == (24, 24, 20)


@pytest.mark.slow
def test_local_cluster_from_the_cli(dataset, reference, tmp_path):
    """``--scheduler local:1``: the CLI starts and stops its own cluster; same bytes, scratch folder removed."""
    import tempfile

    data, bundle = dataset
    before = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("mrsynth-dask-")}
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "MRSynthLib.commands.cli", *_argv(data / GOOD[0], bundle, out),
                           "--scheduler", "local:1", "--worker-retries", "1", "--progress", "none"],
                          capture_output=True, text=True, cwd=REPO, env=ENV, timeout=240)
    assert done.returncode == 0, done.stderr
    assert _rows(out)[GOOD[0]]["status"] == "ok"
    _assert_complete_and_identical(out, reference, [GOOD[0]])
    sidecar = json.loads((out / GOOD[0] / "flair_synthetic.json").read_text())
    assert sidecar["batch"]["scheduler"] == "local:1" and sidecar["batch"]["threads"] == available_cores()
    assert {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("mrsynth-dask-")} == before


@pytest.mark.parametrize("scheduler, words", [
    ("local:0", "--scheduler local:0: the number of local worker processes must be a whole number of at least 1"),
    ("local:two", "use e.g. --scheduler local:2"),
    ("nowhere:1", "neither tcp://HOST:PORT"),
    ("tcp://127.0.0.1:1", "--scheduler tcp://127.0.0.1:1: no Dask scheduler answered within 1 s"),
])
def test_bad_scheduler_is_one_sentence_and_writes_nothing(dataset, tmp_path, capsys, monkeypatch, scheduler, words):
    data, bundle = dataset
    monkeypatch.setattr(batch_dask, "CONNECT_TIMEOUT_S", 1)
    out = tmp_path / "out"
    assert main(_argv(data, bundle, out, "--scheduler", scheduler)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("mrsynth batch: error: ") and words in err
    assert not out.exists()


def test_worker_retries_needs_a_local_cluster(dataset, tmp_path, capsys):
    data, bundle = dataset
    for extra, words in ((["--worker-retries", "1"], "--worker-retries needs --scheduler local:N"),
                         (["--worker-retries", "1", "--scheduler", "tcp://127.0.0.1:8786"],
                          "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=N dask scheduler"),
                         (["--worker-retries", "-1", "--scheduler", "local:1"], "must be 0 or more")):
        assert main(_argv(data, bundle, tmp_path / "out", *extra)) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and words in err


def test_missing_dask_names_the_pinned_install_command(dataset, tmp_path):
    data, bundle = dataset
    code = ("import sys\nsys.modules['distributed'] = None  # as if not installed\n"
            "from MRSynthLib.commands.cli import main\nsys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, *_argv(data, bundle, tmp_path / "out", "--scheduler", "local:2")],
                          capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f'pip install "dask[distributed]=={batch_dask.DASK_VERSION}"' in done.stderr
    assert not (tmp_path / "out").exists()


def test_dask_pin_matches_the_lock_file():
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)$", (REPO / "requirements.lock").read_text(), re.M))
    assert pins["dask"] == pins["distributed"] == batch_dask.DASK_VERSION


def test_the_cli_and_its_help_do_not_import_dask():
    code = ("import sys\nimport MRSynthLib.commands.cli\n"
            "for argv in (['--help'], ['batch', '--help']):\n"
            "    try:\n        MRSynthLib.commands.cli.main(argv)\n    except SystemExit:\n        pass\n"
            "print('dask:' + ','.join(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--scheduler" in done.stdout and done.stdout.splitlines()[-1] == "dask:"


def test_slicer_batch_script_passes_the_scheduler_flag(dataset, tmp_path):
    data, bundle = dataset
    script = REPO / "MRSynth" / "Scripts" / "batch.py"
    done = subprocess.run([sys.executable, str(script), "--", *_argv(data, bundle, tmp_path / "out")[1:],
                           "--scheduler", "local:0"], capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=120)
    assert done.returncode == 2 and "--scheduler local:0: the number of local worker processes" in done.stderr


def test_worker_threads_share_the_host_cores():
    assert batch_dask.worker_threads(16, 4) == 4 and batch_dask.worker_threads(2, 2) == 1
    assert batch_dask.worker_threads(2, 4) == 1 and batch_dask.worker_threads(8, 0) == 8


def test_a_worker_refuses_a_bundle_that_differs_from_the_clients(dataset):
    _, bundle = dataset
    with pytest.raises(BundleError, match="has sha256 .* the client's has 000000000000"):
        batch_dask._worker_bundle(str(bundle), "0" * 64, "tcp://worker:1")
    with pytest.raises(BundleError, match="cannot load the model bundle .* shared file system"):
        batch_dask._worker_bundle(str(bundle / "absent"), "0" * 64, "tcp://worker:1")
