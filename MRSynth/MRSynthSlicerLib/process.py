"""A child process whose JSON-lines progress is read without blocking, and whose whole tree can be killed.

The GUI calls :meth:`ChildProcess.poll` from a timer; scripts call :meth:`ChildProcess.wait`.
:meth:`ChildProcess.cancel` kills the child and everything it started (``PythonSlicer`` is a launcher
that starts the real interpreter, so killing only the direct child would leave the work running).

Stdout lines that are JSON objects with an ``"event"`` key are protocol messages
(see ``MRSynthLib.progress``): ``progress`` → :class:`ProgressEvent`, ``done`` → the outcome's
``result``, ``error`` → the outcome's one-line ``error``. Every other line becomes a :class:`LogEvent`.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from MRSynthSlicerLib.stages import ProgressTracker

CANCEL_TIMEOUT_S = 2.0
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report: ``fraction`` of ``stage``, and the whole run's ``overall`` fraction (0..1)."""

    stage: str
    fraction: float
    overall: float


@dataclass(frozen=True)
class LogEvent:
    """A line the child printed that is not a protocol message (``stream``: ``stdout`` or ``stderr``)."""

    text: str
    stream: str


@dataclass(frozen=True)
class Outcome:
    """How a child run ended.

    Attributes:
        status: ``succeeded``, ``failed`` or ``cancelled``.
        return_code: the exit code (negative: killed by that signal on POSIX).
        error: one line saying why it failed (None unless ``failed``).
        result: the payload of the child's ``done`` event (e.g. ``outputs``, ``timings``).
        seconds: wall time from start to end.
    """

    status: str
    return_code: int | None
    error: str | None = None
    result: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED


def kill_process_tree(process: subprocess.Popen, timeout: float = CANCEL_TIMEOUT_S) -> None:
    """Kill ``process`` and all its descendants; returns once they are gone or ``timeout`` passed.

    Uses psutil when available (every platform, also children that left the process group), the
    process group on POSIX (the child was started in its own session), and ``taskkill /T`` on Windows.
    """
    deadline = time.monotonic() + timeout
    victims = []
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            parent = psutil.Process(process.pid)
            victims = [parent] + parent.children(recursive=True)
        except psutil.Error:  # already gone, or not ours to inspect
            victims = []
    if os.name == "posix":
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the child leads its own session / process group
        except (ProcessLookupError, PermissionError):
            pass
    elif psutil is None:
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
    for victim in victims:
        try:
            victim.kill()
        except psutil.Error:
            pass
    try:
        process.wait(timeout=max(deadline - time.monotonic(), 0.01))
    except subprocess.TimeoutExpired:
        process.kill()
    if psutil is not None and victims:
        # A killed grandchild is re-parented; where nobody reaps it (PID 1 in many containers) it stays a
        # zombie, which psutil.wait_procs counts as alive until the timeout. Dead-but-unreaped is gone.
        while any(_still_running(victim, psutil) for victim in victims) and time.monotonic() < deadline:
            time.sleep(0.01)


def _still_running(victim, psutil) -> bool:
    try:
        return victim.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:  # gone (or no longer ours to inspect)
        return False


def _without_cli_prefix(line: str) -> str:
    """``"mrsynth synthesize: error: X"`` → ``"X"``."""
    marker = ": error: "
    if line.startswith("mrsynth") and marker in line:
        return line.split(marker, 1)[1]
    return line


class ChildProcess:
    """Run ``argv`` in a child process and collect its events; see the module docstring."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self._events: queue.Queue = queue.Queue()
        self._readers: list[threading.Thread] = []
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self._error_message: str | None = None
        self._result: dict = {}
        self._tracker = ProgressTracker()
        self._cancelled = False
        self._started = 0.0
        self._outcome: Outcome | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ChildProcess:
        if self.process is not None:
            raise RuntimeError("this child process was already started; create a new ChildProcess")
        options = {}
        if os.name == "posix":
            options["start_new_session"] = True
        else:
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        self._started = time.monotonic()
        self.process = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.env, cwd=self.cwd, text=True, encoding="utf-8", errors="replace", bufsize=1, **options,
        )
        for stream, handler in ((self.process.stdout, self._on_stdout), (self.process.stderr, self._on_stderr)):
            reader = threading.Thread(target=self._read, args=(stream, handler), daemon=True)
            reader.start()
            self._readers.append(reader)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self._outcome is None and not self._exited()

    @property
    def outcome(self) -> Outcome | None:
        """The outcome once the child has ended and its output is read; None before."""
        if self._outcome is None and self.process is not None and self._exited():
            self._finish()
        return self._outcome

    def poll(self) -> list[ProgressEvent | LogEvent]:
        """Events received since the last call; never blocks."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                break
        _ = self.outcome  # settle the outcome as soon as the child is done
        return events

    def wait(self, timeout: float | None = None) -> Outcome:
        """Block until the child ends (``subprocess.TimeoutExpired`` after ``timeout`` seconds)."""
        if self.process is None:
            raise RuntimeError("start() the child process before waiting for it")
        self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join()
        return self.outcome

    def cancel(self, timeout: float = CANCEL_TIMEOUT_S) -> Outcome:
        """Kill the child's whole process tree; the outcome is ``cancelled`` unless it had already ended."""
        if self.process is None:
            raise RuntimeError("start() the child process before cancelling it")
        if self._outcome is None and self.process.poll() is None:
            self._cancelled = True
            kill_process_tree(self.process, timeout)
        for reader in self._readers:
            reader.join(timeout=0.5)
        return self.outcome or self._finish()

    # ------------------------------------------------------------------ internals

    def _exited(self) -> bool:
        return self.process.poll() is not None and not any(r.is_alive() for r in self._readers)

    @staticmethod
    def _read(stream, handler) -> None:
        with stream:
            for line in stream:
                handler(line.rstrip("\r\n"))

    def _on_stdout(self, line: str) -> None:
        message = None
        if line.startswith("{"):
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                message = None
        if not isinstance(message, dict) or "event" not in message:
            if line.strip():
                self._events.put(LogEvent(line, "stdout"))
            return
        kind = message["event"]
        if kind == "progress":
            stage = str(message.get("stage", ""))
            fraction = float(message.get("fraction", 0.0))
            self._events.put(ProgressEvent(stage, fraction, self._tracker.update(stage, fraction)))
        elif kind == "done":
            self._result = {k: v for k, v in message.items() if k not in ("event", "elapsed_s")}
            self._events.put(ProgressEvent("done", 1.0, self._tracker.finish()))
        elif kind == "error":
            self._error_message = str(message.get("message", "")).strip() or None

    def _on_stderr(self, line: str) -> None:
        if line.strip():
            self._stderr_tail.append(line.strip())
            self._events.put(LogEvent(line, "stderr"))

    def _failure_message(self, return_code: int) -> str:
        if self._error_message:
            return self._error_message
        if return_code < 0:
            return (f"The synthesis process was killed by signal {-return_code} "
                    "(often: out of memory); try a smaller volume or another device.")
        if self._stderr_tail:
            return _without_cli_prefix(self._stderr_tail[-1])
        return f"The synthesis process ended with exit code {return_code} and no message."

    def _finish(self) -> Outcome:
        return_code = self.process.poll()
        seconds = round(time.monotonic() - self._started, 3)
        if self._cancelled:
            outcome = Outcome(CANCELLED, return_code, None, {}, seconds)
        elif return_code == 0:
            outcome = Outcome(SUCCEEDED, 0, None, self._result, seconds)
        else:
            outcome = Outcome(FAILED, return_code, self._failure_message(return_code), {}, seconds)
        self._outcome = outcome
        return outcome
