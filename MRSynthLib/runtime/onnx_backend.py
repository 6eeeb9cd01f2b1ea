"""onnxruntime backend: runs a bundle's exported ONNX graphs on the CPU; needs neither torch nor MONAI.

The card's ``networks.onnx`` entry (written by ``mrsynth-train export-onnx``) names the four graphs
(encoder, translator_fuse, translator_head, decoder) and the numbers the driver needs; every graph
file is pinned by sha256 in the card's ``weights`` like the safetensors.
"""

from __future__ import annotations

import numpy as np

from MRSynthLib.models.bundle import Bundle
from MRSynthLib.errors import BundleError, MRSynthError

GRAPHS = ("encoder", "translator_fuse", "translator_head", "decoder")

_LOADED: dict[tuple[str, str, int], OnnxEngine] = {}


EXTERNAL_DATA_MARK = b"\n\x08location"
"""How a tensor stored outside its graph file is serialised (TensorProto.external_data, key ``location``)."""


def session_options(threads: int = 0):
    """onnxruntime session options of every bundle graph: full graph optimisation, ``threads`` intra-op threads
    (0 = onnxruntime's default), quiet logging. Raises MRSynthError when onnxruntime is missing."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MRSynthError("--backend onnx needs onnxruntime: pip install onnxruntime (or use --backend torch).") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def onnx_session(bundle: Bundle, file_name: str, options):
    """An onnxruntime session of the bundle's hashed graph ``file_name``, built from the verified bytes.

    Graphs whose tensors live in external data files are refused: those files are not in the bundle's
    hashed manifest, and onnxruntime would resolve them against the working directory.
    """
    import onnxruntime as ort

    data = bundle.read_weight(file_name)
    path = bundle.path / file_name
    if EXTERNAL_DATA_MARK in data:
        raise BundleError(f"ONNX graph {path} keeps tensors in external data files, which the bundle does not hash: "
                          f"refusing it; re-export the bundle with mrsynth-train export-onnx.")
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise BundleError(f"ONNX graph {path} cannot be loaded ({str(error).splitlines()[0]}): re-export it.") from None


def has_onnx_parts(bundle: Bundle) -> bool:
    """True when the card lists every ONNX graph this backend needs."""
    meta = bundle.card.networks.get("onnx")
    return isinstance(meta, dict) and all(name in meta.get("graphs", {}) for name in GRAPHS)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def load_engine(bundle: Bundle, threads: int = 0) -> OnnxEngine:
    """The bundle's ONNX sessions, created once per process and thread count."""
    key = (str(bundle.path.resolve()), bundle.sha256, threads)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = OnnxEngine(bundle, threads)
    return _LOADED[key]


class OnnxEngine:
    """Implements :class:`MRSynthLib.runtime.inference.Engine` with onnxruntime sessions (CPU)."""

    backend = "onnx"
    device = "cpu"
    sample_batch = 1  # onnxruntime: one stochastic pass at a time was faster and leaner than 4 (docs/PERFORMANCE-networks.md)

    def __init__(self, bundle: Bundle, threads: int = 0) -> None:
        if not has_onnx_parts(bundle):
            raise BundleError(
                f"Bundle {bundle.path} has no ONNX graphs: use --backend torch, or add them with "
                f"`mrsynth-train export-onnx {bundle.path}`."
            )
        options = session_options(threads)
        meta = bundle.card.networks["onnx"]
        self.sessions = {}
        graphs = meta.get("graphs") if isinstance(meta, dict) else None
        graphs = graphs if isinstance(graphs, dict) else {}  # a malformed section: onnx_session names the missing graph
        for name in GRAPHS:
            self.sessions[name] = onnx_session(bundle, graphs.get(name), options)
        self.bundle = bundle
        try:
            self.slots = tuple(str(s) for s in meta["slots"])
            self.downsampling = int(meta["downsampling"])
            self.hidden_channels = int(meta["hidden_channels"])
            self.dropout = float(meta["dropout"])
            self.latent_multiple = int(meta.get("latent_multiple", 1))  # latent grids divisible by this (U-Net body)
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"Bundle {bundle.path} has a malformed networks.onnx section ({error}): re-export it with "
                              f"`mrsynth-train export-onnx`.") from None
        if min(self.downsampling, self.hidden_channels, self.latent_multiple) < 1 or not 0 <= self.dropout < 1:
            raise BundleError(f"Bundle {bundle.path} has impossible ONNX settings (downsampling {self.downsampling}, "
                              f"hidden channels {self.hidden_channels}, dropout {self.dropout}): re-export it with "
                              f"`mrsynth-train export-onnx`.")
        mask_input = next(i for i in self.sessions["translator_fuse"].get_inputs() if i.name == "mask")
        self.spatial_mask = len(mask_input.shape) > 2  # per-voxel mask (input screening); older graphs: (B, K)

    def _run(self, graph: str, **inputs: np.ndarray) -> list[np.ndarray]:
        feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        return self.sessions[graph].run(None, feeds)

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self._run("encoder", image=images)[0]

    def fuse(self, latents, slot_codes, target_onehot, mask):
        hidden, weights = self._run("translator_fuse", latents=latents, slot_codes=slot_codes,
                                    target_onehot=target_onehot, mask=mask)
        return hidden, weights

    def head(self, hidden: np.ndarray, channel_scale: np.ndarray) -> np.ndarray:
        return self._run("translator_head", hidden=hidden, channel_scale=channel_scale)[0]

    def decode(self, latents: np.ndarray) -> np.ndarray:
        return self._run("decoder", latents=latents)[0]
