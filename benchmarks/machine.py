"""What the benchmark ran on: CPU model, cores, memory, load, library versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "onnxruntime", "onnx", "SimpleITK", "numpy", "monai")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


SIMD_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def simd_flags() -> list[str]:
    """The vector instruction sets (of :data:`SIMD_FLAGS`) the CPU reports; they set convolution throughput."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in SIMD_FLAGS if flag in present]
    except OSError:
        pass
    return []


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def memory_gib() -> float:
    try:
        import psutil

        return psutil.virtual_memory().total / 2**30
    except ImportError:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def load_average() -> tuple[float, float, float]:
    """1-, 5- and 15-minute load averages (runnable processes, all users)."""
    return tuple(round(v, 2) for v in os.getloadavg())


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def describe() -> dict:
    """JSON-able description of this machine now."""
    return {"cpu": cpu_model(), "simd": simd_flags(), "logical_cpus": os.cpu_count(), "usable_cores": usable_cores(),
            "memory_gib": round(memory_gib(), 1), "os": platform.platform(), "load_average": load_average(),
            "versions": versions()}
