"""``mrsynth batch --scheduler``: one ``dask.distributed`` task per case (imported only when asked for).

``--scheduler tcp://HOST:PORT`` uses a running Dask scheduler (``dask scheduler`` + ``dask worker`` on the nodes);
``--scheduler local:N`` starts N worker processes on this machine. Each task runs
:func:`MRSynthLib.commands.batch_case.run_case`, the function of the local batch, on a worker that loads the bundle once per
process from the client's (resolved) bundle path and refuses to run when its sha256 differs from the client's.
Results stream back as cases finish. A case whose worker dies is rerun elsewhere by the scheduler, at most
``allowed-failures`` more times (``--worker-retries`` for local clusters), then recorded as failed; a case that fails
by itself returns a ``failed`` row and is never retried.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from MRSynthLib.commands.batch_case import CaseSettings, CaseTask, remove_stale_temps, row, run_case
from MRSynthLib.errors import BundleError, MRSynthError

DASK_VERSION = "2026.8.0"
"""The pinned dask / distributed release (requirements.lock)."""
INSTALL_HINT = f'pip install "dask[distributed]=={DASK_VERSION}"'
CONNECT_TIMEOUT_S = 10
WORKERS_TIMEOUT_S = 60
ONE_CASE_PER_WORKER_THREAD = {"distributed.scheduler.worker-saturation": 1.0}
"""Hand a worker a case only when a thread is free: a worker that dies then takes only the case it runs down with
it (Dask counts a death against every task assigned to the worker, queued ones included)."""
_ADDRESS = re.compile(r"(tcp|tls)://(\[[0-9a-fA-F:]+\]|[^\s/:\[\]]+):\d{1,5}")


@dataclass(frozen=True)
class ClusterConfig:
    """Where the cases run: ``address`` of a running scheduler, or ``workers`` local processes (address None)."""

    text: str
    address: str | None = None
    workers: int = 0
    worker_retries: int | None = None

    @classmethod
    def from_args(cls, scheduler: str | None, worker_retries: int | None = None) -> ClusterConfig:
        """Parse ``--scheduler`` and ``--worker-retries``; raises :class:`MRSynthError` naming the argument."""
        if scheduler is None:
            raise MRSynthError("--worker-retries needs --scheduler local:N: without --scheduler the cases run in this "
                               "process, where a crash stops the batch (rerun with --resume).")
        if worker_retries is not None and worker_retries < 0:
            raise MRSynthError(f"--worker-retries must be 0 or more, not {worker_retries}.")
        text = scheduler.strip()
        if text.startswith("local:"):
            count = text.removeprefix("local:")
            if not count.isdigit() or int(count) < 1:
                raise MRSynthError(f"--scheduler {text}: the number of local worker processes must be a whole "
                                   f"number of at least 1: use e.g. --scheduler local:2.")
            return cls(text, None, int(count), worker_retries)
        if _ADDRESS.fullmatch(text):
            if worker_retries is not None:
                raise MRSynthError(
                    "--worker-retries applies to --scheduler local:N only: a running scheduler reruns a case whose "
                    "worker died as often as its own setting allows; start it with "
                    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=N dask scheduler.")
            return cls(text, text)
        raise MRSynthError(f"--scheduler {text!r} is neither tcp://HOST:PORT (the address a running `dask scheduler` "
                           f"prints) nor local:N (N worker processes on this machine).")


def _distributed():
    """The ``distributed`` package, or one sentence saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise MRSynthError(f"--scheduler needs dask.distributed, which is not installed for {sys.executable}: "
                           f"{INSTALL_HINT}") from None
    return distributed


@contextlib.contextmanager
def open_client(config: ClusterConfig) -> Iterator[tuple[object, int | None]]:
    """A connected ``distributed.Client`` and how often a case whose worker died is rerun (None: unknown)."""
    distributed = _distributed()
    import dask

    if config.address is None:
        retries = config.worker_retries
        if retries is None:
            retries = int(dask.config.get("distributed.scheduler.allowed-failures"))
        scratch = tempfile.mkdtemp(prefix="mrsynth-dask-")  # workers' spill folders, removed afterwards
        try:
            with dask.config.set({**ONE_CASE_PER_WORKER_THREAD, "distributed.scheduler.allowed-failures": retries,
                                  "temporary-directory": scratch}), \
                    distributed.LocalCluster(n_workers=config.workers, threads_per_worker=1, processes=True,
                                             dashboard_address=None, local_directory=scratch,
                                             silence_logs=logging.ERROR) as cluster, \
                    distributed.Client(cluster) as client:
                yield client, retries
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    try:
        client = distributed.Client(config.address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as error:
        raise MRSynthError(
            f"--scheduler {config.address}: no Dask scheduler answered within {CONNECT_TIMEOUT_S} s "
            f"({type(error).__name__}): start one with `dask scheduler` and pass the address it prints, or use "
            f"--scheduler local:N.") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        except (OSError, TimeoutError):
            raise MRSynthError(f"--scheduler {config.address}: the scheduler has no workers after {WORKERS_TIMEOUT_S} "
                               f"s: start some with `dask worker {config.address}`.") from None
        yield client, _scheduler_retries(client)


def _scheduler_retries(client) -> int | None:
    with contextlib.suppress(Exception):  # run_on_scheduler may be disabled on a shared cluster
        return int(client.run_on_scheduler(_allowed_failures))
    return None


def _allowed_failures(dask_scheduler=None) -> int:
    return dask_scheduler.allowed_failures


def slots_by_host(client) -> dict[str, int]:
    """Task slots (worker threads) per host, to share each host's cores between the cases running on it."""
    slots: dict[str, int] = {}
    for worker in client.scheduler_info(n_workers=-1)["workers"].values():
        slots[worker["host"]] = slots.get(worker["host"], 0) + int(worker["nthreads"])
    return slots


def worker_threads(cores: int, host_slots: int) -> int:
    """Network threads per case: the host's cores divided by the cases it runs at once (at least 1)."""
    return max(1, cores // max(1, host_slots))


_BUNDLES: dict[str, object] = {}


def _worker_bundle(path: str, sha256: str, worker: str):
    """The bundle at ``path``, loaded (and verified) once per worker process, checked equal to the client's."""
    from MRSynthLib.models.bundle import load_bundle

    bundle = _BUNDLES.get(path)
    if bundle is None:
        try:
            bundle = _BUNDLES[path] = load_bundle(path)
        except MRSynthError as error:
            raise BundleError(f"Dask worker {worker} cannot load the model bundle {path}: {error} Workers must see "
                              f"the bundle at the client's path (a shared file system or the same copy on every "
                              f"node).") from None
    if bundle.sha256 != sha256:
        raise BundleError(f"the model bundle {path} on Dask worker {worker} has sha256 {bundle.sha256[:12]}, the "
                          f"client's has {sha256[:12]}: give every worker the same bundle files.")
    return bundle


def run_case_on_worker(task: CaseTask, settings: CaseSettings, bundle_path: str, bundle_sha256: str,
                       slots: dict[str, int]) -> dict:
    """The Dask task of one case: :func:`run_case` with this worker's bundle and thread share."""
    from distributed import get_worker

    from MRSynthLib.runtime.backends import available_cores

    worker = get_worker()
    try:
        bundle = _worker_bundle(bundle_path, bundle_sha256, worker.address)
    except MRSynthError as error:
        return row(task.case_id, "failed", str(error), " ".join(task.inputs))
    if settings.threads == 0:
        host = urlsplit(worker.address).hostname or ""
        settings = replace(settings, threads=worker_threads(available_cores(), slots.get(host, worker.state.nthreads)))
    task = replace(task, provenance={**task.provenance, "worker": worker.address, "threads": settings.threads})
    return run_case(task, settings, bundle)


def _lost(task: CaseTask, retries: int | None) -> dict:
    """The row of a case the scheduler gave up on; no attempt of it runs any more, so the temp file of a write
    its last worker was killed in is dropped (finished files stay complete; ``--resume`` redoes the case)."""
    remove_stale_temps(task.plan.all_paths())
    times = {None: "as often as the scheduler allows", 0: "once"}.get(retries, f"{(retries or 0) + 1} times")
    return row(task.case_id, "failed",
               f"case {task.case_id}: the Dask worker running it died {times} (killed, or out of memory: give the "
               f"workers more memory or fewer threads each), so it was not retried again; rerun with --resume.",
               " ".join(task.inputs))


def run_on_cluster(client, retries: int | None, tasks: list[CaseTask], settings: CaseSettings, bundle,
                   config: ClusterConfig, progress) -> Iterator[dict]:
    """Submit one task per case to ``client`` (from :func:`open_client`) and yield each case's summary row as it
    finishes (any order)."""
    if not tasks:
        return
    distributed = _distributed()
    slots = slots_by_host(client)
    bundle_path = str(Path(bundle.path).resolve())
    record = {"runner": "dask", "scheduler": config.text, "client_bundle_sha256": bundle.sha256}
    batch = uuid.uuid4().hex[:8]  # keys mrsynth-case-<batch>-<case>: one Dask task group, so the cases are queued
    submitted = client.map(run_case_on_worker, [replace(task, provenance=record) for task in tasks],
                           key=[f"mrsynth-case-{batch}-{task.case_id}" for task in tasks], pure=False,
                           settings=settings, bundle_path=bundle_path, bundle_sha256=bundle.sha256, slots=slots)
    futures = dict(zip(submitted, tasks))
    try:
        for done, future in enumerate(distributed.as_completed(futures), start=1):
            task = futures[future]
            try:
                result = future.result()
            except distributed.KilledWorker:
                result = _lost(task, retries)
            except Exception as error:  # noqa: BLE001 - a lost or unpicklable task fails its case only
                result = row(task.case_id, "failed", f"unexpected {type(error).__name__}: {error}",
                             " ".join(task.inputs))
            progress(f"case {task.case_id} {result['status']}", done / len(tasks))
            yield result
    finally:
        client.cancel(list(futures))
