"""Forecast metrics on out-of-fold predictions (DESIGN §3), vectorised with numpy.

Conventions: prices are positive; ``price`` is the price at the forecast origin, ``y_true`` the
realised price h trading days later, ``y_pred`` the predicted price. Percentages are in percent.
Each function is tested against a naive loop in ``cbi_pipeline_tests/core/test_metrics.py``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

DEFAULT_COST_BP = 5.0


def _arrays(*xs: object) -> list[np.ndarray]:
    arrays = [np.asarray(x, dtype=np.float64) for x in xs]
    n = {a.shape for a in arrays}
    if len(n) != 1:
        raise ValueError(f"metric inputs differ in length: {[a.shape for a in arrays]}")
    for a in arrays:
        if a.size == 0:
            raise ValueError("metric inputs are empty")
        if not np.isfinite(a).all():
            raise ValueError("metric inputs contain null, NaN or infinite values")
    return arrays


def mape(y_true: object, y_pred: object) -> float:
    t, p = _arrays(y_true, y_pred)
    if (t == 0).any():
        raise ValueError("MAPE is undefined where y_true == 0")
    return float(np.mean(np.abs(t - p) / np.abs(t)) * 100.0)


def smape(y_true: object, y_pred: object) -> float:
    t, p = _arrays(y_true, y_pred)
    denom = np.abs(t) + np.abs(p)
    if (denom == 0).any():
        raise ValueError("sMAPE is undefined where y_true == y_pred == 0")
    return float(np.mean(2.0 * np.abs(t - p) / denom) * 100.0)


def mae(y_true: object, y_pred: object) -> float:
    t, p = _arrays(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def rmse(y_true: object, y_pred: object) -> float:
    t, p = _arrays(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def skill_vs_random_walk(y_true: object, y_pred: object, price: object) -> float:
    """1 - MAPE_model / MAPE_rw; the random walk predicts the origin price. > 0 beats it."""
    rw = mape(y_true, price)
    if rw == 0:
        raise ValueError("the random walk's MAPE is 0: skill is undefined")
    return 1.0 - mape(y_true, y_pred) / rw


def mase(y_true: object, y_pred: object, price: object) -> float:
    """MAE scaled by the h-step random walk's MAE on the same rows (< 1 beats it)."""
    rw = mae(y_true, price)
    if rw == 0:
        raise ValueError("the random walk's MAE is 0: MASE is undefined")
    return mae(y_true, y_pred) / rw


HELD_RETURN = "held_return"


def hit_rate(y_true: object, y_pred: object, price: object) -> float | None:
    """Share of rows with a non-zero predicted move whose sign matches the realised move.

    None when the model never predicts a move (the random walk), since direction is undefined.
    """
    t, p, o = _arrays(y_true, y_pred, price)
    pred, real = np.sign(p - o), np.sign(t - o)
    mask = pred != 0
    if not mask.any():
        return None
    return float(np.mean(pred[mask] == real[mask]))


def non_overlapping_origins(dates: object, h: int) -> np.ndarray:
    """Indices of every h-th origin in date order, starting with the first."""
    d = np.asarray(dates)
    order = np.argsort(d, kind="stable")
    return order[::h]


def strategy_returns(
    pred_return: object, price: object, y_true: object, cost_bp: float = DEFAULT_COST_BP
) -> np.ndarray:
    """Per-period log returns of holding sign(pred_return) for h days, net of costs.

    Inputs are one row per non-overlapping origin, in date order. Each change of position costs
    ``cost_bp`` basis points per unit of position changed (entering from flat costs one unit,
    a flip from long to short costs two).
    """
    r, o, t = _arrays(pred_return, price, y_true)
    position = np.sign(r)
    realised = np.log(t / o)
    prev = np.concatenate([[0.0], position[:-1]])
    return position * realised - np.abs(position - prev) * cost_bp / 1e4


def sharpe(returns: object, h: int) -> float | None:
    """Annualised Sharpe of per-period returns held h days: mean/std * sqrt(252/h).

    None when fewer than two periods or zero dispersion (e.g. a flat random walk).
    """
    (x,) = _arrays(returns)
    if x.size < 2:
        return None
    sd = float(np.std(x, ddof=1))
    if sd == 0:
        return None
    return float(np.mean(x) / sd * math.sqrt(252.0 / h))


def probabilistic_sharpe(returns: object, benchmark: float = 0.0) -> float | None:
    """Bailey & López de Prado PSR: P(true per-period Sharpe > benchmark) given skew and kurtosis."""
    (x,) = _arrays(returns)
    n = x.size
    if n < 3:
        return None
    sd = float(np.std(x, ddof=1))
    if sd == 0:
        return None
    sr = float(np.mean(x)) / sd
    z = (x - x.mean()) / np.std(x)
    skew = float(np.mean(z**3))
    kurt = float(np.mean(z**4))
    var = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if var <= 0:
        return None
    stat = (sr - benchmark) * math.sqrt(n - 1) / math.sqrt(var)
    return 0.5 * (1.0 + math.erf(stat / math.sqrt(2.0)))


@dataclass(frozen=True)
class MetricSet:
    rows: int
    mape: float
    smape: float
    mae: float
    rmse: float
    rw_mape: float
    skill: float | None
    mase: float | None
    hit_rate: float | None
    sharpe: float | None
    psr: float | None
    sharpe_periods: int

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def metric_set(
    frame: pl.DataFrame,
    h: int,
    cost_bp: float = DEFAULT_COST_BP,
    date_col: str = "date",
    price_col: str = "price",
    true_col: str = "y_true",
    pred_col: str = "y_pred",
) -> MetricSet:
    """Every metric for one set of predictions (one family, one slice).

    With a ``held_return`` column (the h-day log return of a rolled futures position,
    ``core.curves.returns``), the Sharpe ratio and the hit rate are measured on it instead of the
    front month's price change, which jumps at every roll."""
    t, p, o = (frame[c].to_numpy() for c in (true_col, pred_col, price_col))
    rw = mape(t, o)
    origins = non_overlapping_origins(frame[date_col].to_numpy(), h)
    pred_ret = np.log(p[origins] / o[origins])
    held = frame[HELD_RETURN].to_numpy() if HELD_RETURN in frame.columns else None
    if held is None:
        rets = strategy_returns(pred_ret, o[origins], t[origins], cost_bp)
        hits = hit_rate(t, p, o)
    else:
        # the same position rule, earning what the rolled position earned
        rets = strategy_returns(pred_ret, o[origins], o[origins] * np.exp(held[origins]), cost_bp)
        hits = hit_rate(o * np.exp(held), p, o)
    return MetricSet(
        rows=frame.height,
        mape=mape(t, p),
        smape=smape(t, p),
        mae=mae(t, p),
        rmse=rmse(t, p),
        rw_mape=rw,
        skill=None if rw == 0 else 1.0 - mape(t, p) / rw,
        mase=None if mae(t, o) == 0 else mae(t, p) / mae(t, o),
        hit_rate=hits,
        sharpe=sharpe(rets, h),
        psr=probabilistic_sharpe(rets),
        sharpe_periods=int(origins.size),
    )


def crop_season(month: pl.Expr) -> pl.Expr:
    """US soybean crop season of a month: planting, growing, harvest or off."""
    return (
        pl.when(month.is_in([4, 5]))
        .then(pl.lit("planting"))
        .when(month.is_in([6, 7, 8]))
        .then(pl.lit("growing"))
        .when(month.is_in([9, 10, 11]))
        .then(pl.lit("harvest"))
        .otherwise(pl.lit("off"))
    )


def breakdown_rows(
    frame: pl.DataFrame, by: str, min_rows: int = 2
) -> tuple[pl.DataFrame, list[tuple[str, np.ndarray]]]:
    """The frame in date order and, per value of ``by`` (``market_regime``, ``quarter``,
    ``crop_season`` — both derived from ``date`` — or ``fold``) in key order, the positions of
    its rows there; groups under ``min_rows`` rows are left out. The frame is sorted once and
    each group's arrays are slices of its columns (an evaluation makes hundreds of groups)."""
    frame = frame.sort("date")
    if by == "quarter":
        values = frame.select(pl.col("date").dt.quarter().cast(pl.String)).to_series()
    elif by == "crop_season":
        values = frame.select(crop_season(pl.col("date").dt.month())).to_series()
    elif by in frame.columns:
        values = frame[by]
    else:
        raise ValueError(f"cannot break metrics down by {by!r}: no such column")
    keys = np.array([str(v) for v in values.to_list()], dtype=object)
    groups = []
    for key in sorted(set(keys)):
        rows = np.flatnonzero(keys == key)
        if rows.size >= min_rows:
            groups.append((str(key), rows))
    return frame, groups


def breakdown_groups(
    frame: pl.DataFrame, by: str, min_rows: int = 2
) -> list[tuple[str, pl.DataFrame]]:
    """The rows of each value of ``by`` (``breakdown_rows``), in key order, date-sorted, groups
    under ``min_rows`` rows left out: the slices every breakdown of the evaluation is computed on."""
    ordered, groups = breakdown_rows(frame, by, min_rows)
    return [(key, ordered[rows]) for key, rows in groups]


def breakdown(
    frame: pl.DataFrame, by: str, h: int, cost_bp: float = DEFAULT_COST_BP, min_rows: int = 2
) -> dict[str, MetricSet]:
    """Metrics per value of ``by`` (``market_regime``, ``quarter``, ``crop_season``, ``fold``)."""
    return {
        key: metric_set(part, h, cost_bp) for key, part in breakdown_groups(frame, by, min_rows)
    }
