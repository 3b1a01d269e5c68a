"""Calibrated quantile forecasts from out-of-fold residuals (DESIGN §3, probabilistic forecasts).

A family's point forecast at origin ``i`` is the h-step log return ``pred_return_i``. Its
quantiles come from the empirical distribution of earlier *scaled residuals*

    z_i = (label_i - pred_return_i) / s_i,   s_i = sigma_i * sqrt(h)   (scale ``ewma``)
                                             s_i = 1                   (scale ``constant``)

where ``sigma_i`` is the EWMA daily volatility known at row ``i`` (``ewma_volatility``) and
``label_i = log(price_{i+h} / price_i)``. The quantile at level ``p`` for origin ``i`` is

    price_i * exp(pred_return_i + s_i * Q_p(pool)),

with ``Q_p`` numpy's default empirical quantile (linear interpolation between order statistics,
Hyndman & Fan type 7). Because ``s_i > 0`` and ``Q_p`` is non-decreasing in ``p``, the nine
quantiles never cross.

The calibration pool obeys the training purge: fold ``k``, whose first test origin is row
``s_k``, sees only the residuals of out-of-fold rows ``i`` with ``i + h < s_k`` (their label window
``[i, i + h]`` ended before the origin). When those are fewer than ``min_calibration_rows``, the
pool is topped up with the random walk's scaled residuals on history, ``label_j / s_j`` for
labelled rows ``j`` with ``j + h < s_k`` that carry no out-of-fold prediction, most recent first,
up to ``min_calibration_rows`` values in all; so the first fold is calibrated on the random walk's
own history before its origin. History rows whose scale is undefined or zero (row 0 has no return,
and a warm-up of unchanged prices has zero volatility) offer no residual and are skipped.

A forecast issued at export row ``r`` uses the same rule with the labels known by then:
out-of-fold rows and history rows with ``i + h <= r``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.signal import lfilter

from cbi_pipeline.core.walkforward import PREDICTION_COLUMNS, TrainingData

QUANTILE_LEVELS: tuple[float, ...] = (0.025, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.975)
QUANTILE_COLUMNS: tuple[str, ...] = (
    "q2.5",
    "q5",
    "q10",
    "q25",
    "q50",
    "q75",
    "q90",
    "q95",
    "q97.5",
)
# What a family's stored out-of-fold predictions hold: the walk-forward contract and the quantiles.
STORED_PREDICTION_COLUMNS: tuple[str, ...] = (*PREDICTION_COLUMNS, *QUANTILE_COLUMNS)
# Central interval (nominal coverage) -> its (lower, upper) quantile columns.
INTERVALS: dict[float, tuple[str, str]] = {
    0.5: ("q25", "q75"),
    0.8: ("q10", "q90"),
    0.9: ("q5", "q95"),
    0.95: ("q2.5", "q97.5"),
}
EWMA = "ewma"
CONSTANT = "constant"
SCALES: tuple[str, ...] = (EWMA, CONSTANT)
# Returns averaged to seed the EWMA recursion (rows 1..20 carry the expanding mean of r²).
EWMA_WARMUP_RETURNS = 20


class IntervalError(ValueError):
    """Quantiles cannot be calibrated as asked (bad inputs, no residuals); says why."""


@dataclass(frozen=True)
class IntervalSpec:
    """How quantiles are calibrated from out-of-fold residuals.

    scale: ``ewma`` scales residuals by the EWMA volatility known at the origin (times sqrt(h));
        ``constant`` leaves them unscaled (the constant-width benchmark).
    ewma_lambda: EWMA decay (0.94 = RiskMetrics daily).
    min_calibration_rows: the fewest residuals a pool may hold before it is topped up with the
        random walk's residuals on history (0: never top up).
    """

    scale: str = EWMA
    ewma_lambda: float = 0.94
    min_calibration_rows: int = 252

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise IntervalError(f"IntervalSpec.scale must be one of {SCALES}, got {self.scale!r}")
        lam = self.ewma_lambda
        if not isinstance(lam, int | float) or not 0.0 < float(lam) < 1.0:
            raise IntervalError(f"IntervalSpec.ewma_lambda must lie in (0, 1), got {lam!r}")
        rows = self.min_calibration_rows
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise IntervalError(
                f"IntervalSpec.min_calibration_rows must be an integer >= 0, got {rows!r}"
            )


DEFAULT_INTERVALS = IntervalSpec()


def ewma_volatility(price: np.ndarray, lam: float) -> np.ndarray:
    """Daily log-return volatility known at each row, from the returns up to and including it.

    ``r_i = log(p_i / p_{i-1})``. Row 0 has no return and gets NaN. Rows ``1..W``
    (``W = EWMA_WARMUP_RETURNS``) get the expanding mean of the squared returns so far, which seeds
    the recursion ``sigma²_i = lam * sigma²_{i-1} + (1 - lam) * r_i²`` from row ``W + 1`` on.
    Every value uses prices up to its own row only: a later price never changes an earlier sigma.
    """
    p = np.asarray(price, dtype=np.float64)
    if p.ndim != 1 or p.size < 2:
        raise IntervalError(f"price must be one-dimensional with >= 2 rows, got shape {p.shape}")
    bad = ~(np.isfinite(p) & (p > 0))
    if bad.any():
        rows = np.flatnonzero(bad)
        raise IntervalError(
            f"price must be positive and finite: {rows.size} bad rows, e.g. {rows[:5].tolist()}"
        )
    if not isinstance(lam, int | float) or not 0.0 < float(lam) < 1.0:
        raise IntervalError(f"EWMA lambda must lie in (0, 1), got {lam!r}")
    r2 = np.diff(np.log(p)) ** 2
    var = np.empty(p.size)
    var[0] = np.nan
    w = min(EWMA_WARMUP_RETURNS, r2.size)
    var[1 : w + 1] = np.cumsum(r2[:w]) / np.arange(1, w + 1)
    if r2.size > w:
        lam = float(lam)
        # y_i = (1 - lam) x_i + lam y_{i-1}, started from y_{w} = var[w]
        var[w + 1 :], _ = lfilter([1.0 - lam], [1.0, -lam], r2[w:], zi=[lam * var[w]])
    return np.sqrt(var)


def residual_scale(data: TrainingData, spec: IntervalSpec = DEFAULT_INTERVALS) -> np.ndarray:
    """``s_i`` per export row: sigma_i * sqrt(h) (``ewma``) or 1 (``constant``)."""
    if spec.scale == EWMA:
        return ewma_volatility(data.price, spec.ewma_lambda) * math.sqrt(data.horizon_days)
    return np.ones(data.rows)


@dataclass(frozen=True, eq=False)
class Calibration:
    """The scaled residuals a family's out-of-fold rows offer, and the random walk's on history.

    oof_rows / oof_z: out-of-fold export rows (ascending) and their z;
    history_rows / history_z: labelled rows without an out-of-fold prediction and with a usable
        scale (ascending), and the random walk's z there.
    """

    horizon_days: int
    min_rows: int
    oof_rows: np.ndarray
    oof_z: np.ndarray
    history_rows: np.ndarray
    history_z: np.ndarray

    def pool(self, before: int) -> np.ndarray:
        """The residuals whose label window ended before row ``before`` (``i + h < before``).

        All such out-of-fold residuals, then (when fewer than ``min_rows``) the most recent
        history residuals with ``j + h < before`` up to ``min_rows`` values in all.
        """
        h = self.horizon_days
        oof = self.oof_z[self.oof_rows + h < before]
        need = self.min_rows - oof.size
        if need <= 0:
            return oof
        known = int(np.searchsorted(self.history_rows + h, before, side="left"))
        return np.concatenate([oof, self.history_z[max(0, known - need) : known]])


def _shown(days: np.ndarray) -> str:
    return ", ".join(str(d) for d in days[:5]) + (
        f" (+{days.size - 5} more)" if days.size > 5 else ""
    )


def prediction_rows(
    predictions: pl.DataFrame, data: TrainingData, columns: Sequence[str]
) -> np.ndarray:
    """The export row of each prediction (input order), after checking the frame against it.

    Checks: the ``columns`` exist without nulls, every date is in the export once, and the
    origin price equals the export's price on that date.
    """
    missing = [c for c in columns if c not in predictions.columns]
    if missing:
        raise IntervalError(
            f"predictions: missing column(s) {missing}; expected {list(columns)} "
            "(the core/walkforward.prediction_frame contract)"
        )
    nulls = {c: predictions[c].null_count() for c in columns if predictions[c].null_count()}
    if nulls:
        raise IntervalError(f"predictions: null values in {nulls} (column: count)")
    if predictions.height == 0:
        raise IntervalError("predictions: no rows to calibrate from")
    days = predictions["date"].cast(pl.Date).to_numpy().astype("datetime64[D]")
    pos = np.searchsorted(data.dates, days)
    found = (pos < data.rows) & (data.dates[np.minimum(pos, data.rows - 1)] == days)
    if not found.all():
        raise IntervalError(
            f"{data.horizon}: {int((~found).sum())} prediction dates are not in the export "
            f"({data.dates[0]}..{data.dates[-1]}): {_shown(days[~found])}"
        )
    uniq, counts = np.unique(pos, return_counts=True)
    if (counts > 1).any():
        raise IntervalError(
            f"{data.horizon}: predictions must hold one row per origin; repeated dates "
            f"{_shown(data.dates[uniq[counts > 1]])}"
        )
    price = predictions["price"].cast(pl.Float64).to_numpy()
    off = ~np.isclose(price, data.price[pos], rtol=1e-9, atol=0.0)
    if off.any():
        raise IntervalError(
            f"{data.horizon}: prediction 'price' differs from the export's price on "
            f"{int(off.sum())} dates, e.g. {_shown(days[off])}: the predictions do not belong "
            "to this export"
        )
    return pos


def _calibration(
    rows: np.ndarray, pred_return: np.ndarray, data: TrainingData, spec: IntervalSpec
) -> tuple[Calibration, np.ndarray]:
    s = residual_scale(data, spec)
    unlabelled = ~data.labelled[rows]
    if unlabelled.any():
        raise IntervalError(
            f"{data.horizon}: out-of-fold predictions on dates without a label in the export: "
            f"{_shown(data.dates[rows[unlabelled]])}"
        )
    unscaled = ~(np.isfinite(s[rows]) & (s[rows] > 0))
    if unscaled.any():
        raise IntervalError(
            f"{data.horizon}: the residual scale is undefined or zero on prediction dates "
            f"{_shown(data.dates[rows[unscaled]])} (row 0 has no return; a volatility needs "
            "price changes before the origin)"
        )
    order = np.argsort(rows, kind="stable")
    oof_rows = rows[order]
    oof_z = (data.label[oof_rows] - pred_return[order]) / s[oof_rows]
    usable = data.labelled & np.isfinite(s) & (s > 0)
    usable[rows] = False
    history_rows = np.flatnonzero(usable)
    cal = Calibration(
        horizon_days=data.horizon_days,
        min_rows=spec.min_calibration_rows,
        oof_rows=oof_rows,
        oof_z=oof_z,
        history_rows=history_rows,
        history_z=data.label[history_rows] / s[history_rows],
    )
    return cal, s


def _pred_return(predictions: pl.DataFrame) -> np.ndarray:
    r = predictions["pred_return"].cast(pl.Float64).to_numpy()
    if not np.isfinite(r).all():
        raise IntervalError(
            f"predictions: 'pred_return' is not finite on {int((~np.isfinite(r)).sum())} rows"
        )
    return r


def calibration(
    predictions: pl.DataFrame, data: TrainingData, spec: IntervalSpec = DEFAULT_INTERVALS
) -> Calibration:
    """The residuals ``predictions`` (one family's out-of-fold frame) offer on ``data``."""
    rows = prediction_rows(predictions, data, ("date", "price", "pred_return"))
    return _calibration(rows, _pred_return(predictions), data, spec)[0]


def _quantiles(pool: np.ndarray) -> np.ndarray:
    return np.quantile(pool, QUANTILE_LEVELS)


def add_quantiles(
    predictions: pl.DataFrame, data: TrainingData, spec: IntervalSpec = DEFAULT_INTERVALS
) -> pl.DataFrame:
    """``predictions`` with the nine ``QUANTILE_COLUMNS`` (price scale, Float64) appended.

    ``predictions`` is one family's out-of-fold frame (``core/walkforward.prediction_frame``).
    Each fold is calibrated on the pool of residuals whose labels ended before its first test
    origin (module docstring). Rows keep their input order; existing quantile columns are
    replaced.
    """
    rows = prediction_rows(predictions, data, ("date", "fold", "price", "pred_return"))
    pred_return = _pred_return(predictions)
    cal, s = _calibration(rows, pred_return, data, spec)
    fold = predictions["fold"].to_numpy()
    folds = np.unique(fold)
    firsts = np.array([rows[fold == k].min() for k in folds])
    lasts = np.array([rows[fold == k].max() for k in folds])
    crossed = np.flatnonzero(lasts[:-1] >= firsts[1:])
    if crossed.size:
        a, b = folds[crossed[0]], folds[crossed[0] + 1]
        raise IntervalError(
            f"{data.horizon}: folds must follow each other in time: fold {a} ends on "
            f"{data.dates[lasts[crossed[0]]]}, after fold {b} starts on "
            f"{data.dates[firsts[crossed[0] + 1]]}"
        )
    out = np.empty((rows.size, len(QUANTILE_LEVELS)))
    for k, first in zip(folds, firsts, strict=True):
        pool = cal.pool(int(first))
        if pool.size == 0:
            raise IntervalError(
                f"{data.horizon} fold {k} (first origin {data.dates[first]}): no residual whose "
                f"{data.horizon_days}-day label ended before the origin, neither out-of-fold nor "
                "on history; the fold needs labelled history before it"
            )
        m = fold == k
        r = rows[m]
        out[m] = data.price[r, None] * np.exp(
            pred_return[m, None] + s[r, None] * _quantiles(pool)[None, :]
        )
    return predictions.with_columns(
        pl.Series(name, out[:, j], dtype=pl.Float64) for j, name in enumerate(QUANTILE_COLUMNS)
    )


def forecast_quantiles(
    predictions: pl.DataFrame,
    data: TrainingData,
    row: int,
    pred_return: float,
    spec: IntervalSpec = DEFAULT_INTERVALS,
) -> dict[str, float]:
    """Quantiles (price scale) of a forecast issued at export row ``row`` with ``pred_return``.

    The pool holds the out-of-fold residuals with ``i + h <= row`` (labels known at ``row``),
    topped up from history rows with ``j + h <= row`` as in ``add_quantiles``.
    """
    if not isinstance(row, int | np.integer) or not 0 <= int(row) < data.rows:
        raise IntervalError(f"row must be an export row in [0, {data.rows}), got {row!r}")
    row = int(row)
    if not math.isfinite(pred_return):
        raise IntervalError(f"pred_return must be finite, got {pred_return!r}")
    rows = prediction_rows(predictions, data, ("date", "price", "pred_return"))
    cal, s = _calibration(rows, _pred_return(predictions), data, spec)
    if not (np.isfinite(s[row]) and s[row] > 0):
        raise IntervalError(
            f"{data.horizon}: the residual scale at row {row} ({data.dates[row]}) is undefined "
            "or zero (row 0 has no return; a volatility needs price changes before the origin)"
        )
    pool = cal.pool(row + 1)
    if pool.size == 0:
        raise IntervalError(
            f"{data.horizon}: no residual whose {data.horizon_days}-day label ended by row {row} "
            f"({data.dates[row]}), neither out-of-fold nor on history"
        )
    q = data.price[row] * np.exp(pred_return + s[row] * _quantiles(pool))
    return {name: float(v) for name, v in zip(QUANTILE_COLUMNS, q, strict=True)}
