"""``mrsynth batch``: every case of a dataset folder; one bad case never stops the others.

Per case ``<output-dir>/<case>/<target>_synthetic.nii.gz`` (+ uncertainty, contributions) and a
``summary.csv`` with one row per case (status ``ok``, ``skipped`` or ``failed`` and why). Exit code 0
when no case failed, 1 otherwise.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

from MRSynthLib.atomic import write_text
from MRSynthLib.contrasts import CANONICAL_CONTRASTS, canonical_contrast
from MRSynthLib.errors import MRSynthError
from MRSynthLib.path_guard import check_outputs, image_reads

SUMMARY_FIELDS = ("case", "status", "seconds", "inputs", "output", "message")


def case_outputs(output_dir: Path, case_id: str, target: str, samples: int, inputs: list[str], contributions: bool):
    from MRSynthLib.outputs import OutputPlan

    folder = output_dir / case_id
    return OutputPlan(
        synthetic=folder / f"{target}_synthetic.nii.gz",
        uncertainty=folder / f"{target}_uncertainty.nii.gz" if samples > 1 else None,
        contributions={c: folder / "contributions" / f"contribution_{c}.nii.gz" for c in inputs} if contributions else {},
    )


def _check_output_dir(output_dir: Path) -> None:
    """Refuse an ``--output-dir`` that is a file or cannot be created/written, before any case is computed."""
    from MRSynthLib.atomic import check_writable
    from MRSynthLib.errors import OutputError

    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"--output-dir {output_dir} is a file, not a folder: choose a folder path.")
    check_writable(output_dir / "summary.csv", overwrite=True)


def _case_folder(output_dir: Path, case_id: str) -> Path:
    """``output_dir / case_id``, refused (the case fails) when the name would lead outside ``output_dir``."""
    folder = output_dir / case_id
    inside = Path(os.path.realpath(output_dir)) in Path(os.path.realpath(folder)).parents
    if case_id in ("", ".", "..") or "/" in case_id or "\\" in case_id or not inside:
        raise MRSynthError(f"case name {case_id!r} would write outside --output-dir {output_dir}: rename the case folder.")
    return folder


def run_batch(args) -> int:
    """Run the batch described by parsed CLI ``args``; returns the exit code."""
    from MRSynthLib.cases import discover_cases
    from MRSynthLib.outputs import write_result
    from MRSynthLib.progress import Progress
    from MRSynthLib.registry import resolve_model
    from MRSynthLib.synthesis import synthesize

    args.samples = 1 if args.samples is None else args.samples  # `--samples` left out: deterministic
    _check_output_dir(Path(args.output_dir))  # before any case runs
    bundle = resolve_model(args.model)
    target = canonical_contrast(args.target)
    broken: list[tuple[str, str]] = []  # case folders that cannot be read as a case fail alone
    cases = discover_cases(args.input_dir, args.layout, broken=broken)
    progress = Progress(args.progress)
    rows = [{"case": case_id, "status": "failed", "seconds": 0.0, "inputs": "", "output": "", "message": reason}
            for case_id, reason in broken]
    failed = len(broken)
    for number, case in enumerate(cases):
        progress(f"case {case.case_id}", number / len(cases))
        start = time.perf_counter()
        inputs = {c: case.images[c] for c in CANONICAL_CONTRASTS
                  if c in case.images and c != target and c in bundle.card.input_contrasts}
        row = {"case": case.case_id, "inputs": " ".join(inputs), "output": "", "message": ""}
        try:
            _case_folder(Path(args.output_dir), case.case_id)
        except MRSynthError as error:
            failed += 1
            rows.append({**row, "status": "failed", "seconds": 0.0, "message": str(error)})
            continue
        plan = case_outputs(Path(args.output_dir), case.case_id, target, args.samples, list(inputs), args.contributions)
        existing = [p for p in plan.all_paths() if p.exists()]
        if args.resume and existing and len(existing) == len(plan.all_paths()):
            row.update(status="skipped", seconds=0.0, output=str(plan.synthetic), message="outputs complete (resume)")
            rows.append(row)
            continue
        try:
            if not inputs:
                raise MRSynthError(
                    f"case {case.case_id} has no usable input for target {target} "
                    f"(found {', '.join(case.images) or 'nothing'}; the model accepts {', '.join(bundle.card.input_contrasts)})."
                )
            check_outputs(plan.roles(), image_reads(inputs, "input"))
            overwrite = args.overwrite or (args.resume and bool(existing))  # resume redoes partial cases
            result = synthesize(inputs, target, model=bundle, samples=args.samples, seed=args.seed, device=args.device, backend=args.backend, threads=args.threads, window=args.window, screen=not getattr(args, "no_screening", False),
                                register=False if args.no_register else None, contributions=args.contributions)
            write_result(result, plan, overwrite=overwrite)
            row.update(status="ok", output=str(plan.synthetic))
        except MRSynthError as error:
            failed += 1
            row.update(status="failed", message=str(error))
        except Exception as error:  # noqa: BLE001 - one broken case must not stop the batch
            failed += 1
            row.update(status="failed", message=f"unexpected {type(error).__name__}: {error}")
        row["seconds"] = round(time.perf_counter() - start, 2)
        rows.append(row)
    rows.sort(key=lambda r: r["case"])
    summary = Path(args.output_dir) / "summary.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(summary, buffer.getvalue(), overwrite=True)
    progress.done(summary=str(summary), failed=failed, cases=len(rows))
    if args.progress != "jsonl":
        ok = sum(r["status"] == "ok" for r in rows)
        skipped = sum(r["status"] == "skipped" for r in rows)
        print(f"{len(rows)} cases: {ok} ok, {skipped} skipped, {failed} failed; summary: {summary}")
        for r in rows:
            if r["status"] == "failed":
                print(f"  failed {r['case']}: {r['message']}")
    return 1 if failed else 0
