"""Where bundles come from: built-in (``Resources/Models``), per-user (``~/.mrsynth/models`` or
``$MRSYNTH_HOME/models``), or any folder path. No downloads, ever."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from MRSynthLib.models.bundle import CARD_NAME, Bundle, load_bundle
from MRSynthLib.errors import BundleError

DEFAULT_MODEL = "mrsynth-regression"
"""The shipped default: the bundle that measures best on held-out real cases (docs/MODEL_CARD.md). Since 2026-12-06
the regression baseline with its error-model uncertainty; the latent models trained so far are below it."""
DEFAULT_MODEL_VARIABLE = "MRSYNTH_DEFAULT_MODEL"
"""Environment variable naming the bundle (registry name or folder) used when no model is given."""


def default_model_name() -> str:
    """``$MRSYNTH_DEFAULT_MODEL`` when set (a site's own default), else the shipped :data:`DEFAULT_MODEL`."""
    return os.environ.get(DEFAULT_MODEL_VARIABLE, "").strip() or DEFAULT_MODEL


def builtin_models_dir() -> Path:
    """``Resources/Models`` beside the package (source checkout and installed Slicer extension)."""
    here = Path(__file__).resolve().parents[1]  # the MRSynthLib package folder
    for candidate in (here.parent / "Resources" / "Models", here / "Resources" / "Models"):
        if candidate.is_dir():
            return candidate
    return here.parent / "Resources" / "Models"


def user_models_dir() -> Path:
    home = os.environ.get("MRSYNTH_HOME")
    return (Path(home) if home else Path.home() / ".mrsynth") / "models"


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    source: str  # "built-in" | "user"
    path: Path


def list_models() -> list[RegistryEntry]:
    """Every bundle folder found in the built-in and user locations (user entries shadow built-ins)."""
    entries: dict[str, RegistryEntry] = {}
    for source, root in (("built-in", builtin_models_dir()), ("user", user_models_dir())):
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if (folder / CARD_NAME).is_file():
                entries[folder.name] = RegistryEntry(folder.name, source, folder)
    return sorted(entries.values(), key=lambda e: e.name)


def resolve_model(name_or_path: str | os.PathLike | None = None) -> Bundle:
    """Load a bundle by registry name or folder path (``None`` → :func:`default_model_name`).

    Raises:
        BundleError: when nothing by that name or path exists, or the bundle fails verification.
    """
    name = str(name_or_path) if name_or_path is not None else default_model_name()
    for entry in list_models():
        if entry.name == name:
            return load_bundle(entry.path)
    path = Path(name).expanduser()
    if path.exists():
        return load_bundle(path)
    available = ", ".join(e.name for e in list_models()) or "none installed"
    raise BundleError(
        f"Model {name!r} is neither an installed bundle nor a folder: use `mrsynth models` to list them "
        f"(available: {available}) or give a bundle folder path."
    )
