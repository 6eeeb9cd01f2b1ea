"""Which engine and predictor run a bundle, by its card's ``method``: one table instead of a fork.

Three families share the synthesis pipeline (:func:`MRSynthLib.synthesis.synthesize`) and differ only here:

- ``regression``: the classical baseline, numpy trees per voxel (:mod:`MRSynthLib.methods.regression`);
- the generative translator kinds ``<latent>-<kind>`` (:mod:`MRSynthLib.methods.translators.registry`), run by
  :func:`MRSynthLib.methods.translators.driver.predict_translator` on a torch or onnxruntime graph engine;
- everything else: the gated fusion bundles (``fsq-fusion``, ...), :func:`MRSynthLib.runtime.inference.predict`.

Engines and predictors are named ``"module:function"`` and imported when used, so choosing a family imports
neither torch nor onnxruntime (and tests may patch the function in its module).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable

from MRSynthLib.methods.regression import METHOD as REGRESSION
from MRSynthLib.methods.translators.registry import method_kind


@dataclass(frozen=True)
class MethodFamily:
    """How bundles of some methods are loaded and run.

    Attributes:
        applies: ``applies(method)`` is True for the card methods of this family.
        load_engine: ``"module:function"``, called as ``load_engine(bundle, backend, device, threads)``.
        predict: ``"module:function"``, called as ``predict(engine, arrays, target, samples=, seed=, window=,
            progress=, **options)``.
        options: which pipeline options the predictor takes: ``mask`` (the model-space foreground),
            ``contributions`` (bool), ``screen`` (bool).
    """

    name: str
    applies: Callable[[str], bool]
    load_engine: str
    predict: str
    options: tuple[str, ...]

    def engine_loader(self) -> Callable:
        return _resolve(self.load_engine)

    def predictor(self) -> Callable:
        return _resolve(self.predict)


def _resolve(reference: str) -> Callable:
    module, _, name = reference.partition(":")
    return getattr(import_module(module), name)


FAMILIES: tuple[MethodFamily, ...] = (
    MethodFamily("regression", lambda method: method == REGRESSION, "MRSynthLib.methods.regression:load_engine",
                 "MRSynthLib.methods.regression:predict", ("mask", "contributions")),
    MethodFamily("translator", lambda method: method_kind(method) is not None,
                 "MRSynthLib.methods.translators.engines:load_engine", "MRSynthLib.methods.translators.driver:predict_translator",
                 ("contributions",)),
    MethodFamily("fusion", lambda method: True, "MRSynthLib.runtime.backends:load_engine", "MRSynthLib.runtime.inference:predict",
                 ("contributions", "screen")),
)
"""Checked in order; the last one takes every other method."""


def family_of(method: str) -> MethodFamily:
    """The family that runs bundles of ``method``."""
    return next(family for family in FAMILIES if family.applies(method))


__all__ = ["FAMILIES", "MethodFamily", "family_of"]
