"""Engines for the generative translator kinds (:data:`MRSynthLib.methods.translators.registry.KINDS`).

A bundle of one of these kinds is a set of named graphs (:data:`KIND_GRAPHS`, from the registry). Both engines expose
``run(graph, **inputs) -> tuple of numpy arrays`` plus ``encode``/``decode``; everything else (windows,
sampling loops, uncertainty, contributions) is numpy code in :mod:`MRSynthLib.methods.translators` and
:mod:`MRSynthLib.methods.translators.driver`, shared by both backends.

- :class:`TorchGraphEngine` builds the parts from the card and loads their safetensors (CPU or CUDA);
- :class:`OnnxGraphEngine` runs the exported ``onnx/<graph>.onnx`` files with onnxruntime (no torch).

Importing this module imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import numpy as np

from MRSynthLib.models.bundle import card_network
from MRSynthLib.networks.configs.autoencoder import AutoencoderConfig
from MRSynthLib.models.bundle import Bundle
from MRSynthLib.errors import BundleError, MRSynthError
from MRSynthLib.runtime.onnx_backend import onnx_session, session_options
from MRSynthLib.methods.translators.registry import GRAPHS, KINDS, method_kind

KIND_PARTS: dict[str, tuple[str, ...]] = {name: spec.parts for name, spec in KINDS.items()}
"""Kind → the network parts its bundles hold (from :mod:`MRSynthLib.methods.translators.registry`)."""
KIND_GRAPHS: dict[str, tuple[str, ...]] = {name: spec.graphs for name, spec in KINDS.items()}
"""Kind → the graphs its inference runs (one ONNX file each)."""
GRAPH_INPUTS: dict[str, tuple[str, ...]] = {name: graph.inputs for name, graph in GRAPHS.items()}
GRAPH_OUTPUTS: dict[str, tuple[str, ...]] = {name: graph.outputs for name, graph in GRAPHS.items()}


def weight_file(part: str) -> str:
    """The safetensors file of a network part inside a bundle."""
    return f"{part}.safetensors"


def is_translator_method(method: str) -> bool:
    return method_kind(method) is not None


def has_method_onnx_parts(bundle: Bundle) -> bool:
    """True when the card lists every ONNX graph its method needs."""
    meta = bundle.card.networks.get("onnx")
    needed = KIND_GRAPHS.get(method_kind(bundle.card.method) or "", ())
    return bool(needed) and isinstance(meta, dict) and all(name in meta.get("graphs", {}) for name in needed)


def _check_method(card, origin) -> str:
    """The card's translator kind, or a clear error."""
    kind = method_kind(card.method)
    if kind is None:
        raise BundleError(f"Bundle {origin} uses method {card.method!r}, which is not one of the generative "
                          f"translator kinds (<latent>-{{{','.join(KIND_GRAPHS)}}}): upgrade MRSynth.")
    return kind


class _GraphEngine:
    """Shared attributes: ``card``, ``kind``, ``downsampling``; ``encode``/``decode`` via :meth:`run`."""

    backend = ""
    device = "cpu"

    def __init__(self, card, origin) -> None:
        self.card = card
        self.kind = _check_method(card, origin)
        self.downsampling = card_network(card, "autoencoder", AutoencoderConfig).downsampling

    def run(self, graph: str, **inputs: np.ndarray) -> tuple[np.ndarray, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, images: np.ndarray) -> np.ndarray:
        """``(B, 1, Z, Y, X)`` → ``(B, L, z, y, x)``."""
        return self.run("encoder", image=images)[0]

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """``(B, L, z, y, x)`` → ``(B, 1, Z, Y, X)``."""
        return self.run("decoder", latents=latents)[0]


class TorchGraphEngine(_GraphEngine):
    """The bundle's graphs as torch modules (CPU or CUDA)."""

    backend = "torch"

    def __init__(self, bundle: Bundle, device: str = "auto") -> None:
        super().__init__(bundle.card, bundle.path)
        from safetensors.torch import load

        from MRSynthLib.methods.translators.graphs import build_part

        self._set_device(device)
        parts = {}
        for name in KIND_PARTS[self.kind]:
            try:
                part = build_part(name, bundle.card.networks[name])
                part.load_state_dict(load(bundle.read_weight(weight_file(name))))
            except (KeyError, TypeError, ValueError, RuntimeError) as error:
                raise BundleError(f"Bundle {bundle.path} does not match its card ({str(error).splitlines()[0]}): "
                                  f"re-export it.") from None
            parts[name] = part
        self._set_parts(parts)

    @classmethod
    def from_parts(cls, card, parts: dict, device: str = "cpu") -> TorchGraphEngine:
        """An engine over networks already in memory (e.g. validation during training through this
        very inference path). ``card`` needs ``method``, ``name`` and ``networks``; ``parts`` are used as
        they are (moved to ``device`` and set to eval mode; the caller restores train mode)."""
        engine = cls.__new__(cls)
        _GraphEngine.__init__(engine, card, f"(in memory: {card.name})")
        engine._set_device(device)
        engine._set_parts(parts)
        return engine

    def _set_device(self, device: str) -> None:
        import torch

        from MRSynthLib.runtime.torch_backend import pick_device

        self._torch = torch
        self.torch_device = pick_device(device)
        self.device = str(self.torch_device)

    def _set_parts(self, parts: dict) -> None:
        from MRSynthLib.methods.translators.graphs import graph_modules

        self.parts = {name: part.to(self.torch_device).eval() for name, part in parts.items()}
        self.graphs = graph_modules(self.parts)

    def run(self, graph: str, **inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(inputs[name], dtype=np.float32)).to(self.torch_device)
                for name in GRAPH_INPUTS[graph]]
        with torch.inference_mode():
            out = self.graphs[graph](*args)
        outs = out if isinstance(out, tuple) else (out,)
        return tuple(o.float().cpu().numpy() for o in outs)


class OnnxGraphEngine(_GraphEngine):
    """The bundle's exported ONNX graphs on onnxruntime (CPU); needs neither torch nor MONAI."""

    backend = "onnx"

    def __init__(self, bundle: Bundle, threads: int = 0) -> None:
        super().__init__(bundle.card, bundle.path)
        if not has_method_onnx_parts(bundle):
            raise BundleError(f"Bundle {bundle.path} has no ONNX graphs for {bundle.card.method}: use --backend torch, or "
                              f"re-export it with `mrsynth-train export`.")
        options = session_options(threads)
        graphs = bundle.card.networks["onnx"]["graphs"]
        self.sessions = {}
        for name in KIND_GRAPHS[self.kind]:
            self.sessions[name] = onnx_session(bundle, graphs[name], options)

    def run(self, graph: str, **inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        session = self.sessions[graph]
        wanted = {i.name for i in session.get_inputs()}  # constant-folded inputs may be dropped by the exporter
        feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items() if k in wanted}
        return tuple(session.run(None, feeds))


_LOADED: dict[tuple, _GraphEngine] = {}


def choose_backend(bundle: Bundle, backend: str = "auto", device: str = "auto") -> str:
    """:func:`MRSynthLib.runtime.backends.choose_backend` with this method's graph list."""
    from MRSynthLib.runtime.backends import choose_backend as choose

    return choose(bundle, backend, device, has_graphs=has_method_onnx_parts)


def load_engine(bundle: Bundle, backend: str = "auto", device: str = "auto", threads: int = 0) -> _GraphEngine:
    """The bundle's engine (torch or onnxruntime, see :func:`choose_backend`), loaded once per process."""
    _check_method(bundle.card, bundle.path)
    chosen = choose_backend(bundle, backend, device)
    if threads < 0:
        raise MRSynthError(f"--threads must be 0 (library default) or a positive number, not {threads}.")
    key = (str(bundle.path.resolve()), bundle.sha256, chosen, device, threads)
    if key in _LOADED:
        return _LOADED[key]
    _LOADED.clear()  # keep one model in memory at a time
    if chosen == "onnx":
        engine: _GraphEngine = OnnxGraphEngine(bundle, threads)
    else:
        try:
            import torch
        except ImportError:
            raise MRSynthError(f"Bundle {bundle.card.name} needs PyTorch here (it has no ONNX graphs, or --backend torch "
                               f"was given): pip install torch, or use a bundle with ONNX graphs.") from None
        if threads > 0:
            torch.set_num_threads(threads)
        engine = TorchGraphEngine(bundle, device)
    _LOADED[key] = engine
    return engine
