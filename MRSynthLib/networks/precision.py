"""Float32 islands inside mixed precision: the one place that switches autocast off for a loss or a distance.

Losses built from differences of nearly equal numbers (SSIM's variances, KL's ``exp(v) - 1 - v``, VQ's
squared distances) lose their meaning in bf16's 8-bit mantissa; they run in float32 whatever autocast says.
"""

from __future__ import annotations

import contextlib

import torch

AUTOCAST_DEVICE_TYPES = ("cpu", "cuda")


def full_precision(tensor: torch.Tensor):
    """A context with autocast off on ``tensor``'s device (a no-op context on devices without autocast, e.g. meta)."""
    if tensor.device.type not in AUTOCAST_DEVICE_TYPES:
        return contextlib.nullcontext()
    return torch.autocast(device_type=tensor.device.type, enabled=False)


__all__ = ["AUTOCAST_DEVICE_TYPES", "full_precision"]
