"""One synthesis of MRML volumes: write the inputs, run the command line in a child process, import the results.

>>> run = SynthesisRun(scene, {"t1": t1Node, "t2": t2Node}, SynthesisOptions("t1ce", samples=8))  # doctest: +SKIP
>>> run.start(); outcome = run.wait()        # the GUI calls run.poll() from a timer instead
>>> nodes = run.import_results()             # "t1ce (synthetic, <model>)" + maps, in the inputs' study
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from MRSynthLib.contrasts import canonical_contrast
from MRSynthSlicerLib.commands import (
    EXCHANGE_SUFFIX,
    OutputFiles,
    SynthesisOptions,
    child_environment,
    python_executable,
    synthesize_argv,
)
from MRSynthSlicerLib.hierarchy import parent_item_of
from MRSynthSlicerLib.process import ChildProcess, Outcome
from MRSynthSlicerLib.results import SynthesisNodes, import_outputs
from MRSynthSlicerLib.volumes import image_from_volume_node


def write_input_volumes(inputs: dict[str, object], folder: Path) -> dict[str, Path]:
    """Each input node as ``<contrast>.nrrd`` in ``folder``; returns contrast → file, in input order."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for contrast, node in inputs.items():
        path = folder / f"{canonical_contrast(contrast)}{EXCHANGE_SUFFIX}"
        sitk.WriteImage(image_from_volume_node(node), str(path), False)
        files[canonical_contrast(contrast)] = path
    return files


class SynthesisRun:
    """See the module docstring. ``work_dir`` (default: a new temporary folder) holds the exchanged files."""

    def __init__(self, scene, inputs: dict[str, object], options: SynthesisOptions,
                 work_dir: str | Path | None = None, python: str | None = None) -> None:
        if not inputs:
            raise ValueError("inputs must map at least one contrast to a volume node, not be empty")
        self.scene = scene
        self.inputs = {canonical_contrast(c): node for c, node in inputs.items()}
        self.options = options
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="MRSynth-"))
        self.python = python or python_executable()
        self.outputs = OutputFiles.in_folder(self.work_dir / "outputs", options)
        self.child: ChildProcess | None = None

    def command(self) -> list[str]:
        """The child's argument list (valid once the inputs are written by :meth:`start`)."""
        files = {c: self.work_dir / "inputs" / f"{c}{EXCHANGE_SUFFIX}" for c in self.inputs}
        return synthesize_argv(self.python, files, self.outputs, self.options)

    def start(self) -> SynthesisRun:
        write_input_volumes(self.inputs, self.work_dir / "inputs")
        self.child = ChildProcess(self.command(), env=child_environment(), cwd=str(self.work_dir)).start()
        return self

    def poll(self):
        return self.child.poll() if self.child else []

    @property
    def outcome(self) -> Outcome | None:
        return self.child.outcome if self.child else None

    def wait(self, timeout: float | None = None) -> Outcome:
        return self.child.wait(timeout)

    def cancel(self) -> Outcome:
        return self.child.cancel()

    def import_results(self) -> SynthesisNodes:
        """Create the result nodes in the study of the first input (only after success)."""
        outcome = self.outcome
        if outcome is None or not outcome.succeeded:
            state = "still running" if outcome is None else outcome.status
            raise RuntimeError(f"Results can only be imported after a successful run, this one is {state}.")
        first_input = next(iter(self.inputs.values()))
        names = {contrast: node.GetName() for contrast, node in self.inputs.items()}
        return import_outputs(self.scene, self.outputs, names, parent_item_of(self.scene, first_input))

    def cleanup(self) -> None:
        """Delete the exchanged files (only a temporary folder this run created itself)."""
        if self._own_work_dir and (self.child is None or self.outcome is not None):
            shutil.rmtree(self.work_dir, ignore_errors=True)
