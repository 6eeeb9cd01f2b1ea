import json

import pytest

from MRSynthLib.models.bundle import ModelCard, load_bundle
from MRSynthLib.errors import BundleError
from MRSynthLib.networks.autoencoder import AutoencoderConfig
from MRSynthLib.networks.fusion import FusionConfig
from MRSynthLib.preprocessing.preprocess import PreprocessSpec
from MRSynthLib.models.registry import list_models, resolve_model
from support.bundles import random_bundle


def test_card_round_trip_and_verified_load(tmp_path):
    folder = random_bundle(tmp_path / "b")
    bundle = load_bundle(folder)
    assert bundle.card.name == "random-test"
    assert ModelCard.from_dict(bundle.card.to_dict()) == bundle.card
    assert len(bundle.sha256) == 64


def test_tampered_weights_are_refused(tmp_path):
    folder = random_bundle(tmp_path / "b")
    path = folder / "translator.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(folder)


@pytest.mark.parametrize("weight_name, message", [("../evil.safetensors", "outside"), ("model.pt", "pickled")])
def test_unsafe_weight_files_are_refused(tmp_path, weight_name, message):
    folder = random_bundle(tmp_path / "b")
    card = json.loads((folder / "bundle.json").read_text())
    card["weights"][weight_name] = "0" * 64
    (folder / "bundle.json").write_text(json.dumps(card))
    (tmp_path / "evil.safetensors").write_bytes(b"x")
    (folder / "model.pt").write_bytes(b"x")
    with pytest.raises(BundleError, match=message):
        load_bundle(folder)


def test_zip_or_file_offered_as_bundle(tmp_path):
    archive = tmp_path / "bundle.zip"
    archive.write_bytes(b"PK\x03\x04")
    with pytest.raises(BundleError, match="zip archives and pickles are not accepted"):
        load_bundle(archive)
    with pytest.raises(BundleError, match="no bundle.json"):
        load_bundle(tmp_path)


def test_card_with_unknown_or_missing_keys(tmp_path):
    folder = random_bundle(tmp_path / "b")
    card = json.loads((folder / "bundle.json").read_text())
    (folder / "bundle.json").write_text(json.dumps({**card, "surprise": 1}))
    with pytest.raises(BundleError, match="unknown keys"):
        load_bundle(folder)
    del card["weights"]
    (folder / "bundle.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="lacks weights"):
        load_bundle(folder)


def test_registry_finds_user_bundles_and_explains_unknown_names(tmp_path, monkeypatch):
    monkeypatch.setenv("MRSYNTH_HOME", str(tmp_path))
    random_bundle(tmp_path / "models" / "my-model", name="my-model")
    names = {e.name: e.source for e in list_models()}
    assert names["my-model"] == "user"
    assert resolve_model("my-model").card.name == "my-model"
    assert resolve_model(str(tmp_path / "models" / "my-model")).card.name == "my-model"
    with pytest.raises(BundleError, match="mrsynth models"):
        resolve_model("no-such-model")


def test_builtin_regression_model_is_present_verifies_and_states_its_terms():
    """The classical baseline ships too (issue 13): trained on every co-registered real development case."""
    bundle = resolve_model("mrsynth-regression")
    card = bundle.card
    assert card.method == "regression" and card.version == "1.2.0"
    assert {"t1ce", "flair", "t2", "pd"} <= set(card.output_contrasts)
    assert "non-commercial" in card.licence.lower() and "CC BY-NC-SA" in card.licence
    assert card.provenance["git"] and not card.provenance["git"].endswith("-dirty")
    assert card.training_data["train_cases"]


def test_builtin_default_model_is_present_and_verifies(monkeypatch):
    """The default is the model that measures best on held-out real cases; it must give an uncertainty map for
    every task it offers, like the network models do."""
    monkeypatch.delenv("MRSYNTH_DEFAULT_MODEL", raising=False)
    bundle = resolve_model(None)
    assert bundle.card.name == "mrsynth-regression" and bundle.card.method == "regression"
    assert {"t1", "t1ce", "t2", "flair"} <= set(bundle.card.input_contrasts)
    assert bundle.card.training_data and bundle.card.validation
    assert bundle.card.uncertainty.startswith("expected error")
    assert all(entry["error_model"]["folds"] == 4 for entry in bundle.card.networks["regression"]["regressors"])
    assert bundle.card.seen_in_training("brats-gli-00001") is True  # the demo's real case: said so in its output


def _card(**extra) -> ModelCard:
    return ModelCard(name="m", version="0.0.0", method="regression", input_contrasts=("t1",), output_contrasts=("t2",),
                     preprocessing=PreprocessSpec(), networks={}, weights={}, **extra)


def test_card_says_whether_a_case_was_seen_in_training():
    card = _card(training_data={
        "split": {"train": ["real/brats-gli-00001", "phantom/phantom-1000"], "val": ["real/tcga-du-7294"],
                  "test": ["real/ms-ljubljana-p26"]}})
    assert card.seen_in_training("brats-gli-00001") is True and card.seen_in_training("tcga-du-7294") is True
    assert card.seen_in_training("ms-ljubljana-p26") is False  # a test case was held out
    assert card.seen_in_training("gli-00001") is False  # whole ids only
    assert _card().seen_in_training("x") is None  # not recorded


def test_card_networks_read_typed_with_one_sentence_errors(tmp_path):
    card = load_bundle(random_bundle(tmp_path / "b")).card
    autoencoder = card.network("autoencoder", AutoencoderConfig)
    assert isinstance(autoencoder, AutoencoderConfig) and autoencoder.to_dict() == card.networks["autoencoder"]
    assert card.network("translator", FusionConfig).contrasts == tuple(card.networks["translator"]["contrasts"])
    with pytest.raises(BundleError, match=r"has no networks\.denoiser section: re-export"):
        card.network("denoiser", FusionConfig)
    broken = ModelCard(**{**card.__dict__, "networks": {**card.networks, "translator": {"hidden": "many"}}})
    with pytest.raises(BundleError, match=r"malformed networks\.translator section .*: re-export"):
        broken.network("translator", FusionConfig)
