"""The child-process runner with real processes: progress parsing, cancel of a whole tree, failures."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from support.slicer_scene import MODULE_DIR  # noqa: F401  (puts MRSynth/ on sys.path)

# isort: split

from MRSynthSlicerLib.commands import (
    OutputFiles,
    SynthesisOptions,
    child_environment,
    library_root,
    python_executable,
    synthesize_argv,
)
from MRSynthSlicerLib.process import CANCEL_TIMEOUT_S, ChildProcess, LogEvent, ProgressEvent
from MRSynthSlicerLib.stages import ProgressTracker


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "child.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return [sys.executable, str(path)]


def drain(child: ChildProcess, timeout: float = 30.0) -> list:
    """Poll like the GUI timer until the outcome is known."""
    events, deadline = [], time.monotonic() + timeout
    while child.outcome is None:
        assert time.monotonic() < deadline, "child did not finish"
        events += child.poll()
        time.sleep(0.02)
    return events + child.poll()


def test_progress_lines_become_events_and_done_becomes_the_result(tmp_path):
    argv = script(tmp_path, """
        import json, sys
        from MRSynthLib.progress import Progress
        progress = Progress("jsonl")
        progress("read", 0.0)
        print("a plain line")
        progress("encode t1", 0.5)
        progress("decode", 1.0)
        print("to stderr", file=sys.stderr)
        progress.done(outputs=["a.nrrd"], timings={"model": 1.0})
    """)
    child = ChildProcess(argv, env=child_environment()).start()
    events = drain(child)
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    assert [(e.stage, e.fraction) for e in progress] == [("read", 0.0), ("encode t1", 0.5), ("decode", 1.0), ("done", 1.0)]
    overall = [e.overall for e in progress]
    assert overall == sorted(overall) and overall[-1] == 1.0 and 0.2 < overall[1] < 0.4
    logs = [(e.stream, e.text) for e in events if isinstance(e, LogEvent)]
    # Two pipes read by two threads: order within a stream is kept, order across streams is not defined.
    assert sorted(logs) == [("stderr", "to stderr"), ("stdout", "a plain line")]
    outcome = child.outcome
    assert outcome.succeeded and outcome.return_code == 0 and outcome.error is None
    assert outcome.result == {"outputs": ["a.nrrd"], "timings": {"model": 1.0}}


def test_wait_blocks_until_the_end(tmp_path):
    child = ChildProcess(script(tmp_path, "import time; time.sleep(0.3); print('bye')")).start()
    outcome = child.wait(timeout=30)
    assert outcome.succeeded and outcome.seconds >= 0.3
    assert [e.text for e in child.poll()] == ["bye"]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # dead, not yet reaped by its new parent
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("own_session", [False, True], ids=["same-group", "grandchild-in-own-session"])
def test_cancel_kills_the_whole_process_tree_within_two_seconds(tmp_path, own_session):
    argv = script(tmp_path, f"""
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                      start_new_session={own_session})
        print(f"grandchild {{grandchild.pid}}", flush=True)
        time.sleep(120)
    """)
    child = ChildProcess(argv).start()
    grandchild_pid, deadline = None, time.monotonic() + 30
    while grandchild_pid is None:
        assert time.monotonic() < deadline, "the child never reported its grandchild"
        for event in child.poll():
            if isinstance(event, LogEvent) and event.text.startswith("grandchild "):
                grandchild_pid = int(event.text.split()[1])
        time.sleep(0.02)
    child_pid = child.process.pid
    assert psutil.pid_exists(grandchild_pid) and not _gone(grandchild_pid)

    start = time.monotonic()
    outcome = child.cancel()
    elapsed = time.monotonic() - start
    assert elapsed < CANCEL_TIMEOUT_S
    assert outcome.status == "cancelled" and outcome.error is None
    assert _gone(child_pid)
    deadline = time.monotonic() + CANCEL_TIMEOUT_S - elapsed
    while not _gone(grandchild_pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _gone(grandchild_pid), "the grandchild survived the cancel"


def test_error_event_is_the_one_line_error(tmp_path):
    argv = script(tmp_path, """
        import sys
        from MRSynthLib.progress import Progress
        Progress("jsonl").error("Input t1 (x.nii.gz) is not 3D: give a 3D volume.")
        print("mrsynth synthesize: error: Input t1 (x.nii.gz) is not 3D: give a 3D volume.", file=sys.stderr)
        sys.exit(2)
    """)
    child = ChildProcess(argv, env=child_environment()).start()
    outcome = child.wait(timeout=30)
    assert outcome.status == "failed" and outcome.return_code == 2
    assert outcome.error == "Input t1 (x.nii.gz) is not 3D: give a 3D volume."


def test_a_crash_surfaces_the_last_stderr_line(tmp_path):
    child = ChildProcess(script(tmp_path, "raise ValueError('boom in the child')")).start()
    outcome = child.wait(timeout=30)
    assert outcome.status == "failed" and outcome.error == "ValueError: boom in the child"


@pytest.mark.skipif(os.name != "posix", reason="signals are POSIX")
def test_a_killed_child_says_so(tmp_path):
    child = ChildProcess(script(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")).start()
    outcome = child.wait(timeout=30)
    assert outcome.status == "failed" and "signal 9" in outcome.error and "\n" not in outcome.error


def test_the_real_command_line_failure_is_one_line(tmp_path):
    """The library's own error for a missing input, through the real CLI in a child process."""
    missing = tmp_path / "absent_t1.nii.gz"
    outputs = OutputFiles.in_folder(tmp_path / "out", SynthesisOptions("t1ce", samples=1, contributions=False))
    argv = synthesize_argv(sys.executable, {"t1": missing}, outputs, SynthesisOptions("t1ce", contributions=False))
    child = ChildProcess(argv, env=child_environment(), cwd=str(tmp_path)).start()
    outcome = child.wait(timeout=120)
    assert outcome.status == "failed" and outcome.return_code == 2
    assert "absent_t1.nii.gz" in outcome.error and "\n" not in outcome.error
    assert not outputs.synthetic.exists()


def test_stage_tracker_is_monotonic_and_ignores_unknown_stages():
    tracker = ProgressTracker()
    assert tracker.update("read", 0.0) == 0.0
    assert tracker.update("encode t2", 0.5) == pytest.approx(0.3)
    assert tracker.update("something new", 0.9) == pytest.approx(0.3)
    assert tracker.update("read", 1.0) == pytest.approx(0.3)  # never backwards
    assert tracker.update("uncertainty", 2.0) == pytest.approx(0.9)  # fraction clipped to 1
    assert tracker.finish() == 1.0


# --------------------------------------------------------------------------- command line


def test_synthesize_argv_passes_backend_only_when_chosen(tmp_path):
    files = {"t1": tmp_path / "t1.nrrd", "flair": tmp_path / "flair.nrrd"}
    options = SynthesisOptions("T1c", model="m", samples=4, seed=7)
    outputs = OutputFiles.in_folder(tmp_path / "out", options)
    argv = synthesize_argv("py", files, outputs, options)
    assert argv[:4] == ["py", "-m", "MRSynthLib.commands.cli", "synthesize"]
    assert "--backend" not in argv
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "--input"]
    assert pairs == [f"t1={files['t1']}", f"flair={files['flair']}"]  # order kept: first = reference grid
    flags = dict(zip(argv[4::2], argv[5::2], strict=False))
    assert flags["--target"] == "t1ce" and flags["--samples"] == "4" and flags["--seed"] == "7"
    assert flags["--uncertainty"] == str(outputs.uncertainty)
    assert flags["--contributions-dir"] == str(outputs.contributions_dir)
    assert argv[-2:] == ["--progress", "jsonl"]
    onnx = synthesize_argv("py", files, outputs, SynthesisOptions("t1ce", backend="onnx", device="cpu"))
    assert onnx[onnx.index("--backend") + 1] == "onnx"
    single = SynthesisOptions("t1ce", samples=1, contributions=False)
    plain = synthesize_argv("py", files, OutputFiles.in_folder(tmp_path, single), single)
    assert "--uncertainty" not in plain and "--contributions-dir" not in plain


@pytest.mark.parametrize("bad", [dict(device="gpu"), dict(backend="tensorrt"), dict(samples=0), dict(seed=-1),
                                 dict(target="t3")])
def test_options_refuse_bad_values(bad):
    with pytest.raises(Exception, match="must be|Unknown contrast"):
        SynthesisOptions(**{"target": "t1ce", **bad})


def test_python_executable_prefers_python_slicer(tmp_path):
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    app_python = tmp_path / "bin" / "python-real"
    app_python.parent.mkdir()
    assert python_executable(str(app_python), in_slicer=False) == str(app_python)
    (tmp_path / "bin" / name).write_text("")
    assert python_executable(str(app_python), in_slicer=False) == str(tmp_path / "bin" / name)
    assert python_executable(str(app_python), in_slicer=True, which=lambda n: "/opt/Slicer/bin/PythonSlicer") \
        == "/opt/Slicer/bin/PythonSlicer"
    assert python_executable() == sys.executable  # outside Slicer, in this test run


def test_child_environment_puts_the_library_first():
    env = child_environment({"PYTHONPATH": os.pathsep.join(["/somewhere", str(library_root())])})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(library_root()), "/somewhere"]
    assert env["PYTHONUNBUFFERED"] == "1"
    assert (library_root() / "MRSynthLib" / "__init__.py").is_file()
