"""Typed configuration of the classical ``regression`` baseline (the ``regression`` section of a training config).

The learner is scikit-learn's ``HistGradientBoostingRegressor`` (training only; bundles store the trees
as arrays and predict in numpy). Its settings keep scikit-learn's names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from MRSynthLib.methods.regression_features import FeatureSpec

LOSSES: tuple[str, ...] = ("squared_error", "absolute_error")
"""Losses whose link is the identity (so the raw tree sum is the prediction)."""


@dataclass(frozen=True)
class RegressionTask:
    """One regressor: ``target`` from exactly ``inputs``."""

    target: str
    inputs: tuple[str, ...]

    def __post_init__(self) -> None:
        from MRSynthLib.contrasts import canonical_contrast
        from MRSynthLib.errors import ContrastError

        try:
            target = canonical_contrast(self.target)
            inputs = tuple(canonical_contrast(c) for c in self.inputs)
        except ContrastError as error:
            raise ValueError(str(error)) from None
        if not inputs or target in inputs or len(set(inputs)) != len(inputs):
            raise ValueError(f"a task needs distinct inputs other than its target, not {target} from {list(inputs)}")
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "inputs", inputs)


@dataclass(frozen=True)
class ErrorModelConfig:
    """The uncertainty map of a regression bundle: a second, smaller tree ensemble per regressor that predicts
    the absolute error the regressor makes on a case it was not trained on.

    Its training targets are out-of-fold residuals: the training cases of a task are split into ``folds``
    groups by case, the regressor is refit without each group and predicts it. The error a new scanner or
    patient brings (not only the in-sample noise) is what it learns. ``folds`` 0 (default) = no error model
    and no uncertainty map; 4 is a good start (training then fits every regressor ``folds + 1`` times).
    """

    folds: int = 0
    max_iter: int = 100
    learning_rate: float = 0.1
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 100

    def __post_init__(self) -> None:
        if self.folds == 1 or self.folds < 0:
            raise ValueError(f"error_model.folds must be 0 (no uncertainty map) or at least 2, not {self.folds}")
        if self.max_iter < 1 or self.max_leaf_nodes < 2 or self.min_samples_leaf < 1 or not self.learning_rate > 0:
            raise ValueError("error_model needs max_iter >= 1, max_leaf_nodes >= 2, min_samples_leaf >= 1 and "
                             "learning_rate > 0")


@dataclass(frozen=True)
class RegressionConfig:
    """Which regressors to train, on how many voxels, with which boosting settings.

    ``tasks`` empty: one regressor per (non-empty input subset, target) that at least ``min_cases``
    training cases support (have every input and the target). ``samples_per_case`` foreground voxels
    are drawn per training case, scaled by its source's ``weight``.
    """

    tasks: tuple[RegressionTask, ...] = ()
    min_cases: int = 1
    samples_per_case: int = 20000
    features: FeatureSpec = field(default_factory=FeatureSpec)
    loss: str = "squared_error"
    max_iter: int = 200
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 40
    l2_regularization: float = 0.0
    max_bins: int = 255
    early_stopping: bool = True
    validation_fraction: float = 0.1
    n_iter_no_change: int = 10
    error_model: ErrorModelConfig = field(default_factory=ErrorModelConfig)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if self.samples_per_case < 100 or self.min_cases < 1 or self.max_iter < 1:
            raise ValueError("samples_per_case must be >= 100, min_cases >= 1 and max_iter >= 1")


__all__ = ["LOSSES", "ErrorModelConfig", "RegressionConfig", "RegressionTask"]
