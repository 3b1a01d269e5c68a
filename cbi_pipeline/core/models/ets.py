"""Exponential smoothing (statsforecast's AutoETS) as a baseline family on the purged folds.

The question it answers for the desk: do the machine-learning families beat ordinary exponential
smoothing, fitted the standard way by a well-kept library?

What is fitted: ``statsforecast.models.AutoETS(season_length=1, model="AZN")`` on the log of the
target's price. ``season_length=1``: daily futures prices have no season to speak of at the
horizons forecast here. ``"AZN"``: additive error, trend chosen by AICc among none, additive and
damped additive (the library's automatic selection), no season. Why log prices: the pipeline
predicts h-step log returns, and an additive model of log prices is a model of relative price
moves (errors proportional to the price, forecasts always positive); ``exp`` of the log forecast is
the price forecast. Multiplicative error is left out: on log prices it would scale the errors by
the log level, which changes with the price's unit (cents or dollars) and means nothing.

Which data each forecast sees (fold with first test origin ``s``, test origin ``t >= s``):

- the parameters (smoothing weights, damping, initial states) are estimated once per fold, by
  maximum likelihood on the log prices of rows ``0..s`` inclusive: the price at ``s`` is known at
  origin ``s``, and no price after ``s`` (in particular no test label) enters the fit;
- the forecast from origin ``t`` is the ETS state after the log prices of rows ``0..t`` (filtered
  forward with those fixed parameters), projected ``h`` steps ahead; no price after ``t`` enters.

How the states are run forward: with the ETS recursion itself (``ets_states``), once per fold over
rows ``0..last test row``. The recursion is causal, so the state at ``t`` depends on rows ``0..t``
only, and it equals what statsforecast's ``AutoETS.forward(log_price[: t + 1], h)`` computes
(a test checks the states at every origin); one pass per fold instead of one ``forward`` call
per origin. The h-step forecast from a state is the textbook ``l + (phi + phi**2 + ... + phi**h) b``
(Hyndman et al., fable). statsforecast 2.1's own damped forecast adds ``phi`` twice
(``l + (2 phi + phi**2 + ... + phi**(h-1)) b``), a bug it shares with R's forecast package and that
upstream fixed in Nixtla/statsforecast PR #1219; the two agree at h = 1 and without damping.
The optimiser is deterministic, so the same data gives identical predictions.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cbi_pipeline.core.walkforward import Fold, FoldFit, TrainingData

SEASON_LENGTH = 1
ETS_MODEL = "AZN"


class EtsError(ValueError):
    """AutoETS could not be fitted or applied as asked; the message says to what and why."""


@dataclass(frozen=True)
class EtsFit:
    """A fitted additive-error, non-seasonal ETS model (parameters from AutoETS).

    method: statsforecast's name of the chosen model, e.g. ``"ETS(A,Ad,N)"``.
    alpha: level smoothing weight; beta: trend smoothing weight (0 without trend);
    phi: damping (1 for an undamped trend or no trend); level0, trend0: the initial states.
    fit_rows: how many observations the parameters were estimated on.
    """

    method: str
    alpha: float
    beta: float
    phi: float
    level0: float
    trend0: float
    fit_rows: int

    def as_info(self) -> dict[str, Any]:
        return {
            "ets_model": self.method,
            "alpha": round(self.alpha, 10),
            "beta": round(self.beta, 10),
            "phi": round(self.phi, 10),
        }


def ets_fit_from_model(model: Mapping[str, Any], fit_rows: int) -> EtsFit:
    """The parameters of a fitted ``AutoETS().model_`` (components ``"A{N|A}N{N|D}"``)."""
    components = str(model["components"])
    if len(components) != 4 or components[0] != "A" or components[1] not in "NA":
        raise EtsError(
            f"expected an additive-error ETS with no or additive trend (components 'ANNN', "
            f"'AANN' or 'AAND'), got components {components!r} ({model.get('method')})"
        )
    if components[2] != "N":
        raise EtsError(f"expected a non-seasonal ETS, got components {components!r}")
    par = np.asarray(model["par"], dtype=np.float64)
    has_trend = components[1] == "A"
    damped = components[3] == "D"
    return EtsFit(
        method=str(model["method"]),
        alpha=float(par[0]),
        beta=float(par[1]) if has_trend else 0.0,
        phi=float(par[3]) if damped else 1.0,
        level0=float(par[4]),
        trend0=float(par[5]) if has_trend else 0.0,
        fit_rows=fit_rows,
    )


def fit_ets(y: np.ndarray, model: str = ETS_MODEL, damped: bool | None = None) -> EtsFit:
    """Fit statsforecast's AutoETS (season_length 1) to a series (here: log prices).

    Every horizon fits the same prices (its folds start on the same dates, its final model on
    the same history): a fit is kept for the last few distinct series, keyed by their bytes."""
    y = np.ascontiguousarray(y, dtype=np.float64)
    if y.ndim != 1 or not np.isfinite(y).all():
        raise EtsError(f"expected a one-dimensional finite series, got shape {y.shape}")
    return _fit_ets(hashlib.blake2b(y.tobytes(), digest_size=16).hexdigest(), y, model, damped)


_FITS: OrderedDict[tuple[str, str, bool | None], EtsFit] = OrderedDict()


def _fit_ets(key: str, y: np.ndarray, model: str, damped: bool | None) -> EtsFit:
    memo = (key, model, damped)
    if memo in _FITS:
        _FITS.move_to_end(memo)
        return _FITS[memo]
    # statsforecast: heavy import (numba-compiled kernels), kept lazy.
    from statsforecast.models import AutoETS

    try:
        fitted = AutoETS(season_length=SEASON_LENGTH, model=model, damped=damped).fit(y)
    except Exception as exc:  # statsforecast raises bare Exception / NotImplementedError
        raise EtsError(
            f"AutoETS(model={model!r}) could not be fitted to {y.size} observations: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    fit = ets_fit_from_model(fitted.model_, y.size)
    _FITS[memo] = fit
    while len(_FITS) > 64:
        _FITS.popitem(last=False)
    return fit


def ets_states(fit: EtsFit, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Level and trend after each observation ``y[0..t]``, filtered with the fit's parameters.

    Additive error: one-step forecast ``f = l + phi * b``, error ``e = y_t - f``,
    ``l <- f + alpha * e``, ``b <- phi * b + beta * e``, from ``(level0, trend0)``.
    """
    alpha, beta, phi = fit.alpha, fit.beta, fit.phi
    level, trend = fit.level0, fit.trend0
    levels, trends = [], []
    for value in np.asarray(y, dtype=np.float64).tolist():
        forecast = level + phi * trend
        error = value - forecast
        level = forecast + alpha * error
        trend = phi * trend + beta * error
        levels.append(level)
        trends.append(trend)
    return np.asarray(levels), np.asarray(trends)


def damped_steps(phi: float, h: int) -> float:
    """``phi + phi**2 + ... + phi**h`` (``h`` when ``phi == 1``): the trend's weight h steps ahead."""
    return float(sum(phi**j for j in range(1, h + 1)))


def ets_forecast(fit: EtsFit, level: np.ndarray, trend: np.ndarray, h: int) -> np.ndarray:
    """The h-step point forecast from the given states (same scale as the series)."""
    return level + damped_steps(fit.phi, h) * trend


def _log_price(data: TrainingData, last_row: int) -> np.ndarray:
    return np.log(data.price[: last_row + 1])


def ets_fold_fit(data: TrainingData, fold: Fold) -> tuple[EtsFit, dict[str, Any]]:
    """One fold's parameters, from the log prices of rows ``0..fold.test_origin``, and its facts."""
    if fold.test_rows.size == 0:
        raise EtsError(f"ets fold {fold.index}: no test rows")
    if int(fold.test_rows[0]) < fold.test_origin:
        raise EtsError(
            f"ets fold {fold.index}: test row {int(fold.test_rows[0])} precedes the test origin "
            f"{fold.test_origin}"
        )
    origin = fold.test_origin
    fit = fit_ets(_log_price(data, origin))
    info = {
        **fit.as_info(),
        "ets_fit_rows": fit.fit_rows,
        "ets_fit_prices": [str(data.dates[0]), str(data.dates[origin])],
    }
    return fit, info


def ets_predict(fit: EtsFit, data: TrainingData, rows: np.ndarray) -> np.ndarray:
    """Predicted h-step log returns at ``rows``: the forecast from each origin ``t`` uses the
    state after rows ``0..t``."""
    log_price = _log_price(data, int(rows[-1]))
    level, trend = ets_states(fit, log_price)
    return ets_forecast(fit, level[rows], trend[rows], data.horizon_days) - log_price[rows]


def ets_fold(data: TrainingData, fold: Fold) -> FoldFit:
    """One fold: ``ets_fold_fit``, then ``ets_predict`` at its test rows."""
    fit, info = ets_fold_fit(data, fold)
    return FoldFit(ets_predict(fit, data, fold.test_rows), info)


@dataclass(frozen=True)
class EtsForecast:
    """Tonight's ETS forecast: the h-step log return from the export's last row, and its fit."""

    pred_return: float
    fit: EtsFit
    origin: str


def ets_final_forecast(data: TrainingData) -> EtsForecast:
    """Parameters fitted on every price of the export (labelled or not: the last h rows' prices
    are known, only their targets are not), forecast h steps from the last row."""
    last = data.rows - 1
    log_price = _log_price(data, last)
    fit = fit_ets(log_price)
    level, trend = ets_states(fit, log_price)
    forecast = ets_forecast(fit, level[-1:], trend[-1:], data.horizon_days)
    pred = float(forecast[0] - log_price[-1])
    if not math.isfinite(pred):
        raise EtsError(f"ets final forecast from {data.dates[last]} is not finite: {pred}")
    return EtsForecast(pred, fit, str(data.dates[last]))


def ets_final_return(data: TrainingData) -> float:
    """The h-step predicted log return from the export's last row (the forecast a desk gets)."""
    return ets_final_forecast(data).pred_return
