"""The named torch graphs of the ``fsq-ldm``, ``fsq-cyclegan`` and ``fsq-targetcode`` bundles.

One module per graph, taking its inputs positionally in the order of
:data:`MRSynthLib.translator_engines.GRAPH_INPUTS`: the torch backend calls exactly these modules and
the ONNX export traces exactly these modules, so both backends run the same computation.
"""

from __future__ import annotations

from torch import nn

from MRSynthLib.networks.autoencoder import AutoencoderConfig, LatentAutoencoder
from MRSynthLib.networks.cyclegan import GeneratorConfig, LatentGenerator
from MRSynthLib.networks.denoiser import DenoiserConfig, LatentDenoiser
from MRSynthLib.networks.fusion import FusionConfig, FusionTranslator
from MRSynthLib.networks.sscf import SSCFConfig, SSCFTranslator
from MRSynthLib.networks.msgldm import MSGLDM, MSGLDMConfig
from MRSynthLib.networks.latent_split import LatentSplit, LatentSplitConfig
from MRSynthLib.networks.targetcode import TargetCodeConfig, TargetCodeTranslator
from MRSynthLib.networks.vqseq2seq import VQSeq2SeqConfig, VQSeq2SeqTranslator
from MRSynthLib.networks.wldm import WLDMDenoiser, WLDMDenoiserConfig

PART_BUILDERS = {
    "autoencoder": (AutoencoderConfig, LatentAutoencoder),
    "translator": (FusionConfig, FusionTranslator),
    "denoiser": (DenoiserConfig, LatentDenoiser),
    "generator": (GeneratorConfig, LatentGenerator),
    "targetcode": (TargetCodeConfig, TargetCodeTranslator),
    "vqseq2seq": (VQSeq2SeqConfig, VQSeq2SeqTranslator),
    "sscf": (SSCFConfig, SSCFTranslator),
    "msgldm": (MSGLDMConfig, MSGLDM),
    "wldm_split": (LatentSplitConfig, LatentSplit),
    "wldm_denoiser": (WLDMDenoiserConfig, WLDMDenoiser),
}


class MethodCall(nn.Module):
    """Expose ``owner.<method>(*inputs)`` as a module's ``forward`` (for tracing one graph)."""

    def __init__(self, owner: nn.Module, method: str) -> None:
        super().__init__()
        self.owner = owner
        self.method = method

    def forward(self, *inputs):
        return getattr(self.owner, self.method)(*inputs)


def build_part(name: str, config: dict) -> nn.Module:
    """An untrained network part from its card entry (``networks[name]``)."""
    config_class, network_class = PART_BUILDERS[name]
    return network_class(config_class.from_dict(config))


def graph_modules(parts: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """Graph name → module for the parts present (see ``GRAPH_INPUTS`` for each graph's inputs)."""
    graphs: dict[str, nn.Module] = {}
    if "autoencoder" in parts:
        graphs["encoder"] = MethodCall(parts["autoencoder"], "encode")
        graphs["decoder"] = MethodCall(parts["autoencoder"], "decode")
    if "translator" in parts:
        graphs["translator_fuse"] = MethodCall(parts["translator"], "fuse_active")
        graphs["translator_head"] = MethodCall(parts["translator"], "head_from")
    if "denoiser" in parts:
        graphs["denoiser"] = parts["denoiser"]
    if "generator" in parts:
        graphs["generator_features"] = MethodCall(parts["generator"], "features")
        graphs["generator_head"] = MethodCall(parts["generator"], "head_from")
    if "targetcode" in parts:
        graphs["targetcode_features"] = MethodCall(parts["targetcode"], "features")
        graphs["targetcode_head"] = MethodCall(parts["targetcode"], "head_from")
    if "vqseq2seq" in parts:
        graphs["vqseq2seq_encode"] = MethodCall(parts["vqseq2seq"], "encode_common")
        graphs["vqseq2seq_fuse"] = MethodCall(parts["vqseq2seq"], "fuse")
        graphs["vqseq2seq_decode"] = MethodCall(parts["vqseq2seq"], "decode_common")
    if "sscf" in parts:
        for graph, method in (("sscf_encode", "encode"), ("sscf_retrieve", "retrieve"), ("sscf_head", "head_from")):
            graphs[graph] = MethodCall(parts["sscf"], method)
    if "msgldm" in parts:
        graphs["msgldm_structure"] = MethodCall(parts["msgldm"], "structure")
        graphs["msgldm_denoiser"] = MethodCall(parts["msgldm"], "denoise")
    for name in ("wldm_split", "wldm_denoiser"):  # 3D-WLDM: each part is one graph
        if name in parts:
            graphs[name] = parts[name]
    return graphs
