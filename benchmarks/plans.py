"""What a benchmark run measures: the input cases, the configurations and the convolution probe.

``full_plan()`` is ``make bench`` (about 15 minutes on 2 cores); ``quick_plan()`` is the same machinery on
tiny volumes (seconds; used by the test suite to keep the benchmark working).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.inputs import CaseSpec, ExistingCase
from benchmarks.throughput import ConvProbe

REPO = Path(__file__).resolve().parents[1]
REAL_BRATS_CASE = REPO.parent / "shared" / "data" / "cases" / "brats-gli-00001"


@dataclass(frozen=True)
class RunConfig:
    """One measured configuration; each runs in its own fresh process."""

    case: str
    backend: str  # torch | onnx | numpy (regression bundles)
    samples: int
    threads: int
    window: int | None = None  # None = automatic sliding windows

    @property
    def label(self) -> str:
        window = "" if self.window is None else f", window {self.window}"
        return f"{self.case} {self.backend} {self.samples}s {self.threads}t{window}"


@dataclass(frozen=True)
class TargetSpec:
    """The issue's targets, checked on ``case`` with ``threads`` threads (a 2-core CPU)."""

    case: str = "brats"
    threads: int = 2
    end_to_end_s: float = 20.0
    peak_memory_bytes: float = 3e9
    uncertainty_ratio: float = 4.0
    samples: int = 8


@dataclass(frozen=True)
class BenchPlan:
    name: str
    cases: tuple[CaseSpec | ExistingCase, ...]
    runs: tuple[RunConfig, ...]
    probe: ConvProbe
    probe_threads: tuple[int, ...]
    targets: TargetSpec = field(default_factory=TargetSpec)
    timeout_s: float = 900.0


def _grid(case: str, backends, samples, threads, window=None) -> list[RunConfig]:
    return [RunConfig(case, b, s, t, window) for t in threads for b in backends for s in samples]


def full_plan(include_real: bool = True, backends: tuple[str, ...] = ("torch", "onnx")) -> BenchPlan:
    """``make bench``. ``backends``: those the bundle runs on (``("numpy",)`` for a regression bundle); the
    single-backend rows (8 samples on the head, the large volume) use the last one."""
    cases: list[CaseSpec | ExistingCase] = [
        CaseSpec("brats", (240, 240, 155), description="BraTS size: 240x240x155 at 1 mm, the three inputs on one grid"),
        CaseSpec("head", (256, 256, 192), flair_slice_mm=3.0,
                 description="whole head at 1 mm: 256x256x192; FLAIR on 3 mm axial slices (its own grid, registered)"),
        CaseSpec("large", (256, 256, 200), upsample=2,
                 description="512x512x400 at 0.5 mm (a 1 mm phantom of 256x256x200 resampled), the three inputs on one grid"),
    ]
    fast = backends[-1]
    runs = (_grid("brats", backends, (1, 8), (2,)) + _grid("brats", backends, (1,), (1,))
            + _grid("head", backends, (1,), (2,)) + [RunConfig("head", fast, 8, 2)])
    if include_real and REAL_BRATS_CASE.is_dir():
        cases.append(ExistingCase("brats-real", REAL_BRATS_CASE,
                                  "real BraTS 2023 case brats-gli-00001 (240x240x155 at 1 mm, int16, skull-stripped)"))
        runs += _grid("brats-real", backends, (1,), (2,))
    runs += [RunConfig("large", fast, 1, 2)]
    if fast != "numpy":  # sliding windows are a network setting
        runs += [RunConfig("large", fast, 1, 2, window=80)]
    return BenchPlan("full", tuple(cases), tuple(runs), ConvProbe(channels=32, edge=64, repeats=3), (1, 2))


def quick_plan(backends: tuple[str, ...] = ("onnx",)) -> BenchPlan:
    cases = (
        CaseSpec("tiny", (16, 20, 14), spacing=(2.0, 2.0, 2.0), description="16x20x14 at 2 mm"),
        CaseSpec("tiny-clinical", (16, 16, 12), spacing=(3.0, 3.0, 3.0), upsample=2, flair_slice_mm=4.5,
                 description="32x32x24 at 1.5 mm (upsampled), FLAIR on 4.5 mm slices (registered)"),
    )
    # onnxruntime only: a worker that imports torch and MONAI alone takes longer than the whole quick plan
    fast = backends[-1]
    runs = (RunConfig("tiny", fast, 1, 1), RunConfig("tiny", fast, 2, 1),
            RunConfig("tiny-clinical", fast, 2, 1, window=None if fast == "numpy" else 20))
    targets = TargetSpec(case="tiny", threads=1, samples=2)
    return BenchPlan("quick", cases, runs, ConvProbe(channels=16, edge=24, repeats=1), (1,), targets, timeout_s=120.0)
