"""Baselines on the same purged folds as the models (DESIGN §3).

random_walk: no change, the predicted price is the price at the origin (log return 0).
drift: the mean h-step log return of the fold's training rows, unweighted: every labelled row
    whose label window ends before the test origin (the fit rows, the purge gap before the
    validation slice and the validation slice; the drift needs no early stopping).
ets: statsforecast's AutoETS on log prices, parameters fitted per fold on the prices up to and
    including the fold's first test origin, states run forward to each origin
    (``core/models/ets.py`` says exactly which prices each forecast sees).
futures_curve: the market's own forecast (``core/curves/market.py``): the price at the origin
    of the contract that will be front h days later, the random walk where the curve has no
    such contract that day (counted per fold as ``fallback``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cbi_pipeline.core.models.ets import ets_fold
from cbi_pipeline.core.vocabulary import BASELINES, DRIFT, ETS, FUTURES_CURVE, RANDOM_WALK
from cbi_pipeline.core.walkforward import (
    Fold,
    FoldFit,
    TrainingData,
    WalkForwardResult,
    run_walk_forward,
)


def training_rows(data: TrainingData, fold: Fold) -> np.ndarray:
    """Every labelled row whose label window ends before the fold's test origin."""
    rows = np.flatnonzero(data.labelled)
    return rows[rows + data.horizon_days < fold.test_origin]


def drift_return(data: TrainingData, rows: np.ndarray) -> float:
    return float(np.mean(data.label[rows]))


def _random_walk(data: TrainingData, fold: Fold) -> FoldFit:
    return FoldFit(np.zeros(fold.test_rows.size))


def _drift(data: TrainingData, fold: Fold) -> FoldFit:
    mu = drift_return(data, training_rows(data, fold))
    return FoldFit(np.full(fold.test_rows.size, mu), {"drift": round(mu, 10)})


def _futures_curve(implied: np.ndarray) -> Callable[[TrainingData, Fold], FoldFit]:
    """``implied``: the market's forecast log return per export row, NaN where it falls back."""

    def predict(data: TrainingData, fold: Fold) -> FoldFit:
        values = implied[fold.test_rows]
        missing = ~np.isfinite(values)
        return FoldFit(np.where(missing, 0.0, values), {"fallback": int(missing.sum())})

    return predict


PREDICTORS = {RANDOM_WALK: _random_walk, DRIFT: _drift, ETS: ets_fold}


def walk_forward_baseline(
    data: TrainingData,
    folds: list[Fold],
    name: str,
    progress: Callable[[str], None] | None = None,
    implied: np.ndarray | None = None,
) -> WalkForwardResult:
    """Out-of-fold predictions of one baseline (``random_walk``, ``drift``, ``ets``, or
    ``futures_curve`` from ``implied``, the market's forecast per export row)."""
    if name == FUTURES_CURVE:
        if implied is None or implied.shape != (data.rows,):
            raise ValueError(
                f"{FUTURES_CURVE} needs the market's forecast for each of the {data.rows} export "
                f"rows; got {None if implied is None else implied.shape}"
            )
        return run_walk_forward(data, folds, name, _futures_curve(implied), progress)
    if name not in PREDICTORS:
        raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
    return run_walk_forward(data, folds, name, PREDICTORS[name], progress)


def final_drift(data: TrainingData) -> float:
    """The drift a forecast from the latest date would use: the mean over every labelled row."""
    return drift_return(data, np.flatnonzero(data.labelled))
