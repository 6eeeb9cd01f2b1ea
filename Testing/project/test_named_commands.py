"""Every command that a message, docstring or help text of the code tells the user to run exists."""

from __future__ import annotations

import argparse
import importlib.util
import re

from support.paths import REPO

SOURCES = ("MRSynthLib", "MRSynth", "training", "benchmarks")
TRAIN_COMMAND = re.compile(r"mrsynth-train ([a-z][a-z0-9-]*)")
CLI_COMMAND = re.compile(r"[`\"]mrsynth ([a-z][a-z0-9-]*)")
MODULE_COMMAND = re.compile(r"python -m ([A-Za-z_][A-Za-z0-9_.]*[A-Za-z0-9_])")


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    return {name for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name in action.choices}


def _named(pattern: re.Pattern) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            for match in pattern.finditer(path.read_text(encoding="utf-8")):
                found.setdefault(match.group(1), []).append(str(path.relative_to(REPO)))
    return found


def test_every_named_mrsynth_train_subcommand_exists():
    from training.cli import build_parser

    named = _named(TRAIN_COMMAND)
    assert "export-onnx" in named  # the command the ONNX errors name (it did not exist before issue 17)
    missing = {name: files for name, files in named.items() if name not in _subcommands(build_parser())}
    assert not missing, f"messages name mrsynth-train subcommands that do not exist: {missing}"


def test_every_named_mrsynth_subcommand_exists():
    from MRSynthLib.commands.cli import build_parser

    named = _named(CLI_COMMAND)
    assert named
    missing = {name: files for name, files in named.items() if name not in _subcommands(build_parser())}
    assert not missing, f"messages name mrsynth subcommands that do not exist: {missing}"


def test_every_named_python_module_exists():
    named = _named(MODULE_COMMAND)
    assert "training.bundles.onnx_export" in named
    missing = {name: files for name, files in named.items()
               if name.split(".")[0] in {"MRSynthLib", "training", "benchmarks"} and importlib.util.find_spec(name) is None}
    assert not missing, f"messages name modules that do not exist: {missing}"
