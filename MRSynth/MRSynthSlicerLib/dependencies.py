"""Which Python packages a synthesis needs inside Slicer, and installing them after one confirmation.

Rules (Slicer's Python is shared by every extension):

* SimpleITK, numpy and torch are never installed or replaced by MRSynth (:data:`PROTECTED_PACKAGES`):
  Slicer ships its own SimpleITK and numpy, and torch comes only from the PyTorch extension, which
  picks the build that matches the GPU driver. Every pip call gets a constraints file pinning the
  installed versions of these packages, so pip fails instead of replacing them.
* CPU inference of a bundle with ONNX graphs needs only onnxruntime.
* torch is requested only when the run needs it: a GPU run (device CUDA, or Auto where an installed torch sees a
  GPU), or a bundle without ONNX graphs; monai and safetensors only with torch.
* A regression bundle (the classical baseline, numpy trees) needs only safetensors, on the CPU.

The Slicer-specific actions (dialog, PyTorch extension, pip) are behind the :class:`Installer`
protocol, implemented in ``MRSynth.py``; everything here is testable without Slicer.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Protocol

PROTECTED_PACKAGES: tuple[str, ...] = ("SimpleITK", "numpy", "torch")


@dataclass(frozen=True)
class Requirement:
    """A package and the versions that satisfy it: ``minimum <= version < below``."""

    name: str
    minimum: str | None = None
    below: str | None = None

    def __str__(self) -> str:
        parts = ([f">={self.minimum}"] if self.minimum else []) + ([f"<{self.below}"] if self.below else [])
        return self.name + ",".join(parts)


ONNX_REQUIREMENTS = (Requirement("onnxruntime", "1.18"),)
TORCH_REQUIREMENTS = (Requirement("monai", "1.6", "1.7"), Requirement("safetensors", "0.4"))
NUMPY_REQUIREMENTS = (Requirement("safetensors", "0.4"),)  # regression bundles: numpy trees, weights in safetensors
NUMPY_METHODS = ("regression",)
"""Bundle methods that run in numpy on the CPU (no onnxruntime, no torch)."""
COMMON_REQUIREMENTS = (Requirement("scipy"),)  # metrics of the Compare panel; bundled with Slicer
TORCH_VERSION_REQUIREMENT = ">=2.4"


class DependencyError(Exception):
    """The packages a run needs are missing and cannot be installed here; the message says what to do."""


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (from its metadata, without importing it), or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    """``"1.18.0rc1"`` → ``(1, 18, 0)``: the numeric release part, for ordering."""
    numbers = []
    for part in version.split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
    return tuple(numbers)


def satisfied(requirement: Requirement, version: str | None) -> bool:
    """True when ``version`` (None = not installed) meets ``requirement``."""
    if version is None:
        return False
    if requirement.minimum and _release(version) < _release(requirement.minimum):
        return False
    if requirement.below and _release(version) >= _release(requirement.below):
        return False
    return True


@dataclass(frozen=True)
class DependencyPlan:
    """What one run still needs.

    Attributes:
        backend: ``onnx``, ``torch`` or ``numpy`` (regression bundles), the backend the plan prepares for.
        missing: pip requirements not yet satisfied (never a protected package).
        needs_torch: torch is missing and must come from the PyTorch extension.
        constraints: ``name==version`` pins of the installed protected packages.
    """

    backend: str
    missing: tuple[Requirement, ...]
    needs_torch: bool
    constraints: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing and not self.needs_torch

    def summary(self) -> str:
        """The confirmation text: what will be installed, and what will not be touched."""
        lines = ["MRSynth needs these Python packages, which are not installed yet:"]
        if self.needs_torch:
            lines.append(f"- PyTorch (torch{TORCH_VERSION_REQUIREMENT}), installed by the PyTorch extension")
        lines += [f"- {requirement}" for requirement in self.missing]
        lines.append("Slicer's own SimpleITK, numpy and torch are never replaced. Install now?")
        return "\n".join(lines)

    def constraints_text(self) -> str:
        return "".join(f"{pin}\n" for pin in self.constraints)


def cuda_available() -> bool:
    """Whether an installed torch sees a GPU (False without torch; imports torch only when it is installed)."""
    if installed_version("torch") is None:
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def plan_dependencies(device: str = "auto", backend: str = "auto", model_has_onnx: bool = True,
                      version_of: Callable[[str], str | None] = installed_version, model_method: str = "",
                      gpu_available: Callable[[], bool] = cuda_available) -> DependencyPlan:
    """The packages a run with ``device`` (auto/cpu/cuda) and ``backend`` (auto/onnx/torch) still needs.

    Mirrors the library's backend choice (``MRSynthLib.runtime.backends.choose_backend``): numpy for a regression bundle
    (``model_method``); torch for device ``cuda``, or ``auto`` when torch is installed and sees a GPU; else ONNX on
    the CPU when the bundle has ONNX graphs, else torch. Only the chosen backend's packages are planned: an ONNX run
    on the CPU asks for onnxruntime alone, even where torch is installed.

    Raises:
        DependencyError: for a combination that cannot work (ONNX on the GPU, ONNX without graphs, a
            regression bundle on the GPU or with a network backend).
    """
    if model_method in NUMPY_METHODS:
        if device == "cuda":
            raise DependencyError(f"A {model_method} model runs on the CPU only: choose device CPU or Auto.")
        if backend not in ("auto", "numpy"):
            raise DependencyError(f"A {model_method} model runs in numpy, not {backend}: choose backend Auto.")
        backend = "numpy"
    elif backend == "onnx" and device == "cuda":
        raise DependencyError("The ONNX backend runs on the CPU only: choose device CPU or Auto, or backend torch.")
    if backend == "onnx" and not model_has_onnx:
        raise DependencyError("This model has no ONNX graphs: choose backend Auto or torch, or another model.")
    torch_version = version_of("torch")
    if backend == "auto":
        gpu = device == "cuda" or (device == "auto" and torch_version is not None and gpu_available())
        backend = "onnx" if model_has_onnx and not gpu else "torch"
    backend_requirements = {"onnx": ONNX_REQUIREMENTS, "numpy": NUMPY_REQUIREMENTS}.get(backend, TORCH_REQUIREMENTS)
    wanted = list(COMMON_REQUIREMENTS) + list(backend_requirements)
    protected = {name.lower() for name in PROTECTED_PACKAGES}
    missing = tuple(r for r in dict.fromkeys(wanted)
                    if r.name.lower() not in protected and not satisfied(r, version_of(r.name)))
    constraints = tuple(f"{name}=={version}" for name in PROTECTED_PACKAGES
                        if (version := version_of(name)) is not None)
    return DependencyPlan(backend, missing, backend == "torch" and torch_version is None, constraints)


def slicer_pip_install(requirements: list[str], constraints_file: Path, slicer_util,
                       import_module: Callable[[str], object] = importlib.import_module) -> str:
    """Install ``requirements`` with Slicer's own installer; returns which one ran.

    Slicer >= 5.12: ``slicer.packaging.pip_ensure(requirements, constraints=..., prompt_install=False,
    requester=..., skip_in_testing=False)`` (MRSynth has asked the user already; the self-test needs the packages
    too). The module is imported here: ``slicer.packaging`` is not an attribute of ``slicer`` until something
    imports it. Slicer 5.10: ``slicer.util.pip_install(["-c", constraints, *requirements])`` (its one argument
    may be a list of pip arguments).
    """
    try:
        packaging = import_module("slicer.packaging")
    except ImportError:
        packaging = None
    if packaging is not None and callable(getattr(packaging, "pip_ensure", None)):
        packaging.pip_ensure(list(requirements), constraints=str(constraints_file), prompt_install=False,
                             requester="MRSynth", skip_in_testing=False)
        return "slicer.packaging.pip_ensure"
    slicer_util.pip_install(["-c", str(constraints_file), *requirements])
    return "slicer.util.pip_install"


class Installer(Protocol):
    """The Slicer side of an installation (see ``MRSynth.py``)."""

    def confirm(self, text: str) -> bool: ...

    def install_torch(self) -> None: ...

    def pip_install(self, requirements: list[str], constraints_file: Path) -> None: ...


class SlicerInstaller:
    """:class:`Installer` with Slicer's dialogs, the PyTorch extension and Slicer's pip (imported when called, so this
    module loads outside Slicer)."""

    def __init__(self, import_module: Callable[[str], object] = importlib.import_module) -> None:
        self._import = import_module

    def confirm(self, text: str) -> bool:
        util, i18n = self._import("slicer.util"), self._import("slicer.i18n")
        return util.confirmOkCancelDisplay(text, windowTitle=i18n.tr("MRSynth - install Python packages"))

    def install_torch(self) -> None:
        try:
            torch_utils = self._import("PyTorchUtils")
        except ImportError:
            raise DependencyError(
                "PyTorch is needed for this run: install the PyTorch extension (Extensions Manager), restart Slicer"
                " and press Apply again, or choose device CPU with a model that has ONNX graphs.") from None
        torch = torch_utils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                             torchVersionRequirement=TORCH_VERSION_REQUIREMENT)
        if torch is None:
            raise DependencyError("PyTorch could not be installed: install it in the PyTorch Utils module, then retry.")

    def pip_install(self, requirements: list[str], constraints_file: Path) -> None:
        # slicer.packaging on 5.12+, else slicer.util
        slicer_pip_install(requirements, constraints_file, self._import("slicer.util"), self._import)


def ensure_dependencies(plan: DependencyPlan, installer: Installer, work_dir: Path) -> bool:
    """Install what ``plan`` lists after one confirmation; returns True when anything was installed.

    Raises:
        DependencyError: when the user declines (nothing is installed then).
    """
    if plan.complete:
        return False
    if not installer.confirm(plan.summary()):
        raise DependencyError("MRSynth cannot run without its Python packages: press Apply again to install them.")
    if plan.needs_torch:
        installer.install_torch()
    if plan.missing:
        work_dir.mkdir(parents=True, exist_ok=True)
        constraints_file = work_dir / "mrsynth-constraints.txt"
        constraints_file.write_text(plan.constraints_text(), encoding="utf-8")
        installer.pip_install([str(r) for r in plan.missing], constraints_file)
    return True
