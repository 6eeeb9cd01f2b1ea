"""ONNX tracing inputs and dynamic axes of the ``wldm`` graphs (``wldm_split``, ``wldm_denoiser``).

Used by :mod:`training.bundles.stage2_onnx`; per-slot structure and modality halves are ``(B, M, C, *s)``.
"""

from __future__ import annotations

import torch


def _space(first: int) -> dict[int, str]:
    return {first + i: f"z{axis}" for i, axis in enumerate("zyx")}


def dynamic_axes(graph: str) -> dict[str, dict[int, str]]:
    """Batch and spatial axes of every input and output of a ``wldm_*`` graph."""
    latent, slotted = {0: "batch", **_space(2)}, {0: "batch", **_space(3)}
    if graph == "wldm_split":
        return {"latents": latent, "structure": latent, "modality": latent}
    return {"x": latent, "t": {0: "batch"}, "latents": slotted, "available": {0: "batch"},
            "target_onehot": {0: "batch"}, "structure": slotted, "modality": slotted, "velocity": latent}


def example_inputs(graph: str, networks: dict, downsampling: int) -> tuple[torch.Tensor, ...]:
    """Small random inputs (batch 2, latent 8³, or the denoiser's multiple when larger: its deepest level pools the
    tokens by ``2**(levels-1) * kv_pool``, 16 for wldm-brats) for tracing ``graph`` of a ``wldm`` bundle."""
    from MRSynthLib.networks.configs.wldm import WLDMDenoiserConfig

    config = networks["wldm_denoiser"]
    edge = max(8, WLDMDenoiserConfig.from_dict(config).multiple)
    b, s = 2, (edge, edge, edge)
    lat, c, m = int(config["latent_channels"]), int(config["split_channels"]), len(config["contrasts"])
    if graph == "encoder":
        return (torch.rand(b, 1, *(n * downsampling for n in s)),)
    if graph in ("decoder", "wldm_split"):
        return (torch.randn(b, lat, *s),)
    return (torch.randn(b, lat, *s), torch.rand(b), torch.randn(b, m, lat, *s), torch.ones(b, m),
            torch.eye(m)[[m - 1] * b], torch.randn(b, m, c, *s), torch.randn(b, m, c, *s))
