"""``mrsynth batch``: every case of a dataset folder; one bad case never stops the others.

Per case ``<output-dir>/<case>/<target>_synthetic.nii.gz`` (+ uncertainty, contributions) and a
``summary.csv`` with one row per case (status ``ok``, ``skipped`` or ``failed`` and why), kept up to date as
cases finish (:mod:`MRSynthLib.commands.batch_summary`). Exit code 0 when no case failed, 1 otherwise. The cases run in
this process, or with ``--scheduler`` on a Dask cluster (:mod:`MRSynthLib.commands.batch_dask`); either way each one goes
through :func:`MRSynthLib.commands.batch_case.run_case`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from MRSynthLib.commands.batch_case import SUMMARY_FIELDS, CaseSettings, CaseTask, case_outputs, plan_case, row, run_case
from MRSynthLib.contrasts import canonical_contrast

__all__ = ["SUMMARY_FIELDS", "case_outputs", "case_settings", "run_batch"]


def _check_output_dir(output_dir: Path) -> None:
    """Refuse an ``--output-dir`` that is a file or cannot be created/written, before any case is computed."""
    from MRSynthLib.files.atomic import check_writable
    from MRSynthLib.errors import OutputError

    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"--output-dir {output_dir} is a file, not a folder: choose a folder path.")
    check_writable(output_dir / "summary.csv", overwrite=True)


def case_settings(args) -> CaseSettings:
    """The per-case synthesis options of parsed ``mrsynth batch`` arguments."""
    return CaseSettings(target=canonical_contrast(args.target), samples=args.samples, seed=args.seed,
                        device=args.device, backend=args.backend, threads=args.threads, window=args.window,
                        screen=not getattr(args, "no_screening", False),
                        register=False if args.no_register else None, contributions=args.contributions)


def _run_here(tasks: list[CaseTask], settings: CaseSettings, bundle, progress) -> Iterator[dict]:
    """Every task in this process, one after the other."""
    for number, task in enumerate(tasks):
        progress(f"case {task.case_id}", number / len(tasks))
        yield run_case(task, settings, bundle)


def _plan(args, output_dir: Path, cases, broken, bundle, settings: CaseSettings, summary,
          on_cluster: bool) -> list[CaseTask]:
    """The tasks to run; rows of cases that need no run (unreadable, outside ``--output-dir``, complete on
    ``--resume``) go to ``summary`` right away."""
    for case_id, reason in broken:
        summary.add(row(case_id, "failed", reason))
    tasks = []
    for case in cases:
        planned = plan_case(case, output_dir, settings, bundle.card.input_contrasts, overwrite=args.overwrite,
                            resume=args.resume, retry_replaces=on_cluster)
        if isinstance(planned, CaseTask):
            tasks.append(planned)
        else:
            summary.add(planned)
    return tasks


def run_batch(args) -> int:
    """Run the batch described by parsed CLI ``args``; returns the exit code.

    ``--scheduler`` (tcp://HOST:PORT or local:N) runs the cases on a Dask cluster (:mod:`MRSynthLib.commands.batch_dask`);
    without it they run in this process. Both call :func:`MRSynthLib.commands.batch_case.run_case` per case.
    """
    from MRSynthLib.commands.batch_summary import SummaryWriter
    from MRSynthLib.files.cases import discover_cases
    from MRSynthLib.progress import Progress
    from MRSynthLib.models.registry import resolve_model

    args.samples = 1 if args.samples is None else args.samples  # `--samples` left out: deterministic
    cluster = None
    if args.scheduler is not None or args.worker_retries is not None:
        from MRSynthLib.commands.batch_dask import ClusterConfig

        cluster = ClusterConfig.from_args(args.scheduler, args.worker_retries)  # before any work
    output_dir = Path(args.output_dir)
    _check_output_dir(output_dir)  # before any case runs
    bundle = resolve_model(args.model)
    settings = case_settings(args)
    broken: list[tuple[str, str]] = []  # case folders that cannot be read as a case fail alone
    cases = discover_cases(args.input_dir, args.layout, broken=broken)
    progress = Progress(args.progress)
    summary = SummaryWriter(output_dir / "summary.csv")
    with contextlib.ExitStack() as stack:
        if cluster is not None:  # connect (or start the local cluster) before anything is written
            from MRSynthLib.commands.batch_dask import open_client, run_on_cluster

            client, retries = stack.enter_context(open_client(cluster))
        try:
            tasks = _plan(args, output_dir, cases, broken, bundle, settings, summary, cluster is not None)
            if cluster is None:
                results = _run_here(tasks, settings, bundle, progress)
            else:
                results = run_on_cluster(client, retries, tasks, settings, bundle, cluster, progress)
            for result in results:
                summary.add(result)
        finally:
            summary.flush()  # also when interrupted: every finished case is in summary.csv
    failed = summary.count("failed")
    progress.done(summary=str(summary.path), failed=failed, cases=len(summary.rows))
    if args.progress != "jsonl":
        print(f"{len(summary.rows)} cases: {summary.count('ok')} ok, {summary.count('skipped')} skipped, {failed} "
              f"failed; summary: {summary.path}")
        for r in sorted(summary.rows, key=lambda r: r["case"]):
            if r["status"] == "failed":
                print(f"  failed {r['case']}: {r['message']}")
    return 1 if failed else 0
