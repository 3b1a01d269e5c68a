"""The lag screen: does a feature know the target's return k days ahead, for any k in 1..h?

The main screen (``screen``) compares features with the whole h-step future return on
non-overlapping windows, which sees a near-copy of the label but not a leak of one day of a
five-day return (its correlation with the 5-day return is near 0.45) or a centred moving
average. This screen tests every feature, at every lag ``k = 1..h``, against the target's
*one-day* log return ``k`` days ahead, ``r[t+k] = log(p[t+k] / p[t+k-1])``, on all rows.

Why one-day returns: they are close to a martingale difference, so under "the feature holds no
future information" its correlation with ``r[t+k]`` is ~0 whatever the feature's own
autocorrelation, and the heteroskedasticity-robust (White) statistic

    z = sum_t x~_t r~_{t+k} / sqrt(sum_t x~_t^2 r~_{t+k}^2)      (x~, r~: centred)

is ~N(0, 1) even in volatility clusters; overlapping k-day returns would need a HAC variance and
lose power. Features, returns and absolute returns enter as normal scores (ranks mapped through
the normal quantile function, per column over the whole history): one bad print (a 60% spike
that reverses) would otherwise dominate both sums and blind the test, and a level far from zero
or a heavy tail changes nothing. A feature that knows ``p[t+k]`` shows at lag ``k``: a k-day forward return, a
future price level with noise (through its one-day change) or a centred moving average
(through its change, at lags up to half its width).

Tests, per feature, for x in (the feature, its one-day change):
- return: ``|z(x, r[t+k])| >= z_limit`` and ``|corr(x, r[t+k])| >= lag_min_corr`` for some k
  (the floor keeps a real but weak lead, which a long history makes significant, from reading
  as a leak: it is the screen's detection limit);
- absolute return (a volatility leak), on the one-day change only: the same test against the
  day's absolute return over the EWMA volatility known the day before, ``|r[t+k]| / sigma[t+k-1]``
  (``absolute_surprise``): |r| itself clusters, so honest volatility features predict it, while
  its surprise is close to independent of the past. The EWMA is not the true volatility, so an
  honest volatility feature still correlates with the surprise, and as much with its past: here
  the floor applies to ``|corr(future)| - |corr(past, the same lag back)|`` too.
The same tests run on the whole history and on rolling windows of ``lag_window_rows`` rows
(stepping half a window), so a leak in part of the history (a vendor revision of recent years)
is not diluted by the honest years.

The null: ``z_limit`` is the two-sided Bonferroni bound for ``lag_alpha`` over every test made
(features x transforms x lags x statistics x windows), so the chance that an export of honest
features raises any alarm is at most about ``lag_alpha`` if the z are standard normal. That
assumption is checked, not trusted: the false-alarm rate is measured on honest features of the
sample and real markets and on random honest features of random-walk markets
(``cbi_pipeline_tests/benchmarks/leak_screen.py``); the same statistic against the past is
reported beside each finding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats
from scipy.special import ndtri
from threadpoolctl import threadpool_limits

from cbi_pipeline.core.export import PRICE_COL, feature_columns
from cbi_pipeline.core.fingerprint import digest
from cbi_pipeline.core.leakage.arrays import float_column
from cbi_pipeline.core.leakage.spec import DEFAULT_LEAKAGE, MIN_OVERLAP, LeakageSpec
from cbi_pipeline.core.memo import Kept
from cbi_pipeline.core.vocabulary import horizon_days

LAG_TRANSFORMS = ("level", "change")
RETURN = "return"
ABSOLUTE_RETURN = "absolute return"


@dataclass(frozen=True)
class LagEvidence:
    """The strongest evidence for one feature: at which lag, in which transform and window."""

    feature: str
    transform: str
    statistic: str
    lag: int
    corr: float
    z: float
    past_corr: float
    past_z: float
    z_limit: float
    first_date: str
    last_date: str

    def reason(self) -> str:
        what = "return" if self.statistic == RETURN else "absolute return"
        return (
            f"its {self.transform} knows the target's one-day {what} {self.lag} day(s) ahead: "
            f"corr {self.corr:+.3f}, z {self.z:+.1f} (limit {self.z_limit:.2f}), vs corr "
            f"{self.past_corr:+.3f}, z {self.past_z:+.1f} with the same statistic {self.lag - 1} "
            f"day(s) back; rows {self.first_date}..{self.last_date}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "feature": self.feature,
            "transform": self.transform,
            "statistic": self.statistic,
            "lag": self.lag,
            "corr": round(self.corr, 6),
            "z": round(self.z, 4),
            "past_corr": round(self.past_corr, 6),
            "past_z": round(self.past_z, 4),
            "z_limit": round(self.z_limit, 4),
            "first_date": self.first_date,
            "last_date": self.last_date,
        }


@dataclass(frozen=True)
class LagScreen:
    """flagged: one finding per flagged feature (its strongest, relative to the limit);
    closest: the honest features nearest the limit (the margin the screen leaves)."""

    horizon: str
    lags: int
    features: int
    tests: int
    z_limit: float
    windows: tuple[tuple[str, str], ...]
    flagged: tuple[LagEvidence, ...]
    closest: tuple[LagEvidence, ...]
    note: str

    @property
    def names(self) -> list[str]:
        return [f.feature for f in self.flagged]


def _normal_scores(a: np.ndarray) -> np.ndarray:
    """Each column's finite values replaced by ``Phi^-1((rank - 0.5) / count)`` (ties averaged);
    non-finite values stay NaN. Ranks by polars and
    ``ndtri`` for the quantiles: several times faster than scipy's rankdata and norm.ppf."""
    finite = np.isfinite(a)
    frame = pl.from_numpy(np.where(finite, a, np.nan)).fill_nan(None)
    ranks = frame.select(pl.all().rank("average")).to_numpy().astype(np.float64)
    count = finite.sum(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = ndtri((ranks - 0.5) / np.maximum(count, 1))  # the normal quantile function
    return np.where(finite, scores, np.nan)


def absolute_surprise(r: np.ndarray, lam: float = 0.94) -> np.ndarray:
    """``|r[s]| / sigma[s-1]``: the day's absolute return over the EWMA volatility (RiskMetrics
    lambda) known the day before. Volatility clusters, so ``|r|`` itself is persistent and an
    honest volatility feature predicts it; its surprise is close to independent of the past, so
    a feature that knows it knows the future."""
    var = (
        pl.Series(r * r)
        .fill_nan(None)
        .ewm_mean(alpha=1.0 - lam, adjust=False, ignore_nulls=True)
        .shift(1)
        .to_numpy()
        .astype(np.float64)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.abs(r) / np.sqrt(var)
    out[~np.isfinite(out)] = np.nan
    return out


Scored = tuple[np.ndarray, np.ndarray, np.ndarray]
_SCORED: Kept[Scored] = Kept(3)  # the export's, and the canary's that come between horizons


def _scored(x: np.ndarray, r: np.ndarray) -> Scored:
    """Normal scores of the features and their one-day changes, of the returns and of the
    absolute surprises. Every horizon's export holds the same features and prices, and scoring
    them is most of a short horizon's screen (0.4 s of 0.4 s at 1w): the scores of the last few
    inputs are kept, keyed by their bytes, read-only."""
    key = digest(np.ascontiguousarray(x).tobytes(), r.tobytes(), str(x.shape))

    def compute() -> Scored:
        change = np.full_like(x, np.nan)
        change[1:] = x[1:] - x[:-1]
        scored = (
            _normal_scores(np.hstack([x, change])),
            _normal_scores(r[:, None])[:, 0],
            _normal_scores(absolute_surprise(r)[:, None])[:, 0],
        )
        for a in scored:
            a.flags.writeable = False
        return scored

    return _SCORED.get(key, compute)


def _centred(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns centred on their finite rows, non-finite set to 0; and the finite mask (0/1)."""
    finite = np.isfinite(a)
    mean = np.where(finite, a, 0.0).sum(axis=0) / np.maximum(finite.sum(axis=0), 1)
    return np.where(finite, a - mean, 0.0), finite.astype(np.float64)


def _lagged(r: np.ndarray, lags: int, ahead: bool) -> np.ndarray:
    """Column k-1: r[t+k] (ahead) or r[t-k+1] (the same statistic looking back), k = 1..lags."""
    n = r.size
    out = np.full((n, lags), np.nan)
    for k in range(1, min(lags, n - 1) + 1):
        if ahead:
            out[: n - k, k - 1] = r[k:]
        else:
            out[k - 1 :, k - 1] = r[: n - k + 1]
    return out


Sides = tuple[np.ndarray, np.ndarray, np.ndarray]


def _sides(xc: np.ndarray, xm: np.ndarray, dtype: type = np.float64) -> Sides:
    """The feature side of ``_z_corr``: centred values, their squares and the finite mask."""
    xc = xc.astype(dtype, copy=False)
    return xc, xc * xc, xm.astype(dtype, copy=False)


def _z_corr(x: Sides, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(White z, correlation) of every column of x with every column of y, (F, L) each, in the
    dtype of ``x`` (float32 for the bulk of the screen: half the time, and the z of a leak is far
    from the limit; a finding's evidence is recomputed in float64); NaN where fewer than
    MIN_OVERLAP rows have both or a side has no variance."""
    xc, xc2, xm = x
    yc, ym = _centred(y)
    yc = yc.astype(xc.dtype, copy=False)
    ym = ym.astype(xc.dtype, copy=False)
    rhs = np.hstack([yc * yc, ym])
    s = xc.T @ yc
    q, vx = np.hsplit(xc2.T @ rhs, 2)
    vy, both = np.hsplit(xm.T @ rhs, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (s / np.sqrt(q)).astype(np.float64)
        corr = (s / np.sqrt(vx * vy)).astype(np.float64)
    bad = (both < MIN_OVERLAP) | ~(q > 0) | ~(vx > 0) | ~(vy > 0)
    z[bad] = np.nan
    corr[bad] = np.nan
    return z, np.clip(corr, -1.0, 1.0)


def _windows(n: int, rows: int) -> list[tuple[int, int]]:
    """The whole history, then rolling windows of ``rows`` rows stepping half a window (the
    last one ending at the last row) when the history holds at least two windows."""
    spans = [(0, n)]
    if rows > 0 and n >= 2 * rows:
        step = max(rows // 2, 1)
        starts = list(range(0, n - rows + 1, step))
        if starts[-1] != n - rows:
            starts.append(n - rows)
        spans += [(a, a + rows) for a in starts]
    return spans


def lag_screen(
    export: pl.DataFrame,
    horizon: str,
    features: Sequence[str] | None = None,
    spec: LeakageSpec = DEFAULT_LEAKAGE,
    limit_features: int | None = None,
) -> LagScreen:
    """Run the lag screen (module docstring) on the numeric features of an export.

    limit_features: the number of features the |z| limit is set for (default: those screened).
    The canary screens its few planted columns against the limit of a screen of the whole
    export, so that catching them proves the bar the real screen applies."""
    # One BLAS thread: its threads thrash on a busy 2-core machine (entered once: it inspects
    # the loaded libraries, too slow to repeat per product).
    with threadpool_limits(1):
        return _lag_screen(export, horizon, features, spec, limit_features)


def _lag_screen(
    export: pl.DataFrame,
    horizon: str,
    features: Sequence[str] | None,
    spec: LeakageSpec,
    limit_features: int | None,
) -> LagScreen:
    h = horizon_days(horizon)
    names = list(feature_columns(export) if features is None else features)
    schema = export.schema
    numeric = [c for c in names if schema[c].is_numeric() or schema[c] == pl.Boolean]
    price = float_column(export, PRICE_COL)
    n = price.size
    with np.errstate(invalid="ignore", divide="ignore"):
        logp = np.log(price)
    r = np.full(n, np.nan)
    r[1:] = np.diff(logp)
    dates = [str(d) for d in export["date"].to_list()]
    lags = max(1, min(h, n - 2))
    spans = _windows(n, spec.lag_window_rows)
    columns = [(f, t) for t in LAG_TRANSFORMS for f in numeric]
    # return tests on both transforms, absolute-return tests on the change only
    tests = (len(numeric) if limit_features is None else limit_features) * 3 * lags * len(spans)
    z_limit = float(stats.norm.isf(spec.lag_alpha / (2 * max(tests, 1))))
    window_dates = tuple((dates[a], dates[b - 1]) for a, b in spans) if n else ()
    if not numeric or n < MIN_OVERLAP + 2:
        note = f"{len(numeric)} numeric features, {n} rows: nothing to test"
        return LagScreen(horizon, lags, len(numeric), 0, z_limit, window_dates, (), (), note)
    x = (
        export.select([pl.col(c).cast(pl.Float64).fill_nan(None) for c in numeric])
        .to_numpy()
        .astype(np.float64)
    )
    both, scores, abs_scores = _scored(x, r)
    ahead, back = _lagged(scores, lags, True), _lagged(scores, lags, False)
    abs_ahead, abs_back = _lagged(abs_scores, lags, True), _lagged(abs_scores, lags, False)
    # Per feature: its best finding (score, window, column, lag, statistic), flagged or not.
    Found = tuple[float, int, int, int, str]
    best: dict[str, Found] = {}
    closest: dict[str, Found] = {}
    half = len(numeric)
    for w, (a, b) in enumerate(spans):
        xc, xm = _centred(both[a:b])
        all_sides = _sides(xc, xm, np.float32)
        change_sides = _sides(xc[:, half:], xm[:, half:], np.float32)
        z_ret, c_ret = _z_corr(all_sides, ahead[a:b])
        z_abs, c_abs = _z_corr(change_sides, abs_ahead[a:b])
        _, c_abs_past = _z_corr(change_sides, abs_back[a:b])
        # Volatility features honestly track the surprise's past (the EWMA is not the true
        # volatility); a volatility leak knows the future surprise better than the past one.
        abs_margin = np.abs(c_abs) - np.nan_to_num(np.abs(c_abs_past), nan=0.0)
        tests_of = (
            (RETURN, z_ret, np.abs(c_ret), 0),
            (ABSOLUTE_RETURN, z_abs, np.minimum(np.abs(c_abs), abs_margin), half),
        )
        for statistic, z, strength, offset in tests_of:
            za = np.nan_to_num(np.abs(z), nan=0.0)
            ok = (za >= z_limit) & (np.nan_to_num(strength, nan=0.0) >= spec.lag_min_corr)
            # a cell below the correlation floor can come close to the limit, never reach it
            score = np.where(ok, za, np.minimum(za, z_limit * 0.999))
            lag_of = np.argmax(score, axis=1)
            top = score[np.arange(score.shape[0]), lag_of]
            for row in np.flatnonzero(top > 0):
                col = int(row) + offset
                feature = columns[col][0]
                found = (float(top[row]), w, col, int(lag_of[row]), statistic)
                pool = best if ok[row, lag_of[row]] else closest
                if feature not in pool or found[0] > pool[feature][0]:
                    pool[feature] = found

    def evidence(found: Found) -> LagEvidence:
        _, w, col, k, statistic = found
        a, b = spans[w]
        side = _sides(*_centred(both[a:b, col : col + 1]))
        future, past = (ahead, back) if statistic == RETURN else (abs_ahead, abs_back)
        z, c = _z_corr(side, future[a:b, k : k + 1])
        zb, cb = _z_corr(side, past[a:b, k : k + 1])
        finite = [float(v[0, 0]) if math.isfinite(float(v[0, 0])) else 0.0 for v in (cb, zb)]
        return LagEvidence(
            columns[col][0],
            columns[col][1],
            statistic,
            k + 1,
            float(c[0, 0]),
            float(z[0, 0]),
            finite[0],
            finite[1],
            z_limit,
            dates[a],
            dates[b - 1],
        )

    flagged = tuple(evidence(best[f]) for f in numeric if f in best)
    honest = sorted((v for f, v in closest.items() if f not in best), key=lambda v: -v[0])[:10]
    note = (
        f"{len(numeric)} features x {len(LAG_TRANSFORMS)} transforms against the one-day "
        f"return 1..{lags} days ahead, on the whole history and {len(spans) - 1} rolling "
        f"windows of {spec.lag_window_rows} rows: {tests} tests, |z| limit {z_limit:.2f} "
        f"(Bonferroni, family-wise alpha {spec.lag_alpha:g})"
    )
    return LagScreen(
        horizon,
        lags,
        len(numeric),
        tests,
        z_limit,
        window_dates,
        flagged,
        tuple(evidence(v) for v in honest),
        note,
    )


def lag_screen_as_dict(s: LagScreen) -> dict[str, object]:
    return {
        "lags": s.lags,
        "features": s.features,
        "tests": s.tests,
        "z_limit": round(s.z_limit, 4),
        "windows": [list(w) for w in s.windows],
        "note": s.note,
        "flagged": [e.as_dict() | {"reason": e.reason()} for e in s.flagged],
        "closest": [e.as_dict() for e in s.closest],
    }
