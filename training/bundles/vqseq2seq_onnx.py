"""Tracing inputs of the ``vqseq2seq`` graphs (used by :func:`training.bundles.stage2_onnx.example_inputs`)."""

from __future__ import annotations

import torch


def example_inputs(graph: str, network: dict) -> tuple[torch.Tensor, ...]:
    """Small random inputs (latent 8³, batch 2, 2 inputs for the fuse graph) for ``graph`` given the card's
    ``networks["vqseq2seq"]``."""
    s, b = (8, 8, 8), 2
    common, slots = int(network["common_channels"]), len(network["contrasts"])
    if graph == "vqseq2seq_encode":
        return (torch.rand(b, int(network["latent_channels"]), *s) * 2 - 1,)
    if graph == "vqseq2seq_fuse":
        return (torch.randn(b, 2, common, *s), torch.randn(b, 2, common, *s) - 3)
    if graph == "vqseq2seq_decode":
        return (torch.randn(b, common, *s), torch.eye(slots)[[1] * b])
    raise KeyError(graph)
