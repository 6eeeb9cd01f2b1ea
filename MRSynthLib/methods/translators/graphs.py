"""The torch modules of the generative translator kinds' parts and graphs, built from the kind registry.

One module per graph (:data:`MRSynthLib.methods.translators.registry.GRAPHS`), taking its inputs positionally in the
order the registry lists them: the torch backend calls exactly these modules and the ONNX export traces
exactly these modules, so both backends run the same computation.
"""

from __future__ import annotations

from importlib import import_module

from torch import nn

from MRSynthLib.methods.translators.registry import GRAPHS, PARTS


def network_class(part: str) -> type[nn.Module]:
    """The torch class of a registry part (``"module:Class"``, imported here)."""
    module, _, name = PARTS[part].network.partition(":")
    return getattr(import_module(module), name)


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
    return network_class(name)(PARTS[name].config.from_dict(config))


def graph_modules(parts: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """Graph name → module for every registry graph whose part is present (the part's ``forward`` or a method)."""
    return {graph.name: parts[graph.part] if graph.method is None else MethodCall(parts[graph.part], graph.method)
            for graph in GRAPHS.values() if graph.part in parts}


__all__ = ["MethodCall", "build_part", "graph_modules", "network_class"]
