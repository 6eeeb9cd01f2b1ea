"""The installed model bundles as the GUI needs them: name, contrasts, ONNX graphs, or why a bundle is broken.

Reads only the model cards (no weight verification, no torch), so it is fast enough for the GUI process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelInfo:
    """One bundle; ``error`` is set (and the contrast lists empty) when its card cannot be read."""

    name: str
    path: Path
    source: str = "path"
    version: str = ""
    method: str = ""
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    has_onnx: bool = False
    default: bool = False
    error: str | None = None

    @property
    def label(self) -> str:
        """Text for a model list: ``"name 0.1.0 (method)"`` or ``"name (broken)"``."""
        if self.error:
            return f"{self.name} (broken)"
        return f"{self.name} {self.version} ({self.method})" + (" - default" if self.default else "")


def _has_onnx_graphs(bundle) -> bool:
    try:
        from MRSynthLib.runtime.onnx_backend import has_onnx_parts
    except ImportError:  # a library without the ONNX backend
        return False
    return bool(has_onnx_parts(bundle))


def model_info(path: str | os.PathLike, name: str | None = None, source: str = "path", default: bool = False) -> ModelInfo:
    """Read one bundle folder's card."""
    from MRSynthLib.models.bundle import load_bundle
    from MRSynthLib.errors import MRSynthError

    path = Path(path)
    try:
        bundle = load_bundle(path, verify=False)
    except MRSynthError as error:
        return ModelInfo(name or path.name, path, source, default=default, error=str(error))
    card = bundle.card
    return ModelInfo(card.name, path, source, card.version, card.method, tuple(card.input_contrasts),
                     tuple(card.output_contrasts), _has_onnx_graphs(bundle), default)


def installed_models() -> list[ModelInfo]:
    """Built-in and user bundles (``MRSynthLib.models.registry``), the default first."""
    from MRSynthLib.models.registry import default_model_name, list_models

    infos = [model_info(entry.path, entry.name, entry.source, entry.name == default_model_name()) for entry in list_models()]
    return sorted(infos, key=lambda info: (not info.default, info.name))
