"""ONNX graphs of the generative translator kinds (``<latent>-ldm``, ``-cyclegan``, ``-targetcode``).

Every graph of :data:`MRSynthLib.methods.translators.engines.KIND_GRAPHS` is traced from the same torch module
the torch backend runs (:mod:`MRSynthLib.methods.translators.graphs`), with dynamic batch and spatial axes, into
``onnx/<graph>.onnx``. :func:`measure_parity` then runs a whole prediction (synthetic image,
uncertainty, contributions) on both backends with the shared numpy driver.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from MRSynthLib.methods.translators.engines import GRAPH_INPUTS, GRAPH_OUTPUTS, KIND_GRAPHS

OPSET = 17
PARITY_TOLERANCE = 1e-3
"""Largest relative difference (max |onnx - torch| / max |torch|) an exported bundle may show on its probe. Broken
graphs differ by 1e-1 and more; float32 summation order alone reached 1.3e-4 for the full-width vqseq2seq-brats
networks (``python -m training.experiments.dry_run``), which the former 1e-4 refused at the end of a training run."""


def _space(first: int, prefix: str) -> dict[int, str]:
    return {first + i: f"{prefix}{axis}" for i, axis in enumerate("zyx")}


def dynamic_axes(graph: str) -> dict[str, dict[int, str]]:
    """Dynamic axes of every input and output of ``graph``: batch, and the spatial axes of volumes."""
    if graph.startswith("wldm_"):
        from training.bundles.wldm_onnx import dynamic_axes as wldm_axes

        return wldm_axes(graph)
    image, latent = _space(2, "Z"), _space(2, "z")
    axes: dict[str, dict[int, str]] = {
        "image": {0: "batch", **image}, "latents": {0: "batch", **latent}, "hidden": {0: "batch", **latent},
        "latent": {0: "batch", **latent}, "x": {0: "batch", **latent}, "guide": {0: "batch", **latent},
        "velocity": {0: "batch", **latent}, "mean": {0: "batch", **latent}, "logvar": {0: "batch", **latent},
        "weights": {0: "batch", 1: "given", **_space(2, "z")}, "t": {0: "batch"}, "available": {0: "batch"},
        "target_onehot": {0: "batch"}, "source_onehot": {0: "batch"}, "channel_scale": {0: "batch"},
        "slot_codes": {0: "given"}, "mask": {0: "batch", 1: "given"}, "tumour": {0: "batch", **latent},
        "descriptors": {0: "batch", 1: "given"}, "affinity": {0: "batch"}, "selection": {0: "batch"}, "structure": {0: "batch", **latent},
    }
    if graph == "translator_fuse":
        axes["latents"] = {0: "batch", 1: "given", **_space(3, "z")}
    if graph in ("denoiser", "msgldm_structure"):
        axes["latents"] = {0: "batch", **_space(3, "z")}
    if graph == "sscf_encode":
        axes["latents"] = {0: "batch", 1: "given", **_space(3, "z")}
    axes.update(commons={0: "batch", 1: "given", **_space(3, "z")}, logvars={0: "batch", 1: "given", **_space(3, "z")},
                common={0: "batch", **latent})  # vqseq2seq
    return {name: axes[name] for name in GRAPH_INPUTS[graph] + GRAPH_OUTPUTS[graph]}


def example_inputs(graph: str, networks: dict, downsampling: int) -> tuple[torch.Tensor, ...]:
    """Small random inputs for tracing ``graph`` (latent 8³, batch 2)."""
    if graph.startswith("vqseq2seq_"):
        from training.bundles.vqseq2seq_onnx import example_inputs as vqseq2seq_inputs

        return vqseq2seq_inputs(graph, networks["vqseq2seq"])
    if "wldm_denoiser" in networks:
        from training.bundles.wldm_onnx import example_inputs as wldm_inputs

        return wldm_inputs(graph, networks, downsampling)
    if graph.startswith("sscf_"):
        from training.translators.stage2_sscf import sscf_example_inputs

        return sscf_example_inputs(graph, networks)
    s = (8, 8, 8)
    b = 2
    latent_channels = next(networks[p]["latent_channels"] for p in ("vqseq2seq", "translator", "generator", "targetcode", "sscf", "denoiser", "msgldm")
                           if p in networks)
    hidden = {"translator_head": ("translator", "hidden"), "generator_head": ("generator", "hidden"),
              "targetcode_head": ("targetcode", "hidden")}
    slots = next((len(networks[p]["contrasts"]) for p in ("translator", "targetcode", "msgldm") if p in networks), 1)
    eye = torch.eye(slots)
    lat = torch.rand(b, latent_channels, *s) * 2 - 1
    if graph == "encoder":
        return (torch.rand(b, 1, *(n * downsampling for n in s)),)
    if graph in ("decoder", "generator_features"):
        return (lat,)
    if graph == "translator_fuse":
        return (torch.rand(b, 2, latent_channels, *s) * 2 - 1, eye[:2], eye[2:3].repeat(b, 1), torch.ones(b, 2))
    if graph in hidden:
        part, key = hidden[graph]
        h = int(networks[part][key])
        features = torch.rand(b, h, *s)
        if graph == "targetcode_head":
            return (features, eye[[1] * b], torch.ones(b, h))
        return (features, torch.ones(b, h))
    if graph == "denoiser":
        return (torch.randn(b, latent_channels, *s), torch.rand(b), torch.rand(b, slots, latent_channels, *s),
                torch.ones(b, slots), eye[[0] * b], torch.randn(b, latent_channels, *s))
    if graph == "targetcode_features":
        return (lat, eye[[0] * b], eye[[1] * b])
    if graph == "msgldm_structure":
        return (torch.randn(b, slots, latent_channels, *s), torch.tensor([[1.0, 1.0] + [0.0] * (slots - 2)] * b),
                eye[[slots - 1] * b])
    if graph == "msgldm_denoiser":
        return (torch.randn(b, latent_channels, *s), torch.rand(b), torch.randn(b, networks["msgldm"]["channels"][0], *s),
                eye[[0] * b])
    raise KeyError(graph)


def export_graphs(graphs: dict[str, torch.nn.Module], kind: str, networks: dict, downsampling: int,
                  folder: Path) -> dict[str, str]:
    """Trace the graphs of ``kind`` into ``folder/onnx``; returns graph name → relative path."""
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    written = {}
    for name in KIND_GRAPHS[kind]:
        module = graphs[name].cpu().eval()
        path = f"onnx/{name}.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example_inputs(name, networks, downsampling), str(folder / path), dynamo=False,
                              opset_version=OPSET, input_names=list(GRAPH_INPUTS[name]),
                              output_names=list(GRAPH_OUTPUTS[name]), dynamic_axes=dynamic_axes(name),
                              do_constant_folding=True)
        written[name] = path
    return written


def probe_task(card) -> tuple[list[str], str]:
    """Inputs and target of the parity probe: the cyclegan's pair, else two inputs and a third slot as target."""
    networks = card.networks
    if "generator" in networks:
        return [networks["generator"]["source"]], networks["generator"]["target"]
    if "wldm_denoiser" in networks:  # e.g. MR -> CT: the target is an output, never an input
        target = card.output_contrasts[-1]
        return [c for c in card.input_contrasts if c != target][:2], target
    slots = list(card.input_contrasts)
    return slots[:2], slots[2] if len(slots) > 2 else card.output_contrasts[-1]


def measure_parity(bundle, shape: tuple[int, int, int] = (24, 32, 24), samples: int = 3) -> float:
    """Largest relative difference (max |a-b| / max |a|) between torch and onnxruntime over a full
    prediction (synthetic, uncertainty, every contribution map) of a random probe volume."""
    from MRSynthLib.methods.translators.engines import OnnxGraphEngine, TorchGraphEngine
    from MRSynthLib.methods.translators.driver import predict_translator

    rng = np.random.default_rng(0)
    inputs, target = probe_task(bundle.card)
    arrays = {name: rng.random(shape, dtype=np.float32) for name in inputs}
    results = [predict_translator(engine, arrays, target, samples=samples, seed=3)
               for engine in (TorchGraphEngine(bundle, "cpu"), OnnxGraphEngine(bundle))]
    pairs = [(results[0].synthetic, results[1].synthetic), (results[0].uncertainty, results[1].uncertainty)]
    pairs += [(results[0].contributions[n], results[1].contributions[n]) for n in arrays]
    return max(float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12)) for a, b in pairs)
