"""Choosing the inference backend: onnxruntime on the CPU when the bundle has ONNX graphs, torch otherwise.

``auto``: CUDA requested or available → torch; else onnxruntime when the bundle ships ONNX graphs and
onnxruntime is installed; else torch (CPU).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from MRSynthLib.models.bundle import Bundle
from MRSynthLib.errors import MRSynthError

BACKENDS = ("auto", "torch", "onnx")


def _torch_cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def choose_backend(bundle: Bundle, backend: str = "auto", device: str = "auto",
                   has_graphs: Callable[[Bundle], bool] | None = None) -> str:
    """Resolve ``backend`` (auto / torch / onnx) for ``bundle`` and ``device`` (auto / cpu / cuda): ``auto`` is torch
    for CUDA, else onnxruntime when ``has_graphs(bundle)`` (default: the fusion graphs) and onnxruntime is installed,
    else torch."""
    from MRSynthLib.runtime.onnx_backend import has_onnx_parts, onnxruntime_available

    if backend not in BACKENDS:
        raise MRSynthError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}.")
    if backend == "onnx" and device == "cuda":
        raise MRSynthError("--backend onnx runs on the CPU only: use --backend torch for --device cuda.")
    if backend != "auto":
        return backend
    if device == "cuda" or (device == "auto" and _torch_cuda_available()):
        return "torch"
    if (has_graphs or has_onnx_parts)(bundle) and onnxruntime_available():
        return "onnx"
    return "torch"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def effective_threads(threads: int) -> int:
    """``threads`` capped at :func:`available_cores` (more threads than cores measured up to 28x slower); 0 stays 0."""
    return min(threads, available_cores()) if threads > 0 else threads


def load_engine(bundle: Bundle, backend: str = "auto", device: str = "auto", threads: int = 0):
    """The loaded :class:`MRSynthLib.runtime.inference.Engine` for this bundle (cached per process)."""
    chosen = choose_backend(bundle, backend, device)
    if threads < 0:
        raise MRSynthError(f"--threads must be 0 (library default) or a positive number, not {threads}.")
    threads = effective_threads(threads)
    if chosen == "onnx":
        from MRSynthLib.runtime.onnx_backend import load_engine as load_onnx

        return load_onnx(bundle, threads)
    try:
        import torch
    except ImportError:
        raise MRSynthError(
            f"Bundle {bundle.card.name} needs PyTorch here (it has no ONNX graphs, or --backend torch was given): "
            f"pip install torch, or add ONNX graphs with `mrsynth-train export-onnx`."
        ) from None
    if threads > 0:
        torch.set_num_threads(threads)
    from MRSynthLib.runtime.torch_backend import load_engine as load_torch

    return load_torch(bundle, device)
