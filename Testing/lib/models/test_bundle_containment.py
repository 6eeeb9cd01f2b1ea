"""A bundle reads only its own hashed files (issue 14, class 4): every file a card references must be in its
hashed ``weights`` manifest (hence inside the folder), ONNX graphs with external data are refused, names that
become folder names are plain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from MRSynthLib.models.bundle import load_bundle, sha256_file
from MRSynthLib.errors import BundleError, MRSynthError
from MRSynthLib.runtime.onnx_backend import OnnxEngine
from MRSynthLib.runtime.torch_backend import TorchEngine
from support.bundles import random_bundle
from training.bundles.onnx_export import add_onnx_parts


@pytest.fixture(scope="module")
def onnx_folder(tmp_path_factory) -> Path:
    folder = random_bundle(tmp_path_factory.mktemp("bundles") / "with-onnx")
    add_onnx_parts(folder)
    return folder


def _copy(folder: Path, tmp_path: Path) -> tuple[Path, dict]:
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    return copy, json.loads((copy / "bundle.json").read_text())


def _save(folder: Path, card: dict) -> None:
    (folder / "bundle.json").write_text(json.dumps(card))


def test_onnx_graph_outside_the_bundle_is_refused(onnx_folder, tmp_path):
    folder, card = _copy(onnx_folder, tmp_path)
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(folder / "onnx" / "decoder.onnx", outside)
    card["networks"]["onnx"]["graphs"]["decoder"] = str(outside)  # absolute, never hashed
    _save(folder, card)
    with pytest.raises(BundleError, match="not one of its hashed weight files"):
        OnnxEngine(load_bundle(folder))


def test_onnx_external_data_is_refused_even_when_hashed(onnx_folder, tmp_path):
    import onnx

    folder, card = _copy(onnx_folder, tmp_path)
    graph = folder / "onnx" / "decoder.onnx"
    model = onnx.load(str(graph))
    onnx.save_model(model, str(graph), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="decoder.data", size_threshold=0)
    card["weights"]["onnx/decoder.onnx"] = sha256_file(graph)
    _save(folder, card)
    with pytest.raises(BundleError, match="external data"):
        OnnxEngine(load_bundle(folder))


def test_weights_are_used_as_verified_in_memory(onnx_folder, tmp_path):
    """A file swapped after load_bundle verified it (time of check to time of use) is refused when read."""
    folder, _ = _copy(onnx_folder, tmp_path)
    bundle = load_bundle(folder)
    data = bytearray((folder / "translator.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "translator.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        TorchEngine(bundle, "cpu")


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "", "x" * 101, 7])
def test_card_names_must_be_plain(onnx_folder, tmp_path, name):
    folder, card = _copy(onnx_folder, tmp_path)
    card["name"] = name
    _save(folder, card)
    with pytest.raises(BundleError, match="bundle name is letters"):
        load_bundle(folder)


MUTATIONS = {
    "weights as a list": lambda card, tmp: card.__setitem__("weights", list(card["weights"])),
    "networks as a string": lambda card, tmp: card.__setitem__("networks", "x"),
    "weight key absolute": lambda card, tmp: card["weights"].__setitem__(str(tmp / "evil.safetensors"), "0" * 64),
    "weight key traversing": lambda card, tmp: card["weights"].__setitem__("../evil.safetensors", "0" * 64),
    "graph absolute": lambda card, tmp: card["networks"]["onnx"]["graphs"].__setitem__("encoder", str(tmp / "evil.onnx")),
    "graph traversing": lambda card, tmp: card["networks"]["onnx"]["graphs"].__setitem__("translator_head", "../evil.onnx"),
    "graph not a string": lambda card, tmp: card["networks"]["onnx"]["graphs"].__setitem__("decoder", ["x"]),
    "hash changed": lambda card, tmp: card["weights"].__setitem__("onnx/encoder.onnx", "0" * 64),
    "name traversing": lambda card, tmp: card.__setitem__("name", "../../x"),
    "onnx downsampling 0": lambda card, tmp: card["networks"]["onnx"].__setitem__("downsampling", 0),
    "onnx graphs missing": lambda card, tmp: card["networks"]["onnx"].pop("graphs"),
    "spacing 0.01 mm": lambda card, tmp: card["preprocessing"].__setitem__("spacing", [0.01, 0.01, 0.01]),
    "unchanged": lambda card, tmp: None,
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3, unique=True))
def test_any_card_mutation_loads_verified_or_is_refused_in_one_line(onnx_folder, tmp_path_factory, chosen):
    tmp = tmp_path_factory.mktemp("mutated")
    (tmp / "evil.safetensors").write_bytes(b"x")
    shutil.copy(onnx_folder / "onnx" / "encoder.onnx", tmp / "evil.onnx")
    folder, card = _copy(onnx_folder, tmp)
    for name in chosen:
        try:
            MUTATIONS[name](card, tmp)
        except (TypeError, AttributeError, KeyError):  # an earlier mutation replaced the section this one edits
            pass
    _save(folder, card)
    try:
        bundle = load_bundle(folder)
        engines = [TorchEngine(bundle, "cpu"), OnnxEngine(bundle)]
    except (BundleError, MRSynthError) as error:
        assert "\n" not in str(error) and str(error).endswith(".")
        return
    assert chosen == ["unchanged"]  # every real mutation is refused
    rng = np.random.default_rng(0)
    arrays = np.float32(rng.random((1, 1, 16, 16, 16)))
    assert all(np.isfinite(e.encode(arrays)).all() for e in engines)


def test_one_broken_bundle_does_not_hide_the_others(onnx_folder, tmp_path, monkeypatch, capsys):
    from MRSynthLib.commands.cli import main

    models = tmp_path / "home" / "models"
    good, _ = _copy(onnx_folder, models)
    shutil.copytree(good, models / "broken")
    card = json.loads((models / "broken" / "bundle.json").read_text())
    card["weights"] = list(card["weights"])
    _save(models / "broken", card)
    monkeypatch.setenv("MRSYNTH_HOME", str(tmp_path / "home"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "broken" in out and "BROKEN" in out and "must be JSON objects" in out
    assert any(line.startswith("copy ") and "BROKEN" not in line for line in out.splitlines())
