"""Model bundles: a folder with ``bundle.json`` (the model card) and safetensors weights.

The card is the contract between training and inference: it fixes the method, the contrasts, the
preprocessing and the network architectures, and records the sha256 of every weight file, verified
on load. Loading a bundle never imports the training package and never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from MRSynthLib.contrasts import canonical_contrast
from MRSynthLib.errors import BundleError
from MRSynthLib.files.input_digest import sha256_file  # noqa: F401  (bundles hash their files with it)
from MRSynthLib.preprocessing.preprocess import PreprocessSpec

NetworkConfig = TypeVar("NetworkConfig")
"""A torch-free architecture dataclass with ``from_dict`` (``MRSynthLib.networks.configs``)."""

CARD_NAME = "bundle.json"
FORMAT_VERSION = 1
SYNTHETIC_NOTICE = "SYNTHETIC - not for diagnosis"


@dataclass(frozen=True)
class ModelCard:
    """Everything about a bundle except its weights.

    ``networks`` maps a part name (``"autoencoder"``, ``"translator"``) to its architecture config as stored
    (read it typed with :meth:`network`); ``weights`` maps a file name inside the bundle to its sha256.
    """

    name: str
    version: str
    method: str
    input_contrasts: tuple[str, ...]
    output_contrasts: tuple[str, ...]
    preprocessing: PreprocessSpec
    networks: dict
    weights: dict[str, str]
    description: str = ""
    output_intensity: str = "normalised units: 0 = background, ~1 = bright tissue (the 99.5th foreground percentile)"
    uncertainty: str = "std over stochastic passes (MC dropout in the translator + left-right test-time flip)"
    training_data: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    intended_use: str = "Research only. Synthetic images are not for diagnosis."
    licence: str = "Apache-2.0"
    citation: str = ""
    format_version: int = FORMAT_VERSION

    def network(self, part: str, config: type[NetworkConfig]) -> NetworkConfig:
        """``networks[part]`` as the typed, torch-free ``config`` class (its ``from_dict``).

        Raises:
            BundleError: the card has no such entry, or it does not make a valid ``config``.
        """
        return card_network(self, part, config)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["input_contrasts"] = list(self.input_contrasts)
        out["output_contrasts"] = list(self.output_contrasts)
        out["preprocessing"] = self.preprocessing.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict, source: str = "bundle.json") -> ModelCard:
        required = ("name", "version", "method", "input_contrasts", "output_contrasts", "preprocessing", "networks", "weights")
        missing = [key for key in required if key not in data]
        if missing:
            raise BundleError(f"Model card {source} lacks {', '.join(missing)}: re-export the bundle with mrsynth-train export.")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BundleError(f"Model card {source} has unknown keys {unknown}: it was written by a newer MRSynth; upgrade MRSynth.")
        values = dict(data)
        try:
            values["input_contrasts"] = tuple(canonical_contrast(c) for c in data["input_contrasts"])
            values["output_contrasts"] = tuple(canonical_contrast(c) for c in data["output_contrasts"])
            values["preprocessing"] = PreprocessSpec.from_dict(data["preprocessing"])
            if not isinstance(data["weights"], dict) or not isinstance(data["networks"], dict):
                raise TypeError("`weights` and `networks` must be JSON objects")
        except (TypeError, ValueError, KeyError) as error:
            raise BundleError(f"Model card {source} is malformed ({error}): re-export the bundle.") from None
        name = data["name"]
        if not isinstance(name, str) or not BUNDLE_NAME.fullmatch(name) or name in (".", ".."):
            raise BundleError(f"Model card {source} has name {name!r}: a bundle name is letters, digits, '.', '_' and '-' "
                              f"(it names output folders); re-export the bundle with a plain name.")
        return cls(**values)

    @property
    def short_description(self) -> str:
        return f"{self.name} {self.version} ({self.method})"

    def seen_in_training(self, case_id: str) -> bool | None:
        """Whether the case (folder name, e.g. ``"brats-gli-00001"``) was among the bundle's training or
        validation cases: ``training_data.split`` holds ``source/case`` ids. None when the card does not list
        its cases (bundles made before cards recorded them)."""
        split = self.training_data.get("split") if isinstance(self.training_data, dict) else None
        if not isinstance(split, dict):
            return None
        seen = [str(c) for name in ("train", "val") for c in split.get(name, ()) or ()]
        return any(c == case_id or c.endswith("/" + case_id) for c in seen)


BUNDLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A card's ``name``: also a folder name in ``mrsynth compare`` outputs, so no separators and no ``..``."""


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    card: ModelCard

    def weight_path(self, file_name: str) -> Path:
        """Path of ``file_name``, which must be one of the card's hashed ``weights`` (checked inside the folder by
        :func:`load_bundle`): a card cannot make MRSynth read any other file."""
        if not isinstance(file_name, str) or file_name not in self.card.weights:
            raise BundleError(
                f"Model card {self.path / CARD_NAME} refers to {file_name!r}, which is not one of its hashed weight "
                f"files: refusing it; re-export the bundle with mrsynth-train.")
        return self.path / file_name

    def read_weight(self, file_name: str) -> bytes:
        """The bytes of a weight file, verified against the card's sha256 in memory (what is checked is what is used)."""
        data = self.weight_path(file_name).read_bytes()
        if hashlib.sha256(data).hexdigest() != self.card.weights[file_name]:
            raise BundleError(f"Weight file {self.path / file_name} does not match the sha256 in "
                              f"{self.path / CARD_NAME} (tampered or damaged): re-copy the bundle.")
        return data

    @property
    def sha256(self) -> str:
        """Digest of the card, which itself pins every weight file: identifies the bundle as a whole."""
        return sha256_file(self.path / CARD_NAME)

    def provenance(self) -> dict:
        return {"name": self.card.name, "version": self.card.version, "method": self.card.method,
                "sha256": self.sha256, "path": str(self.path)}


def load_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read and verify a bundle folder.

    Raises:
        BundleError: no card, malformed card, a weight file missing, outside the folder, not
            safetensors/onnx, or whose sha256 differs from the card.
    """
    folder = Path(path)
    if folder.is_file():
        raise BundleError(
            f"Model {folder} is a file: a bundle is a folder with {CARD_NAME} and *.safetensors weights "
            f"(zip archives and pickles are not accepted; unpack it first)."
        )
    card_path = folder / CARD_NAME
    if not card_path.is_file():
        raise BundleError(f"Model folder {folder} has no {CARD_NAME}: give a bundle folder exported by mrsynth-train.")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"Model card {card_path} is not valid JSON ({error}): re-export the bundle.") from None
    if not isinstance(data, dict):
        raise BundleError(f"Model card {card_path} must be a JSON object: re-export the bundle.")
    card = ModelCard.from_dict(data, str(card_path))
    root = folder.resolve()
    for file_name, expected in card.weights.items():
        file_path = (folder / file_name).resolve()
        if root not in file_path.parents:
            raise BundleError(
                f"Model card {card_path} names weight file {file_name!r} outside the bundle folder: refusing it; "
                f"use a bundle exported by mrsynth-train."
            )
        if file_path.suffix not in (".safetensors", ".onnx"):
            raise BundleError(f"Weight file {file_name} in {folder} is not .safetensors or .onnx: pickled weights are refused.")
        if not file_path.is_file():
            raise BundleError(f"Weight file {file_path} named in {card_path} is missing: re-copy the whole bundle folder.")
        if verify and sha256_file(file_path) != expected:
            raise BundleError(
                f"Weight file {file_path} does not match the sha256 in {card_path} (tampered or damaged): re-copy the bundle."
            )
    return Bundle(path=folder, card=card)


def card_network(card, part: str, config: type[NetworkConfig]) -> NetworkConfig:
    """:meth:`ModelCard.network` for any card-like object with ``name`` and ``networks``."""
    data = card.networks.get(part)
    if not isinstance(data, dict):
        raise BundleError(f"Model card of {card.name} has no networks.{part} section: re-export the bundle.")
    try:
        return config.from_dict(data)
    except (KeyError, TypeError, ValueError) as error:
        raise BundleError(f"Model card of {card.name} has a malformed networks.{part} section ({error}): "
                          f"re-export the bundle.") from None


def write_card(card: ModelCard, folder: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write ``bundle.json`` atomically."""
    from MRSynthLib.files.atomic import write_json

    return write_json(Path(folder) / CARD_NAME, card.to_dict(), overwrite=overwrite)
