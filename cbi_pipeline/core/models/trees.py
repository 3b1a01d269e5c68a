"""LightGBM and XGBoost on the purged walk-forward: h-step log returns, regime weights, early stopping.

Per fold: the features are ranked by |Pearson correlation| with the label on the fold's fit rows
only and the top ``max_features`` kept; regime weights are scaled to mean 1 over the fit rows
(and over the validation rows for the early-stopping metric); the booster grows up to
``n_estimators`` trees and keeps those up to the best validation score
(``early_stopping_rounds`` patience). Seeds are fixed and LightGBM runs in deterministic mode, so
a rerun on the same data gives identical predictions.

The walk-forward itself (``core.models.learners.walk_forward_trees``) runs through the fold cache.
The final model for forecasting is fitted on every labelled row with the number of trees that
early stopping chose on the last fold (the fold whose training data is closest to it). Its
feature importance (``TreeModel.feature_importance``) is the total gain of its splits on each
feature it reads, as a share of all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from cbi_pipeline.core.fingerprint import digest
from cbi_pipeline.core.vocabulary import LIGHTGBM, TREE_FAMILIES, XGBOOST
from cbi_pipeline.core.walkforward import TrainingData, normalised_weights

MODEL_FILES = {LIGHTGBM: "model.txt", XGBOOST: "model.json"}
# Keys of get_config_for_model that are not library parameters (or are renamed).
_CONTROL_KEYS = {"n_estimators", "early_stopping_rounds", "horizon_days", "n_jobs", "num_threads"}


class TreeTrainingError(ValueError):
    """A tree family was asked for something it cannot do; the message says what."""


@dataclass(frozen=True)
class TreeSpec:
    """A tree family's settings for one horizon.

    hyper: ``get_config_for_model(family, horizon)`` (n_estimators, early_stopping_rounds,
        threads and the library's own parameters such as max_depth or learning_rate).
    max_features: features kept per fold by |correlation| with the label on the fit rows; 0 = all.
    max_bin: histogram bins per feature (both libraries).
    seed: the libraries' random seed.
    """

    family: str
    hyper: Mapping[str, Any] = field(default_factory=dict)
    max_features: int = 32
    max_bin: int = 64
    seed: int = 42

    def __post_init__(self) -> None:
        if self.family not in TREE_FAMILIES:
            raise TreeTrainingError(
                f"unknown tree family {self.family!r}; expected one of {TREE_FAMILIES}"
            )
        if self.max_features < 0:
            raise TreeTrainingError(f"max_features must be >= 0 (0 = all), got {self.max_features}")
        if self.max_bin < 2:
            raise TreeTrainingError(f"max_bin must be >= 2, got {self.max_bin}")
        for key in ("n_estimators", "early_stopping_rounds"):
            value = self.hyper.get(key)
            if not isinstance(value, int) or value < 1:
                raise TreeTrainingError(
                    f"{self.family} config {key} must be an integer >= 1, got {value!r}"
                )

    @property
    def rounds(self) -> int:
        return int(self.hyper["n_estimators"])

    @property
    def patience(self) -> int:
        return int(self.hyper["early_stopping_rounds"])

    @property
    def threads(self) -> int:
        """The cores the family may use (``num_threads`` / ``n_jobs``): the walk-forward fits this
        many folds at once, each on one library thread. On 2 cores one LightGBM fit on 2
        threads took 1.2 s where one thread took 0.2 s (OpenMP's passive wait between the many
        small parallel regions of a 32-feature histogram), and one thread per fit makes the
        results independent of the machine's core count."""
        return int(self.hyper.get("num_threads") or self.hyper.get("n_jobs") or 1)


def library_params(spec: TreeSpec) -> dict[str, Any]:
    """The parameters handed to ``lightgbm.train`` / ``xgboost.train``."""
    passthrough = {k: v for k, v in spec.hyper.items() if k not in _CONTROL_KEYS}
    if spec.family == "lightgbm":
        return {
            "objective": "regression",
            "metric": "l2",
            **passthrough,
            "max_bin": spec.max_bin,
            "num_threads": 1,  # one thread per fit: folds fit in parallel (see TreeSpec.threads)
            "seed": spec.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
    return {
        "objective": "reg:squarederror",
        "eval_metric": "rmse",
        **passthrough,
        "max_bin": spec.max_bin,
        "nthread": 1,
        "seed": spec.seed,
        "verbosity": 0,
    }


def correlation_scores(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|Pearson correlation| of each column with ``y`` over the rows where the column is finite.

    Columns with fewer than two finite values or no variance there score -1 (ranked last).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(X)
    x0 = np.where(finite, X, 0.0)
    y0 = np.where(finite, y[:, None], 0.0)
    n = finite.sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = x0.sum(axis=0) / n
        my = y0.sum(axis=0) / n
        dx = np.where(finite, X - mx, 0.0)
        dy = np.where(finite, y[:, None] - my, 0.0)
        sxy = (dx * dy).sum(axis=0)
        sxx = (dx * dx).sum(axis=0)
        syy = (dy * dy).sum(axis=0)
        corr = np.abs(sxy / np.sqrt(sxx * syy))
    # Variances at rounding level count as none (a constant column's centred sum is not exactly 0).
    flat = (n < 2) | (sxx <= 1e-12 * np.maximum(1.0, (x0 * x0).sum(axis=0))) | (syy <= 0)
    return np.where(flat | ~np.isfinite(corr), -1.0, np.minimum(corr, 1.0))


# The four model families rank the same fold's fit rows: the scores are kept for the last few
# distinct (X, y), keyed by their bytes, so each fold's ranking is computed once per horizon.
_SCORES: OrderedDict[str, np.ndarray] = OrderedDict()
_SCORES_KEPT = 64
_SCORES_LOCK = threading.Lock()


def _scores(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    X = np.ascontiguousarray(X)
    y = np.ascontiguousarray(y)
    key = digest(X.dtype.str, str(X.shape), X.tobytes(), y.dtype.str, y.tobytes())
    with _SCORES_LOCK:
        if key in _SCORES:
            _SCORES.move_to_end(key)
            return _SCORES[key]
    scores = correlation_scores(X, y)
    with _SCORES_LOCK:
        _SCORES[key] = scores
        while len(_SCORES) > _SCORES_KEPT:
            _SCORES.popitem(last=False)
    return scores


def select_features(X: np.ndarray, y: np.ndarray, max_features: int) -> np.ndarray:
    """Column indices (ascending) of the ``max_features`` best-scoring columns; ties by position."""
    k = X.shape[1] if max_features == 0 else min(max_features, X.shape[1])
    order = np.argsort(-_scores(X, y), kind="stable")
    return np.sort(order[:k])


@dataclass(frozen=True, eq=False)
class TreeModel:
    """A fitted booster with the feature columns it reads and the trees it keeps."""

    family: str
    booster: Any
    features: tuple[str, ...]
    columns: np.ndarray
    trees: int
    rounds: int
    best_score: float | None

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted log returns for rows of the full feature matrix (all export features)."""
        Xs = np.ascontiguousarray(X[:, self.columns], dtype=np.float32)
        if self.family == "lightgbm":
            return np.asarray(self.booster.predict(Xs, num_iteration=self.trees), dtype=np.float64)
        return np.asarray(
            self.booster.inplace_predict(Xs, iteration_range=(0, self.trees)), dtype=np.float64
        )

    @property
    def file_name(self) -> str:
        return MODEL_FILES[self.family]

    def to_bytes(self) -> bytes:
        """The kept trees in the library's native format (LightGBM text, XGBoost JSON)."""
        if self.family == "lightgbm":
            return self.booster.model_to_string(num_iteration=self.trees).encode("utf-8")
        return bytes(self.booster[: self.trees].save_raw(raw_format="json"))

    @property
    def importance_method(self) -> str:
        """How ``feature_importance`` measures a feature, in the library's own terms."""
        return IMPORTANCE_METHODS[self.family]

    def feature_gains(self) -> np.ndarray:
        """The total gain of the kept trees' splits on each of ``features``, in that order
        (0 for a feature no split uses)."""
        if self.family == "lightgbm":
            # Positional: the booster's columns are ``features`` in order (its names may be
            # sanitised by LightGBM, the positions never are).
            gains = np.asarray(
                self.booster.feature_importance(importance_type="gain", iteration=self.trees),
                dtype=np.float64,
            )
            if gains.shape != (len(self.features),):
                raise TreeTrainingError(
                    f"lightgbm returned {gains.size} gains for {len(self.features)} features"
                )
            return gains
        booster = self.booster
        if self.trees < booster.num_boosted_rounds():
            booster = booster[: self.trees]
        # XGBoost names only the features some split uses.
        scores = booster.get_score(importance_type="total_gain")
        unknown = sorted(set(scores) - set(self.features))
        if unknown:
            raise TreeTrainingError(
                f"xgboost reports gains for {unknown}, which are not among the model's features"
            )
        return np.array([float(scores.get(f, 0.0)) for f in self.features], dtype=np.float64)

    def feature_importance(self) -> list[dict[str, Any]]:
        """``gain_shares`` of this model's features (see ``importance_method``)."""
        return gain_shares(self.features, self.feature_gains())


# Gain, not split counts: how much each feature reduced the training loss, summed over its splits.
IMPORTANCE_METHODS = {
    LIGHTGBM: "gain: the total training-loss reduction of the final model's splits on each "
    "feature (lightgbm Booster.feature_importance(importance_type='gain')), as a share of all",
    XGBOOST: "gain: the total training-loss reduction of the final model's splits on each "
    "feature (xgboost Booster.get_score(importance_type='total_gain')), as a share of all",
}


def gain_shares(features: tuple[str, ...] | list[str], gains: np.ndarray) -> list[dict[str, Any]]:
    """One ``{feature, gain, share}`` per feature, largest gain first (ties in feature order);
    the shares sum to 1, or are all 0 when no feature has any gain (a model without splits)."""
    gains = np.asarray(gains, dtype=np.float64)
    if gains.shape != (len(features),):
        raise TreeTrainingError(f"{gains.size} gains for {len(features)} features")
    if not np.isfinite(gains).all() or (gains < 0).any():
        bad = [f for f, g in zip(features, gains, strict=True) if not (np.isfinite(g) and g >= 0)]
        raise TreeTrainingError(f"gains must be finite and >= 0; not so for {bad}")
    total = float(gains.sum())
    order = np.argsort(-gains, kind="stable")
    return [
        {
            "feature": features[i],
            "gain": float(gains[i]),
            "share": float(gains[i]) / total if total > 0 else 0.0,
        }
        for i in order
    ]


def load_tree_model(family: str, data: bytes) -> Callable[[np.ndarray], np.ndarray]:
    """A predictor (selected-feature matrix -> log returns) from a native model file's bytes."""
    if family == "lightgbm":
        import lightgbm as lgb

        booster = lgb.Booster(model_str=data.decode("utf-8"))
        return lambda X: np.asarray(booster.predict(np.asarray(X, np.float32)), dtype=np.float64)
    if family == "xgboost":
        import xgboost as xgb

        xbooster = xgb.Booster()
        xbooster.load_model(bytearray(data))
        return lambda X: np.asarray(
            xbooster.inplace_predict(np.asarray(X, np.float32)), dtype=np.float64
        )
    raise TreeTrainingError(f"unknown tree family {family!r}; expected one of {TREE_FAMILIES}")


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


class Fitted(NamedTuple):
    """A trained booster, the trees it keeps, the trees it grew and the best validation score."""

    booster: Any
    trees: int
    rounds: int
    score: float | None


def fit_lightgbm(
    fit: Arrays,
    validation: Arrays | None,
    features: tuple[str, ...],
    spec: TreeSpec,
    trees: int | None = None,
) -> Fitted:
    """Train on (X, y, w); early-stop on ``validation`` or, without one, grow exactly ``trees``.

    The score is the best validation l2 (None without validation).
    """
    import lightgbm as lgb

    params = library_params(spec)
    X, y, w = fit
    train_set = lgb.Dataset(
        X, y, weight=w, feature_name=list(features), params=params, free_raw_data=True
    )
    if validation is None:
        booster = lgb.train(params, train_set, num_boost_round=_final_trees(trees))
        return Fitted(booster, booster.current_iteration(), booster.current_iteration(), None)
    Xv, yv, wv = validation
    valid_set = lgb.Dataset(Xv, yv, weight=wv, reference=train_set, params=params)
    history: dict[str, Any] = {}
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=spec.rounds,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[
            lgb.early_stopping(spec.patience, first_metric_only=True, verbose=False),
            lgb.record_evaluation(history),
        ],
    )
    # The returned booster is already cut to the best iteration; the history counts every round.
    kept = int(booster.best_iteration) or booster.current_iteration()
    score = booster.best_score.get("validation", {}).get("l2")
    grown = len(history["validation"]["l2"])
    return Fitted(booster, kept, grown, None if score is None else float(score))


def fit_xgboost(
    fit: Arrays,
    validation: Arrays | None,
    features: tuple[str, ...],
    spec: TreeSpec,
    trees: int | None = None,
) -> Fitted:
    """Train on (X, y, w); early-stop on ``validation`` or, without one, grow exactly ``trees``.

    The score is the best validation RMSE (None without validation).
    """
    import xgboost as xgb

    params = library_params(spec)
    X, y, w = fit
    dtrain = xgb.QuantileDMatrix(
        X, y, weight=w, feature_names=list(features), max_bin=spec.max_bin, nthread=1
    )
    if validation is None:
        booster = xgb.train(params, dtrain, num_boost_round=_final_trees(trees), verbose_eval=False)
        return Fitted(booster, booster.num_boosted_rounds(), booster.num_boosted_rounds(), None)
    Xv, yv, wv = validation
    dval = xgb.QuantileDMatrix(
        Xv,
        yv,
        weight=wv,
        feature_names=list(features),
        ref=dtrain,
        max_bin=spec.max_bin,
        nthread=1,
    )
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=spec.rounds,
        evals=[(dval, "validation")],
        early_stopping_rounds=spec.patience,
        verbose_eval=False,
    )
    return Fitted(
        booster,
        int(booster.best_iteration) + 1,
        booster.num_boosted_rounds(),
        float(booster.best_score),
    )


def _final_trees(trees: int | None) -> int:
    if trees is None or trees < 1:
        raise TreeTrainingError(
            f"a fit without validation needs the number of trees (>= 1), got {trees!r}"
        )
    return trees


FITTERS = {"lightgbm": fit_lightgbm, "xgboost": fit_xgboost}


def fit_tree_model(
    data: TrainingData,
    spec: TreeSpec,
    fit_rows: np.ndarray,
    validation_rows: np.ndarray | None,
    trees: int | None = None,
) -> TreeModel:
    """Select features on ``fit_rows``, then fit with early stopping on ``validation_rows``."""
    X_fit = data.X[fit_rows]
    y_fit = data.label[fit_rows]
    columns = select_features(X_fit, y_fit, spec.max_features)
    features = tuple(data.features[c] for c in columns)
    fit = (
        np.ascontiguousarray(X_fit[:, columns]),
        y_fit,
        normalised_weights(data.weight[fit_rows]),
    )
    validation = None
    if validation_rows is not None:
        validation = (
            np.ascontiguousarray(data.X[np.ix_(validation_rows, columns)]),
            data.label[validation_rows],
            normalised_weights(data.weight[validation_rows]),
        )
    fitted = FITTERS[spec.family](fit, validation, features, spec, trees)
    return TreeModel(
        spec.family, fitted.booster, features, columns, fitted.trees, fitted.rounds, fitted.score
    )
