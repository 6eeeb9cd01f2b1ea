"""Every generative translator kind in one table: its network parts, its graphs and its window class.

A bundle of method ``<latent>-<kind>`` (``fsq-ldm``, ``vq-cyclegan``, ...) holds the weights of the kind's
:class:`Part` s and, for onnxruntime, one ONNX file per :class:`Graph`. Three readers share this table:

- :mod:`MRSynthLib.methods.translators.engines` (which graphs a bundle needs, their input and output names);
- :mod:`MRSynthLib.methods.translators.graphs` (the torch module of each part and graph, for the torch backend and
  the ONNX export);
- :func:`MRSynthLib.methods.translators.driver.predict_translator` (the window class that runs a kind).

Adding a kind: its network (``MRSynthLib/networks/<kind>.py`` with a torch-free config in
``networks/configs/<kind>.py``), its window class (``MRSynthLib/methods/translators/<kind>.py``), and one
:class:`KindSpec` line in :data:`KINDS` below (plus a :class:`Part` and its :class:`Graph` s when the kind
brings a new network). The training package has its own registry (``training/kinds.py``).

Importing this module imports neither torch nor onnxruntime: parts name their torch class as a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from MRSynthLib.networks.configs.autoencoder import AutoencoderConfig
from MRSynthLib.networks.configs.cyclegan import GeneratorConfig
from MRSynthLib.networks.configs.denoiser import DenoiserConfig
from MRSynthLib.networks.configs.fusion import FusionConfig
from MRSynthLib.networks.configs.latent_split import LatentSplitConfig
from MRSynthLib.networks.configs.msgldm import MSGLDMConfig
from MRSynthLib.networks.configs.sscf import SSCFConfig
from MRSynthLib.networks.configs.targetcode import TargetCodeConfig
from MRSynthLib.networks.configs.vqseq2seq import VQSeq2SeqConfig
from MRSynthLib.networks.configs.wldm import WLDMDenoiserConfig
from MRSynthLib.methods.translators.kind_example import KindExample
from MRSynthLib.methods.translators.cyclegan import CycleGANKind, example as cyclegan_example
from MRSynthLib.methods.translators.ldm import DiffusionKind, example as ldm_example
from MRSynthLib.methods.translators.msgldm import MSGLDMKind, example as msgldm_example
from MRSynthLib.methods.translators.sscf import SSCFKind, example as sscf_example
from MRSynthLib.methods.translators.targetcode import TargetCodeKind, example as targetcode_example
from MRSynthLib.methods.translators.vqseq2seq import VQSeq2SeqKind, example as vqseq2seq_example
from MRSynthLib.methods.translators.wldm import WLDMKind, example as wldm_example

LATENT_PREFIXES = ("fsq", "vq", "kl")
"""A method is ``<latent>-<kind>``: the autoencoder's latent (``fsq`` by default) and the translator kind."""


@dataclass(frozen=True)
class Part:
    """One network of a bundle: the card's ``networks[name]`` entry and the weight file ``<name>.safetensors``.

    Attributes:
        config: its torch-free architecture dataclass (``from_dict`` reads the card entry).
        network: ``"module:Class"`` of its torch module, built from that config (imported only by the torch side).
    """

    name: str
    config: type
    network: str


@dataclass(frozen=True)
class Graph:
    """One traced computation: ``method`` of part ``part`` (None: the part module's ``forward``), taking ``inputs``
    positionally and returning ``outputs`` (the ONNX input and output names)."""

    name: str
    part: str
    method: str | None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class KindSpec:
    """A generative translator kind.

    Attributes:
        parts: the network parts its bundles hold (names in :data:`PARTS`).
        graphs: the graphs its inference runs (names in :data:`GRAPHS`), each exported to ONNX.
        window: the class that synthesizes one window: ``window(engine, names, target, samples, seed,
            sample_batch, contributions).run(Window) -> WindowResult`` (:mod:`MRSynthLib.methods.translators.window`).
        uncertainty: how its uncertainty map is made (for documentation and model cards).
        example: ``example() -> KindExample``: the smallest valid bundle content of the kind (tests build a
            random-weight bundle of every kind from it; :mod:`MRSynthLib.methods.translators.kind_example`).
    """

    name: str
    parts: tuple[str, ...]
    graphs: tuple[str, ...]
    window: type
    uncertainty: str
    example: Callable[[], KindExample]


PARTS: dict[str, Part] = {part.name: part for part in (
    Part("autoencoder", AutoencoderConfig, "MRSynthLib.networks.autoencoder:LatentAutoencoder"),
    Part("translator", FusionConfig, "MRSynthLib.networks.fusion:FusionTranslator"),
    Part("denoiser", DenoiserConfig, "MRSynthLib.networks.denoiser:LatentDenoiser"),
    Part("generator", GeneratorConfig, "MRSynthLib.networks.cyclegan:LatentGenerator"),
    Part("targetcode", TargetCodeConfig, "MRSynthLib.networks.targetcode:TargetCodeTranslator"),
    Part("vqseq2seq", VQSeq2SeqConfig, "MRSynthLib.networks.vqseq2seq:VQSeq2SeqTranslator"),
    Part("sscf", SSCFConfig, "MRSynthLib.networks.sscf:SSCFTranslator"),
    Part("msgldm", MSGLDMConfig, "MRSynthLib.networks.msgldm:MSGLDM"),
    Part("wldm_split", LatentSplitConfig, "MRSynthLib.networks.latent_split:LatentSplit"),
    Part("wldm_denoiser", WLDMDenoiserConfig, "MRSynthLib.networks.wldm:WLDMDenoiser"),
)}

GRAPHS: dict[str, Graph] = {graph.name: graph for graph in (
    Graph("encoder", "autoencoder", "encode", ("image",), ("latents",)),
    Graph("decoder", "autoencoder", "decode", ("latents",), ("image",)),
    Graph("translator_fuse", "translator", "fuse_active", ("latents", "slot_codes", "target_onehot", "mask"),
          ("hidden", "weights")),
    Graph("translator_head", "translator", "head_from", ("hidden", "channel_scale"), ("latent",)),
    Graph("denoiser", "denoiser", None, ("x", "t", "latents", "available", "target_onehot", "guide"), ("velocity",)),
    Graph("generator_features", "generator", "features", ("latents",), ("hidden",)),
    Graph("generator_head", "generator", "head_from", ("hidden", "channel_scale"), ("latent",)),
    Graph("targetcode_features", "targetcode", "features", ("latents", "source_onehot", "target_onehot"), ("hidden",)),
    Graph("targetcode_head", "targetcode", "head_from", ("hidden", "target_onehot", "channel_scale"),
          ("mean", "logvar")),
    Graph("vqseq2seq_encode", "vqseq2seq", "encode_common", ("latents",), ("common", "logvar")),
    Graph("vqseq2seq_fuse", "vqseq2seq", "fuse", ("commons", "logvars"), ("mean", "logvar", "weights")),
    Graph("vqseq2seq_decode", "vqseq2seq", "decode_common", ("common", "target_onehot"), ("latent",)),
    Graph("sscf_encode", "sscf", "encode", ("latents", "slot_codes", "target_onehot", "mask"),
          ("hidden", "weights", "tumour", "descriptors")),
    Graph("sscf_retrieve", "sscf", "retrieve", ("descriptors", "slot_codes", "target_onehot", "mask"), ("affinity",)),
    Graph("sscf_head", "sscf", "head_from", ("hidden", "tumour", "selection", "target_onehot", "channel_scale"),
          ("latent",)),
    Graph("msgldm_structure", "msgldm", "structure", ("latents", "available", "target_onehot"),
          ("structure", "weights")),
    Graph("msgldm_denoiser", "msgldm", "denoise", ("x", "t", "structure", "target_onehot"), ("velocity",)),
    Graph("wldm_split", "wldm_split", None, ("latents",), ("structure", "modality")),
    Graph("wldm_denoiser", "wldm_denoiser", None,
          ("x", "t", "latents", "available", "target_onehot", "structure", "modality"), ("velocity",)),
)}

_CODEC = ("encoder", "decoder")
_DIFFUSION_SAMPLES = "voxel-wise std over N diffusion samples (sample 0 is the synthetic image)"
_DROPOUT_PASSES = "voxel-wise std over N passes of MC channel dropout alternating with a left-right flip"

KINDS: dict[str, KindSpec] = {spec.name: spec for spec in (
    KindSpec("ldm", ("autoencoder", "translator", "denoiser"),
             _CODEC + ("translator_fuse", "translator_head", "denoiser"), DiffusionKind, _DIFFUSION_SAMPLES,
             ldm_example),
    KindSpec("cyclegan", ("autoencoder", "generator"), _CODEC + ("generator_features", "generator_head"),
             CycleGANKind, _DROPOUT_PASSES, cyclegan_example),
    KindSpec("targetcode", ("autoencoder", "targetcode"), _CODEC + ("targetcode_features", "targetcode_head"),
             TargetCodeKind, _DROPOUT_PASSES, targetcode_example),
    KindSpec("vqseq2seq", ("autoencoder", "vqseq2seq"),
             _CODEC + ("vqseq2seq_encode", "vqseq2seq_fuse", "vqseq2seq_decode"), VQSeq2SeqKind,
             "voxel-wise std over N draws from the fused common-space posterior", vqseq2seq_example),
    KindSpec("sscf", ("autoencoder", "sscf"), _CODEC + ("sscf_encode", "sscf_retrieve", "sscf_head"), SSCFKind,
             _DROPOUT_PASSES + ", cycling through the nearest memory prototypes", sscf_example),
    KindSpec("msgldm", ("autoencoder", "msgldm"), _CODEC + ("msgldm_structure", "msgldm_denoiser"), MSGLDMKind,
             _DIFFUSION_SAMPLES, msgldm_example),
    KindSpec("wldm", ("autoencoder", "wldm_split", "wldm_denoiser"), _CODEC + ("wldm_split", "wldm_denoiser"),
             WLDMKind, _DIFFUSION_SAMPLES, wldm_example),
)}


def method_kind(method: str) -> str | None:
    """``"fsq-ldm"`` → ``"ldm"``; None for methods that are not generative translator kinds (e.g. ``fsq-fusion``)."""
    prefix, _, kind = method.partition("-")
    return kind if prefix in LATENT_PREFIXES and kind in KINDS else None


__all__ = ["GRAPHS", "KINDS", "LATENT_PREFIXES", "PARTS", "Graph", "KindExample", "KindSpec", "Part", "method_kind"]
