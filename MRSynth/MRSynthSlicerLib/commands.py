"""The command line of one child-process synthesis: ``<python> -m MRSynthLib.commands.cli synthesize ... --progress jsonl``.

Inside 3D Slicer ``<python>`` is ``PythonSlicer`` (Slicer's Python without the application); elsewhere
(tests, plain Python) it is the running interpreter. The child finds ``MRSynthLib`` through ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from MRSynthLib.contrasts import canonical_contrast

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "onnx", "torch")
EXCHANGE_SUFFIX = ".nrrd"  # uncompressed NRRD: fast to write and read, keeps the full geometry


@dataclass(frozen=True)
class SynthesisOptions:
    """What the user chose besides the input volumes.

    Attributes:
        target: contrast to synthesize (canonical name or alias).
        model: bundle name or folder; ``None`` = the library's default bundle.
        device: ``auto``, ``cpu`` or ``cuda``.
        backend: ``auto``, ``onnx`` or ``torch`` (passed to the child only when not ``auto``).
        samples: 1 = deterministic only; N >= 2 adds an uncertainty map from N stochastic passes.
        seed: seed of the stochastic passes.
        contributions: also write one contribution map per input.
        register: register inputs on other grids to the first one (else only resample).
    """

    target: str
    model: str | None = None
    device: str = "auto"
    backend: str = "auto"
    samples: int = 1
    seed: int = 0
    contributions: bool = True
    register: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", canonical_contrast(self.target))
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or not 1 <= self.samples <= 64:
            raise ValueError(f"samples must be an integer from 1 to 64, not {self.samples!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, not {self.seed!r}")


@dataclass(frozen=True)
class OutputFiles:
    """Where the child writes its results (each image with a ``.json`` sidecar beside it)."""

    synthetic: Path
    uncertainty: Path | None
    contributions_dir: Path | None

    @classmethod
    def in_folder(cls, folder: str | os.PathLike, options: SynthesisOptions) -> OutputFiles:
        folder = Path(folder)
        return cls(
            synthetic=folder / f"{options.target}_synthetic{EXCHANGE_SUFFIX}",
            uncertainty=folder / f"{options.target}_uncertainty{EXCHANGE_SUFFIX}" if options.samples >= 2 else None,
            contributions_dir=folder / "contributions" if options.contributions else None,
        )

    def contribution(self, contrast: str) -> Path:
        """The contribution map of one input (the naming of ``MRSynthLib.commands.outputs.plan_outputs``)."""
        if self.contributions_dir is None:
            raise ValueError("these outputs include no contribution maps")
        return self.contributions_dir / f"contribution_{contrast}{EXCHANGE_SUFFIX}"

    @staticmethod
    def sidecar(image_path: Path) -> Path:
        return image_path.with_name(image_path.name[: -len(EXCHANGE_SUFFIX)] + ".json")


def inside_slicer_application() -> bool:
    """True when running inside the 3D Slicer application (not PythonSlicer, not ``slicer-core``)."""
    try:
        import slicer
    except ImportError:
        return False
    return getattr(slicer, "app", None) is not None


def python_executable(executable: str = sys.executable, in_slicer: bool | None = None, which=shutil.which) -> str:
    """The interpreter for the child: ``PythonSlicer`` inside Slicer, else the running Python.

    ``PythonSlicer`` is on ``PATH`` inside the application; from a Slicer Python console it sits next
    to ``sys.executable``.
    """
    in_slicer = inside_slicer_application() if in_slicer is None else in_slicer
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    if in_slicer:
        found = which("PythonSlicer")
        if found:
            return found
    sibling = Path(executable).with_name(name)
    if sibling.is_file():
        return str(sibling)
    return executable


def library_root() -> Path:
    """The folder holding the ``MRSynthLib`` package (the extension folder, or the repository root)."""
    import MRSynthLib

    return Path(MRSynthLib.__file__).resolve().parent.parent


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with MRSynthLib importable and unbuffered output."""
    env = dict(os.environ if base is None else base)
    root = str(library_root())
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in paths if p != root])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def synthesize_argv(python: str, inputs: dict[str, Path], outputs: OutputFiles, options: SynthesisOptions) -> list[str]:
    """Argument list of ``MRSynthLib.commands.cli synthesize``; the first input is the reference grid."""
    if not inputs:
        raise ValueError("inputs must name at least one contrast file, not be empty")
    argv = [python, "-m", "MRSynthLib.commands.cli", "synthesize"]
    for contrast, path in inputs.items():
        argv += ["--input", f"{canonical_contrast(contrast)}={path}"]
    argv += ["--target", options.target, "--output", str(outputs.synthetic)]
    if options.model:
        argv += ["--model", str(options.model)]
    argv += ["--device", options.device, "--seed", str(options.seed), "--samples", str(options.samples)]
    if options.backend != "auto":
        argv += ["--backend", options.backend]
    if outputs.uncertainty is not None:
        argv += ["--uncertainty", str(outputs.uncertainty)]
    if outputs.contributions_dir is not None:
        argv += ["--contributions-dir", str(outputs.contributions_dir)]
    if not options.register:
        argv.append("--no-register")
    argv += ["--progress", "jsonl"]
    return argv
