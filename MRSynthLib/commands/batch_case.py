"""One case of ``mrsynth batch``: the function every batch runner calls (in this process or on a Dask worker).

:func:`plan_case` turns a discovered case into a :class:`CaseTask` (inputs, planned outputs, whether they may be
replaced) or a finished summary row (``skipped`` on ``--resume``, ``failed`` for a name outside ``--output-dir``);
:func:`run_case` synthesizes one task and returns its summary row. A failure of any kind becomes a ``failed`` row
with one sentence, never an exception, so one bad case cannot stop the others (nor be retried forever on a cluster).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from MRSynthLib.contrasts import CANONICAL_CONTRASTS
from MRSynthLib.errors import MRSynthError
from MRSynthLib.commands.outputs import OutputPlan
from MRSynthLib.files.path_guard import check_outputs, image_reads

SUMMARY_FIELDS = ("case", "status", "seconds", "inputs", "output", "message")


@dataclass(frozen=True)
class CaseSettings:
    """The synthesis options shared by every case of one batch (from the ``mrsynth batch`` arguments)."""

    target: str
    samples: int = 1
    seed: int = 0
    device: str = "auto"
    backend: str = "auto"
    threads: int = 0
    window: int | None = None
    screen: bool = True
    register: bool | None = None
    contributions: bool = False


@dataclass(frozen=True)
class CaseTask:
    """One case to synthesize: ``inputs`` (contrast -> file), the planned outputs, whether existing files at
    those paths may be replaced (``--overwrite``, a partial case on ``--resume``, or a retry on a cluster), and
    whether temp files that a killed earlier write left there are dropped (``redo``: the same, or ``--resume``)."""

    case_id: str
    inputs: dict[str, Path]
    found: tuple[str, ...]
    plan: OutputPlan
    overwrite: bool = False
    redo: bool = False
    provenance: dict = field(default_factory=dict)


def case_folder(output_dir: Path, case_id: str) -> Path:
    """``output_dir / case_id``, refused (the case fails) when the name would lead outside ``output_dir``."""
    folder = output_dir / case_id
    inside = Path(os.path.realpath(output_dir)) in Path(os.path.realpath(folder)).parents
    if case_id in ("", ".", "..") or "/" in case_id or "\\" in case_id or not inside:
        raise MRSynthError(f"case name {case_id!r} would write outside --output-dir {output_dir}: rename the case folder.")
    return folder


def case_outputs(output_dir: Path, case_id: str, target: str, samples: int, inputs: list[str],
                 contributions: bool) -> OutputPlan:
    """``<output-dir>/<case>/<target>_synthetic.nii.gz`` (+ uncertainty, contribution maps)."""
    folder = output_dir / case_id
    return OutputPlan(
        synthetic=folder / f"{target}_synthetic.nii.gz",
        uncertainty=folder / f"{target}_uncertainty.nii.gz" if samples > 1 else None,
        contributions=({c: folder / "contributions" / f"contribution_{c}.nii.gz" for c in inputs}
                       if contributions else {}),
    )


def row(case_id: str, status: str, message: str = "", inputs: str = "", output: str = "", seconds: float = 0.0) -> dict:
    """One ``summary.csv`` row."""
    return {"case": case_id, "status": status, "seconds": seconds, "inputs": inputs, "output": output,
            "message": message}


def plan_case(case, output_dir: Path, settings: CaseSettings, input_contrasts: tuple[str, ...], *, overwrite: bool,
              resume: bool, retry_replaces: bool = False) -> CaseTask | dict:
    """A :class:`CaseTask` for ``case`` (:class:`MRSynthLib.files.cases.Case`), or its final row when nothing is to run.

    ``retry_replaces``: outputs absent now may be replaced later (a cluster reruns a case whose worker died after
    it wrote some of them); outputs that exist now are replaced only with ``overwrite`` or, partial, on ``resume``.
    """
    target = settings.target
    inputs = {c: Path(case.images[c]) for c in CANONICAL_CONTRASTS
              if c in case.images and c != target and c in input_contrasts}
    names = " ".join(inputs)
    try:
        case_folder(output_dir, case.case_id)
    except MRSynthError as error:
        return row(case.case_id, "failed", str(error), names)
    plan = case_outputs(output_dir, case.case_id, target, settings.samples, list(inputs), settings.contributions)
    existing = [p for p in plan.all_paths() if p.exists()]
    if resume and existing and len(existing) == len(plan.all_paths()):
        return row(case.case_id, "skipped", "outputs complete (resume)", names, str(plan.synthetic))
    replace = overwrite or (resume and bool(existing)) or (retry_replaces and not existing)
    return CaseTask(case.case_id, inputs, tuple(case.images), plan, replace, replace or resume)


def remove_stale_temps(paths) -> list[Path]:
    """Delete the hidden temp files that killed earlier writes left beside ``paths``
    (:func:`MRSynthLib.files.atomic.stale_temps`); called only for outputs that are being redone, where no other attempt
    is writing them. Returns what was removed."""
    from MRSynthLib.files.atomic import stale_temps

    removed = []
    for temp in (t for path in paths for t in stale_temps(path)):
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
            removed.append(temp)
    return removed


def run_case(task: CaseTask, settings: CaseSettings, bundle) -> dict:
    """Synthesize ``task`` with ``bundle`` (:class:`MRSynthLib.models.bundle.Bundle`) and write its outputs atomically;
    returns its summary row (``ok`` or ``failed`` with one sentence). Never raises for a problem of the case."""
    from MRSynthLib.commands.outputs import write_result
    from MRSynthLib.synthesis import synthesize

    start = time.perf_counter()
    names = " ".join(task.inputs)
    try:
        if not task.inputs:
            raise MRSynthError(
                f"case {task.case_id} has no usable input for target {settings.target} "
                f"(found {', '.join(task.found) or 'nothing'}; the model accepts "
                f"{', '.join(bundle.card.input_contrasts)}).")
        check_outputs(task.plan.roles(), image_reads(task.inputs, "input"))
        result = synthesize(task.inputs, settings.target, model=bundle, samples=settings.samples, seed=settings.seed,
                            device=settings.device, backend=settings.backend, threads=settings.threads,
                            window=settings.window, screen=settings.screen, register=settings.register,
                            contributions=settings.contributions)
        if task.provenance:
            result.provenance["batch"] = dict(task.provenance)
        if task.redo:
            remove_stale_temps(task.plan.all_paths())
        write_result(result, task.plan, overwrite=task.overwrite)
        outcome = row(task.case_id, "ok", "", names, str(task.plan.synthetic))
    except MRSynthError as error:
        outcome = row(task.case_id, "failed", str(error), names)
    except Exception as error:  # noqa: BLE001 - one broken case must not stop the batch
        outcome = row(task.case_id, "failed", f"unexpected {type(error).__name__}: {error}", names)
    outcome["seconds"] = round(time.perf_counter() - start, 2)
    return outcome
