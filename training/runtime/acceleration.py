"""Memory and speed switches: bf16 autocast and activation (gradient) checkpointing.

Both act on CUDA devices (``runtime.bf16``, ``runtime.gradient_checkpointing``). On a CPU they are
no-ops unless ``runtime.cpu_bf16`` opts in to bf16 autocast (measured 2.2x faster per stage-1 step on
a CPU with AVX-512 bf16: docs/TRAINING.md), so CPU runs and tests stay in float32 by default.
"""

from __future__ import annotations

import contextlib
import types

import torch
from torch import nn


def bf16_enabled(requested: bool, device: torch.device, cpu: bool = False) -> bool:
    """True when bf16 autocast is requested and the device is a CUDA GPU that supports bf16, or the
    CPU with ``cpu`` (``runtime.cpu_bf16``) set."""
    if device.type == "cpu":
        return bool(requested and cpu)
    return bool(requested and device.type == "cuda" and torch.cuda.is_bf16_supported())


def autocast(enabled: bool, device: torch.device):
    """``torch.autocast`` to bfloat16 on ``device`` when ``enabled``, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def checkpoint_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks whose activations are recomputed: ``model.checkpoint_blocks()`` when the network
    defines it, else the children of every outermost ``nn.Sequential`` (the stages of MONAI-style
    encoders and decoders)."""
    if hasattr(model, "checkpoint_blocks"):
        return list(model.checkpoint_blocks())
    blocks, inside = [], set()
    for module in model.modules():
        if id(module) in inside:
            continue
        if isinstance(module, nn.Sequential):
            blocks += [child for child in module.children() if any(p.requires_grad for p in child.parameters())]
            inside.update(id(m) for m in module.modules())
    return blocks


def enable_gradient_checkpointing(model: nn.Module) -> int:
    """Recompute the activations of :func:`checkpoint_blocks` in the backward pass instead of storing
    them (``torch.utils.checkpoint``, non-reentrant). Parameters and state-dict keys are unchanged.
    Returns the number of blocks."""
    from torch.utils.checkpoint import checkpoint

    blocks = checkpoint_blocks(model)
    for block in blocks:
        if getattr(block, "_mrsynth_checkpointed", False):
            continue
        plain_forward = block.forward

        def forward(self, *args, _plain=plain_forward, **kwargs):
            if not torch.is_grad_enabled():
                return _plain(*args, **kwargs)
            return checkpoint(_plain, *args, use_reentrant=False, **kwargs)

        block.forward = types.MethodType(forward, block)
        block._mrsynth_checkpointed = True
    return len(blocks)


__all__ = ["autocast", "bf16_enabled", "checkpoint_blocks", "enable_gradient_checkpointing"]
