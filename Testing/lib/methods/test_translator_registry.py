"""The kind registry (issue 15): every kind's parts, graphs and window class are consistent, so a kind added to
:data:`MRSynthLib.methods.translators.registry.KINDS` is checked here without editing this file."""

from __future__ import annotations

import inspect

import pytest

from MRSynthLib.methods.translators.registry import GRAPHS, KINDS, PARTS, method_kind


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_names_known_parts_and_graphs_of_its_own_parts(kind):
    spec = KINDS[kind]
    assert spec.name == kind and spec.parts[0] == "autoencoder" and spec.graphs[:2] == ("encoder", "decoder")
    assert set(spec.parts) <= set(PARTS) and set(spec.graphs) <= set(GRAPHS)
    assert {GRAPHS[g].part for g in spec.graphs} == set(spec.parts)  # every part is used, no foreign graph
    assert method_kind(f"fsq-{kind}") == kind and method_kind(f"vq-{kind}") == kind and spec.uncertainty


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_window_class_takes_the_driver_arguments_and_runs_a_window(kind):
    window = KINDS[kind].window
    parameters = list(inspect.signature(window.__init__).parameters)
    assert parameters[1:] == ["engine", "names", "target", "samples", "seed", "sample_batch", "contributions"]
    assert list(inspect.signature(window.run).parameters)[1:] == ["window"]


@pytest.mark.parametrize("part", list(PARTS))
def test_every_part_builds_its_torch_network_from_its_config(part):
    pytest.importorskip("torch")
    from MRSynthLib.methods.translators.graphs import network_class

    network = network_class(part)
    config = PARTS[part].config
    assert config.from_dict(config().to_dict()) == config()  # the card entry round-trips
    methods = {GRAPHS[g].method for g in GRAPHS if GRAPHS[g].part == part} - {None}
    assert all(callable(getattr(network, method, None)) for method in methods), methods


def test_the_engine_tables_come_from_the_registry():
    from MRSynthLib.methods.translators.engines import GRAPH_INPUTS, GRAPH_OUTPUTS, KIND_GRAPHS, KIND_PARTS

    assert KIND_PARTS == {k: s.parts for k, s in KINDS.items()} and KIND_GRAPHS == {k: s.graphs for k, s in KINDS.items()}
    assert GRAPH_INPUTS == {g: s.inputs for g, s in GRAPHS.items()}
    assert GRAPH_OUTPUTS == {g: s.outputs for g, s in GRAPHS.items()}


def test_method_families_route_every_method():
    from MRSynthLib.methods.method_families import family_of

    assert family_of("regression").name == "regression" and family_of("fsq-fusion").name == "fusion"
    assert all(family_of(f"fsq-{kind}").name == "translator" for kind in KINDS)


def test_the_training_registry_covers_the_same_kinds_and_its_trainers_import():
    pytest.importorskip("torch")
    from training.kinds import TRAIN_KINDS, resolve

    assert set(TRAIN_KINDS) == set(KINDS)
    for name, kind in TRAIN_KINDS.items():
        trainer = kind.trainer_class()  # the training loop's Trainer protocol (training.translators.stage2_loop)
        assert all(callable(getattr(trainer, method, None)) for method in ("step", "held_out_loss", "validate")), name
        assert kind.name == name and kind.citation and callable(resolve(kind.export)) and kind.settings_class()()


def test_method_sections_come_from_the_training_registry():
    from training.config import ConfigError, config_from_dict
    from training.kinds import TRAIN_KINDS

    config = config_from_dict({"name": "x", "method": {"kind": "ldm", "ldm": {"validation_steps": 3}}})
    assert config.method.ldm.validation_steps == 3 and config.method.stage == "stage2_ldm"
    assert [name for name, _ in config.method.sections] == list(TRAIN_KINDS)
    assert all(type(getattr(config.method, name)) is kind.settings_class() for name, kind in TRAIN_KINDS.items())
    assert config_from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match=r"config\.method has unknown keys \['ldmm'\]: allowed keys are"):
        config_from_dict({"name": "x", "method": {"kind": "ldm", "ldmm": {}}})
    with pytest.raises(ConfigError, match=r"config\.method\.ldm\.validation_steps must be int"):
        config_from_dict({"name": "x", "method": {"ldm": {"validation_steps": "many"}}})
    with pytest.raises(ConfigError, match="kind must be one of fusion, ldm"):
        config_from_dict({"name": "x", "method": {"kind": "teleport"}})
