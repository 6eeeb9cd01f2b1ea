"""Inference of ``regression`` bundles: the classical baseline (gradient-boosted trees per voxel), numpy only.

A ``regression`` bundle holds one tree ensemble per (input subset, target) pair that its training
data supported, trained on the features of :mod:`MRSynthLib.methods.regression_features` in the bundle's
model space, and stored as flat arrays in ``regressors.safetensors`` (:mod:`MRSynthLib.methods.tree_ensemble`);
neither scikit-learn nor torch is needed here. The card's ``networks["regression"]`` lists them::

    {"features": {...FeatureSpec...}, "weights_file": "regressors.safetensors",
     "regressors": [{"key": "t1ce_from_t1_t2_flair", "target": "t1ce", "inputs": ["t1", "t2", "flair"], ...}]}

For given inputs the regressor whose input set is the largest subset of them is used (the exact set
when it was trained); inputs it does not use get a contribution of 0.

- **Uncertainty**: bundles trained with an error model (``regression.error_model.folds`` >= 2) hold, per
  regressor, a second ensemble that predicts the absolute error the regressor made on cases it had not
  seen (out-of-fold residuals). Asked for an uncertainty map (``samples >= 2``), the map is that expected
  absolute error times sqrt(pi/2), the standard deviation of a normal error with that mean absolute value,
  in the same units as the synthetic image. It is computed in one deterministic pass: the number of
  samples only switches it on. Bundles without error models refuse ``samples > 1``.
- **Contributions**: tree-path attribution (Saabas): every split moves the tree's expected output;
  the moves are summed per input contrast over all trees, and each input's share of the absolute
  sums is its contribution (0..1, summing to 1 per voxel; equal shares where nothing moved). The
  ``mask_distance`` feature is not an input and is left out of the shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from MRSynthLib.models.bundle import Bundle
from MRSynthLib.errors import BundleError, ContrastError, MRSynthError, NoUncertaintyError
from MRSynthLib.runtime.backends import available_cores, effective_threads
from MRSynthLib.runtime.inference import Prediction
from MRSynthLib.methods.regression_features import FeatureSpec, voxel_features
from MRSynthLib.methods.tree_ensemble import TreeEnsemble

METHOD = "regression"
WEIGHTS_FILE = "regressors.safetensors"
UNCERTAINTY = "none: the regression baseline is deterministic (no uncertainty map; --samples must be 1)"
UNCERTAINTY_ERROR_MODEL = (
    "expected error: per regressor, a second tree ensemble trained on its out-of-fold absolute residuals "
    "(cases held out by fold) predicts the absolute error at each voxel; the map is that times sqrt(pi/2) "
    "(the standard deviation of a normal error with that mean absolute value), from one deterministic pass "
    "(--samples >= 2 only switches it on)"
)
ERROR_SCALE = float(np.sqrt(np.pi / 2.0))
"""Mean absolute error -> standard deviation of a zero-mean normal error."""


def regressor_key(target: str, inputs: tuple[str, ...]) -> str:
    """``("t1ce", ("t1", "t2"))`` → ``"t1ce_from_t1_t2"`` (the tensor-name prefix in the weights file)."""
    return f"{target}_from_{'_'.join(inputs)}"


def error_key(key: str) -> str:
    """Tensor-name prefix of a regressor's error model: ``"t1ce_from_t1_t2"`` → ``"t1ce_from_t1_t2.error"``."""
    return f"{key}.error"


@dataclass(frozen=True)
class Regressor:
    """One trained (inputs → target) ensemble; its feature columns follow ``inputs`` in this order.
    ``error``: the ensemble predicting its absolute error on unseen cases (same features), when trained."""

    target: str
    inputs: tuple[str, ...]
    trees: TreeEnsemble
    error: TreeEnsemble | None = None


class RegressionEngine:
    """A loaded ``regression`` bundle: its feature definition, model spacing and regressors."""

    backend = "numpy"
    device = "cpu"
    threads = 1  # tree-walking threads (set by :func:`load_engine`)

    def __init__(self, bundle: Bundle) -> None:
        from safetensors.numpy import load

        card = bundle.card
        if card.method != METHOD:
            raise BundleError(f"Model {card.name} has method {card.method!r}, not {METHOD!r}: load it with the network backends.")
        section = card.networks.get(METHOD)
        if not isinstance(section, dict) or "regressors" not in section or "features" not in section:
            raise BundleError(f"Model card of {card.name} lacks networks.regression.features/regressors: re-export the bundle.")
        file_name = section.get("weights_file", WEIGHTS_FILE)
        if file_name not in card.weights:
            raise BundleError(f"Model card of {card.name} does not pin {file_name} in `weights`: re-export the bundle.")
        tensors = load(bundle.read_weight(file_name))
        self.name = card.name
        self.spacing = card.preprocessing.spacing
        self.features = FeatureSpec.from_dict(section["features"])
        self.regressors = []
        for entry in section["regressors"]:
            inputs = tuple(entry["inputs"])
            key = entry.get("key", regressor_key(entry["target"], inputs))
            error = entry.get("error_model")
            if error is not None and not (isinstance(error, dict) and isinstance(error.get("key"), str)):
                raise BundleError(f"Model card of {card.name}: regressor {key} has an error_model without a key: "
                                  f"re-export the bundle.")
            self.regressors.append(Regressor(entry["target"], inputs, TreeEnsemble.from_tensors(tensors, key),
                                             TreeEnsemble.from_tensors(tensors, error["key"]) if error else None))

    def choose(self, target: str, available: list[str]) -> Regressor:
        """The regressor for ``target`` using the most of ``available`` (exact input set when trained)."""
        usable = [r for r in self.regressors if r.target == target and set(r.inputs) <= set(available)]
        if not usable:
            trained = sorted("{" + ",".join(r.inputs) + "}" for r in self.regressors if r.target == target)
            raise ContrastError(
                f"Model {self.name} cannot synthesize {target} from {', '.join(available)}: it was trained for {target} "
                f"from {' or '.join(trained) or 'no input set'}; give those inputs or choose another --model."
            )
        return max(usable, key=lambda r: len(r.inputs))


_LOADED: dict[tuple[str, str], RegressionEngine] = {}


def load_engine(bundle: Bundle, backend: str = "auto", device: str = "auto", threads: int = 0) -> RegressionEngine:
    """The bundle's regressors, loaded once per process. Runs in numpy on the CPU; ``threads`` walk the trees in
    parallel (0 = every core this process may use; the output does not depend on it)."""
    if backend not in ("auto", "numpy"):
        raise MRSynthError(f"Model {bundle.card.name} is a regression bundle that runs in numpy: it has no {backend} "
                           f"backend; drop --backend.")
    if device == "cuda":
        raise MRSynthError(f"Model {bundle.card.name} is a regression bundle that runs on the CPU: drop --device cuda.")
    key = (str(bundle.path.resolve()), bundle.sha256)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = RegressionEngine(bundle)
    engine = _LOADED[key]
    engine.threads = effective_threads(threads) or available_cores()
    return engine


def predict(
    engine: RegressionEngine,
    arrays: dict[str, np.ndarray],
    target: str,
    *,
    mask: np.ndarray,
    samples: int = 1,
    seed: int = 0,
    window: int | None = None,
    progress: Callable[[str, float], None] | None = None,
    contributions: bool = True,
) -> Prediction:
    """Synthesize ``target`` from model-space inputs, voxel by voxel inside ``mask``.

    Args:
        arrays: contrast -> normalised model-space ``(z, y, x)`` array.
        mask: ``(z, y, x)`` bool foreground of the model space (outputs are 0 outside).
        samples: 1 = synthesis only; >= 2 adds the error model's uncertainty map (one pass whatever the
            number; refused when the chosen regressor has no error model). ``seed`` and ``window`` are unused.
        contributions: False skips the path attributions (faster; the returned dict is empty).

    Returns:
        :class:`~MRSynthLib.runtime.inference.Prediction` with the ``(z, y, x)`` uncertainty (or None with one sample)
        and path-attribution contributions.
    """
    report = progress or (lambda stage, fraction=0.0: None)
    names = list(arrays)
    regressor = engine.choose(target, names)
    if samples != 1 and regressor.error is None:
        raise NoUncertaintyError(
            f"Model {engine.name} (method regression) has no uncertainty map for {target} from "
            f"{', '.join(regressor.inputs)}: drop --uncertainty and --samples, or use a bundle trained with an "
            f"error model (regression.error_model.folds >= 2)."
        )
    mask = np.asarray(mask, dtype=bool)
    report("features", 0.0)
    features = voxel_features(arrays, mask, regressor.inputs, engine.features, engine.spacing)
    report("trees", 0.0)
    groups = engine.features.groups(regressor.inputs) if contributions else None
    values, attributions = regressor.trees.predict(features, groups, threads=engine.threads)
    synthetic = np.zeros(mask.shape, dtype=np.float32)
    synthetic[mask] = values
    maps = {}
    if contributions:
        shares = _shares(attributions[:len(regressor.inputs)])
        for name in names:
            share = np.zeros(mask.shape, dtype=np.float32)
            if name in regressor.inputs:
                share[mask] = shares[regressor.inputs.index(name)]
            maps[name] = share
    uncertainty = None
    if samples != 1:
        report("uncertainty", 0.0)
        uncertainty = np.zeros(mask.shape, dtype=np.float32)
        uncertainty[mask] = ERROR_SCALE * np.maximum(regressor.error.predict(features, threads=engine.threads)[0], 0.0)
    return Prediction(synthetic, uncertainty, maps, windows=1)


def _shares(attributions: np.ndarray) -> np.ndarray:
    """``(K, V)`` signed attributions → ``(K, V)`` float32 shares of their absolute values (equal where all are 0)."""
    magnitude = np.abs(attributions)
    total = magnitude.sum(axis=0, keepdims=True)
    equal = np.full_like(magnitude, 1.0 / max(len(magnitude), 1))
    return np.where(total > 0, magnitude / np.where(total > 0, total, 1.0), equal).astype(np.float32)


__all__ = ["ERROR_SCALE", "METHOD", "UNCERTAINTY", "UNCERTAINTY_ERROR_MODEL", "WEIGHTS_FILE", "RegressionEngine",
           "Regressor", "error_key", "load_engine", "predict", "regressor_key"]
