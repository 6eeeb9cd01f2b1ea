"""Training-state checkpoints without pickles: tensors in safetensors, everything else in JSON.

A state is a tree of dicts, lists and tuples whose leaves are tensors, numpy arrays, numbers, strings,
booleans or None (a model's ``state_dict()``, an optimiser's, a scheduler's, step counters). It is written as

* ``<name>.json``: the tree with each tensor replaced by a reference, and the name of the tensor file;
* ``<name>-<sha8>.safetensors``: the tensors, named by the first 8 hex digits of their content's hash.

The JSON file is renamed into place last, so a reader sees either the old pair or the new one, never a
mix; tensor files that the JSON no longer names are removed after the swap. Dict keys keep their type
(optimiser states are keyed by ints), tuples come back as tuples.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

FORMAT = "mrsynth-training-state/1"


class CheckpointError(RuntimeError):
    """A checkpoint file pair is missing a part, was changed, or holds something that cannot be stored."""


def _encode(value, tensors: dict[str, torch.Tensor], path: str):
    if isinstance(value, torch.Tensor):
        key = path or "root"
        tensors[key] = value.detach().cpu().contiguous()
        return {"tensor": key}
    if isinstance(value, np.ndarray):
        key = path or "root"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
        return {"ndarray": key}
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise CheckpointError(f"state key {k!r} at {path or 'root'} is neither a string nor an integer")
            items.append([k, _encode(v, tensors, f"{path}/{k}")])
        return {"dict": items}
    if isinstance(value, (list, tuple)):
        encoded = [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(value)]
        return {"tuple" if isinstance(value, tuple) else "list": encoded}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise CheckpointError(f"cannot store {type(value).__name__} at {path or 'root'} in a checkpoint "
                          "(only tensors, arrays, numbers, strings, lists and dicts)")


def _decode(node: dict, tensors: dict[str, torch.Tensor]):
    (kind, payload), = node.items()
    if kind == "tensor":
        return tensors[payload]
    if kind == "ndarray":
        return tensors[payload].numpy()
    if kind == "dict":
        return {k: _decode(v, tensors) for k, v in payload}
    if kind == "list":
        return [_decode(v, tensors) for v in payload]
    if kind == "tuple":
        return tuple(_decode(v, tensors) for v in payload)
    return payload


def save_state(folder: Path, name: str, state: dict) -> Path:
    """Write ``state`` as ``folder/<name>.json`` + its tensor file, atomically; returns the JSON path."""
    from safetensors.torch import save

    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors, "")
    blob = save(tensors) if tensors else b""
    digest = hashlib.sha256(blob).hexdigest()
    tensor_name = f"{name}-{digest[:8]}.safetensors"
    tensor_path = folder / tensor_name
    if not tensor_path.exists():
        _write_atomic(tensor_path, blob)
    record = {"format": FORMAT, "tensors": tensor_name, "sha256": digest, "state": tree}
    json_path = folder / f"{name}.json"
    _write_atomic(json_path, (json.dumps(record) + "\n").encode("utf-8"))
    for stale in folder.glob(f"{name}-*.safetensors"):
        if stale.name != tensor_name:
            stale.unlink(missing_ok=True)
    return json_path


def load_state(folder: Path, name: str) -> dict | None:
    """The state saved by :func:`save_state`, tensors on the CPU; None when ``folder/<name>.json`` is absent.

    Raises:
        CheckpointError: the tensor file is missing or its hash differs from the one recorded.
    """
    from safetensors.torch import load

    json_path = folder / f"{name}.json"
    if not json_path.exists():
        return None
    record = json.loads(json_path.read_text(encoding="utf-8"))
    if record.get("format") != FORMAT:
        raise CheckpointError(f"{json_path} is not a training-state checkpoint ({FORMAT})")
    tensor_path = folder / record["tensors"]
    if not tensor_path.exists():
        raise CheckpointError(f"{json_path} names {tensor_path.name}, which is missing: restore it or start a new run")
    blob = tensor_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != record["sha256"]:
        raise CheckpointError(f"{tensor_path} does not match the hash in {json_path.name}: the file was changed")
    return _decode(record["state"], load(blob) if blob else {})


def _write_atomic(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    part.replace(path)


__all__ = ["CheckpointError", "load_state", "save_state"]
