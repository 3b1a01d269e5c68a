"""Probabilistic metrics of quantile forecasts (DESIGN §3), on the price scale.

Losses and widths are expressed in percent of the origin price (``x / price * 100``), so that
regimes and price levels compare. Each function is tested against a naive loop in
``cbi_pipeline_tests/core/test_probabilistic.py``.

- Pinball (quantile) loss at level ``p`` of a realisation ``y`` against a quantile ``q``:
  ``u = (y - q) / price * 100``, ``loss = max(p * u, (p - 1) * u)``; averaged over rows and levels.
- CRPS from quantiles: ``CRPS(F, y) = 2 * ∫₀¹ QS_p(F⁻¹(p), y) dp``; with the integral replaced by
  the equally weighted mean over the forecast's levels, CRPS ≈ 2 × the mean pinball loss. With the
  nine levels 2.5…97.5% this is a coarse quadrature (the levels are not evenly spaced and the
  tails beyond 2.5/97.5% are left out): compare it between forecasts on the same levels only.
- Coverage of a central interval: share of rows with ``lower <= y <= upper``; width: mean
  ``(upper - lower) / price * 100``.
- Diebold–Mariano with a Newey–West (Bartlett) long-run variance for overlapping h-step errors and
  the Harvey–Leybourne–Newbold small-sample correction (``diebold_mariano``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from scipy import stats

from cbi_pipeline.core.intervals import INTERVALS, QUANTILE_COLUMNS, QUANTILE_LEVELS
from cbi_pipeline.core.metrics import breakdown_rows

# Central interval level -> the key used in reports: 0.8 -> "80".
INTERVAL_KEYS: dict[float, str] = {level: f"{round(level * 100)}" for level in INTERVALS}


class ProbabilisticError(ValueError):
    """A frame or array cannot be scored as asked (missing columns, nulls, crossed quantiles)."""


def _vectors(*xs: object) -> list[np.ndarray]:
    arrays = [np.asarray(x, dtype=np.float64) for x in xs]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ProbabilisticError(f"inputs differ in shape: {[a.shape for a in arrays]}")
    for a in arrays:
        if a.ndim != 1:
            raise ProbabilisticError(f"inputs must be one-dimensional, got shape {a.shape}")
        if a.size == 0:
            raise ProbabilisticError("inputs are empty")
        if not np.isfinite(a).all():
            raise ProbabilisticError("inputs contain null, NaN or infinite values")
    return arrays


def _positive(price: np.ndarray) -> None:
    if (price <= 0).any():
        raise ProbabilisticError("price must be positive: losses are in percent of it")


def pinball_losses(
    y_true: object, quantiles: object, levels: Sequence[float], price: object
) -> np.ndarray:
    """Per row: the mean over ``levels`` of the pinball loss, in percent of ``price``.

    ``quantiles`` has shape (rows, len(levels)); the per-row loss is what a Diebold–Mariano test
    compares between two forecasts on the same origins.
    """
    y, p = _vectors(y_true, price)
    _positive(p)
    q = np.asarray(quantiles, dtype=np.float64)
    lv = np.asarray(levels, dtype=np.float64)
    if lv.ndim != 1 or lv.size == 0 or not ((lv > 0) & (lv < 1)).all():
        raise ProbabilisticError(f"levels must be a non-empty list in (0, 1), got {levels!r}")
    if q.shape != (y.size, lv.size):
        raise ProbabilisticError(
            f"quantiles must have shape (rows, levels) = ({y.size}, {lv.size}), got {q.shape}"
        )
    if not np.isfinite(q).all():
        raise ProbabilisticError("quantiles contain null, NaN or infinite values")
    u = (y[:, None] - q) / p[:, None] * 100.0
    return np.maximum(lv * u, (lv - 1.0) * u).mean(axis=1)


def pinball_loss(
    y_true: object, quantiles: object, levels: Sequence[float], price: object
) -> float:
    """Mean pinball loss over rows and levels, in percent of the origin price."""
    return float(pinball_losses(y_true, quantiles, levels, price).mean())


def crps_from_quantiles(
    y_true: object, quantiles: object, levels: Sequence[float], price: object
) -> float:
    """The quantile-score approximation of CRPS: 2 × the mean pinball loss over the levels."""
    return 2.0 * pinball_loss(y_true, quantiles, levels, price)


def _interval(*xs: object) -> list[np.ndarray]:
    arrays = _vectors(*xs)
    lower, upper = arrays[-2], arrays[-1]
    crossed = np.flatnonzero(lower > upper)
    if crossed.size:
        raise ProbabilisticError(
            f"lower > upper on {crossed.size} rows, e.g. {crossed[:5].tolist()}"
        )
    return arrays


def coverage(y_true: object, lower: object, upper: object) -> float:
    """Share of rows with ``lower <= y_true <= upper``."""
    y, lo, hi = _interval(y_true, lower, upper)
    return float(np.mean((lo <= y) & (y <= hi)))


def mean_width(lower: object, upper: object, price: object) -> float:
    """Mean interval width in percent of the origin price."""
    p, lo, hi = _interval(price, lower, upper)
    _positive(p)
    return float(np.mean((hi - lo) / p * 100.0))


@dataclass(frozen=True)
class ProbabilisticSet:
    """Pinball loss and CRPS (percent of price) over the nine levels; coverage (share) and mean
    width (percent of price) of the central 50/80/90/95% intervals, keyed "50", "80", "90", "95"."""

    rows: int
    pinball: float
    crps: float
    coverage: dict[str, float]
    width: dict[str, float]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def has_quantiles(frame: pl.DataFrame) -> bool:
    """True when the frame carries all nine quantile columns; a partial set is an error."""
    present = [c for c in QUANTILE_COLUMNS if c in frame.columns]
    if present and len(present) < len(QUANTILE_COLUMNS):
        missing = [c for c in QUANTILE_COLUMNS if c not in frame.columns]
        raise ProbabilisticError(
            f"frame has quantile columns {present} but lacks {missing}: expected all of "
            f"{list(QUANTILE_COLUMNS)} or none"
        )
    return bool(present)


def _checked(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    needed = ("y_true", "price", *QUANTILE_COLUMNS)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ProbabilisticError(f"missing column(s) {missing}; expected {list(needed)}")
    if frame.height == 0:
        raise ProbabilisticError("no rows to score")
    null = frame.select(pl.any_horizontal(pl.col(needed).is_null())).to_series().to_numpy()
    if null.any():
        rows = np.flatnonzero(null)
        where = (
            f"dates {[str(d) for d in frame['date'].gather(rows[:5]).to_list()]}"
            if "date" in frame.columns
            else f"rows {rows[:5].tolist()}"
        )
        counts = {c: frame[c].null_count() for c in needed if frame[c].null_count()}
        raise ProbabilisticError(
            f"{rows.size} rows have nulls (column: count {counts}), e.g. {where}"
        )
    finite = np.isfinite(frame.select(pl.col(needed).cast(pl.Float64)).to_numpy())
    if not finite.all():
        rows = np.flatnonzero(~finite.all(axis=1))
        raise ProbabilisticError(
            f"{rows.size} rows hold NaN or infinite values, e.g. {rows[:5].tolist()}"
        )
    y = frame["y_true"].cast(pl.Float64).to_numpy()
    price = frame["price"].cast(pl.Float64).to_numpy()
    q = frame.select(pl.col(QUANTILE_COLUMNS).cast(pl.Float64)).to_numpy()
    crossed = np.flatnonzero((np.diff(q, axis=1) < 0).any(axis=1))
    if crossed.size:
        raise ProbabilisticError(
            f"quantiles decrease across levels on {crossed.size} rows, e.g. {crossed[:5].tolist()}"
        )
    return y, price, q


def probabilistic_set(frame: pl.DataFrame) -> ProbabilisticSet:
    """Every probabilistic metric for one set of quantile forecasts (one family, one slice)."""
    return _scored_set(*_checked(frame))


def _scored_set(y: np.ndarray, price: np.ndarray, q: np.ndarray) -> ProbabilisticSet:
    pinball = pinball_loss(y, q, QUANTILE_LEVELS, price)
    index = {name: j for j, name in enumerate(QUANTILE_COLUMNS)}
    cover, width = {}, {}
    for level, (lo, hi) in INTERVALS.items():
        key = INTERVAL_KEYS[level]
        cover[key] = coverage(y, q[:, index[lo]], q[:, index[hi]])
        width[key] = mean_width(q[:, index[lo]], q[:, index[hi]], price)
    return ProbabilisticSet(
        rows=int(y.size), pinball=pinball, crps=2.0 * pinball, coverage=cover, width=width
    )


def probabilistic_breakdown(
    frame: pl.DataFrame, by: str, min_rows: int = 2
) -> dict[str, ProbabilisticSet]:
    """Probabilistic metrics per value of ``by`` (``market_regime``, ``quarter``, ``crop_season``,
    ``fold``), as ``core/metrics.breakdown`` groups point metrics; groups under ``min_rows`` rows
    are left out. The frame is checked once and each group scored on slices of its arrays."""
    try:
        ordered, groups = breakdown_rows(frame, by, min_rows)
    except ValueError as exc:
        raise ProbabilisticError(str(exc)) from exc
    y, price, q = _checked(ordered)
    return {key: _scored_set(y[rows], price[rows], q[rows]) for key, rows in groups}


def pinball_skill(model: ProbabilisticSet, benchmark: ProbabilisticSet) -> float:
    """1 - pinball_model / pinball_benchmark on the same origins; > 0 beats the benchmark."""
    if model.rows != benchmark.rows:
        raise ProbabilisticError(
            f"pinball skill compares the same origins: the model has {model.rows} rows, the "
            f"benchmark {benchmark.rows}"
        )
    if benchmark.pinball == 0:
        raise ProbabilisticError("the benchmark's pinball loss is 0: skill is undefined")
    return 1.0 - model.pinball / benchmark.pinball


def newey_west_variance(d: object, lag: int) -> float:
    """Long-run variance of ``d``: gamma_0 + 2 Σ_{k=1..lag} (1 - k/(lag+1)) gamma_k (Bartlett),
    with autocovariances ``gamma_k = Σ_t (d_t - mean)(d_{t-k} - mean) / n``."""
    (x,) = _vectors(d)
    if not isinstance(lag, int) or lag < 0:
        raise ProbabilisticError(f"lag must be an integer >= 0, got {lag!r}")
    n = x.size
    e = x - x.mean()
    lrv = float(e @ e) / n
    for k in range(1, min(lag, n - 1) + 1):
        lrv += 2.0 * (1.0 - k / (lag + 1)) * float(e[k:] @ e[:-k]) / n
    return lrv


@dataclass(frozen=True)
class DieboldMariano:
    """statistic: HLN-corrected DM statistic (negative: the model's loss is lower);
    p_value: one-sided, for H1 "the model's loss is lower" (small = evidence the model wins);
    periods: origins compared; lag: HAC lag (h - 1); mean_difference: mean(loss_model - loss_bench).
    """

    statistic: float
    p_value: float
    periods: int
    lag: int
    mean_difference: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def diebold_mariano(loss_model: object, loss_benchmark: object, h: int) -> DieboldMariano:
    """Diebold–Mariano test of equal expected loss for h-step forecasts on the same origins.

    The losses are per origin, in date order (consecutive origins: their h-step errors overlap).
    ``d_t = loss_model_t - loss_benchmark_t``; the long-run variance of ``d`` is Newey–West with
    Bartlett weights and lag ``h - 1``; ``DM = mean(d) / sqrt(lrv / n)``, multiplied by the
    Harvey–Leybourne–Newbold factor ``sqrt((n + 1 - 2h + h(h - 1) / n) / n)``. The p-value is
    one-sided for H1 "the model's loss is lower": ``P(T <= statistic)`` with ``T`` Student t on
    ``n - 1`` degrees of freedom. Raises ``ValueError`` when the test is degenerate (fewer than 3
    origins, a constant loss difference or zero long-run variance, too few origins for h).
    """
    if not isinstance(h, int) or isinstance(h, bool) or h < 1:
        raise ProbabilisticError(f"h must be an integer >= 1, got {h!r}")
    lm, lb = _vectors(loss_model, loss_benchmark)
    d = lm - lb
    n = d.size
    if n < 3:
        raise ProbabilisticError(f"Diebold–Mariano needs at least 3 origins, got {n}")
    if np.ptp(d) == 0:
        raise ProbabilisticError(
            f"Diebold–Mariano is undefined: the loss difference is constant ({float(d[0])!r}) "
            f"on all {n} origins, so its variance is zero"
        )
    lag = h - 1
    lrv = newey_west_variance(d, lag)
    if not lrv > 0:
        raise ProbabilisticError(
            f"Diebold–Mariano is undefined: the long-run variance of the loss difference is "
            f"{lrv!r} (lag {lag}, {n} origins)"
        )
    hln = (n + 1 - 2 * h + h * (h - 1) / n) / n
    if not hln > 0:
        raise ProbabilisticError(
            f"Diebold–Mariano with the HLN correction needs more origins than h: {n} origins "
            f"for h={h}"
        )
    mean = float(d.mean())
    statistic = mean / math.sqrt(lrv / n) * math.sqrt(hln)
    p_value = float(stats.t.cdf(statistic, df=n - 1))
    return DieboldMariano(statistic, p_value, n, lag, mean)
