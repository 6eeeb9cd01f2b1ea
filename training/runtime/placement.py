"""Where training tensors live: one helper moves a batch to the run's device, one lists what is not there.

Every trainer keeps its networks, optimiser state, EMA copies and discriminators on ``runtime.device``;
batches are drawn on the CPU (numpy) and moved with :func:`to_device`. :func:`misplaced` is the check the
tests run after a step: it names every parameter, buffer, optimiser state and tensor left elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def to_device(value, device: torch.device):
    """``value`` with every tensor inside it (dicts, lists and tuples, nested) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(item, device) for item in value)
    return value


def _same(tensor: torch.Tensor, device: torch.device) -> bool:
    return tensor.device.type == device.type and (device.index is None or tensor.device.index == device.index)


def misplaced(device: torch.device, modules: Mapping[str, torch.nn.Module] = {},
              optimizers: Mapping[str, torch.optim.Optimizer] = {}, tensors: Mapping[str, object] = {}) -> list[str]:
    """Names of the parameters, buffers, optimiser states and (nested) tensors not on ``device``; empty when all are."""
    device = torch.device(device)
    wrong = []
    for name, module in modules.items():
        for key, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if not _same(tensor, device):
                wrong.append(f"{name}.{key} ({tensor.device})")
    for name, optimizer in optimizers.items():
        for index, state in enumerate(optimizer.state.values()):
            for key, tensor in state.items():
                if isinstance(tensor, torch.Tensor) and tensor.ndim > 0 and not _same(tensor, device):
                    wrong.append(f"{name}.state[{index}].{key} ({tensor.device})")

    def visit(prefix: str, value) -> None:
        if isinstance(value, torch.Tensor):
            if not _same(value, device):
                wrong.append(f"{prefix} ({value.device})")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                visit(f"{prefix}.{key}", item)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                visit(f"{prefix}[{index}]", item)

    for name, value in tensors.items():
        visit(name, value)
    return wrong


__all__ = ["misplaced", "to_device"]
