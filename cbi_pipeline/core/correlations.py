"""Block-wise rolling correlations of daily returns (DESIGN §1, §6), built so that a later as-of
date extends an earlier one exactly.

What is computed, per as-of date and for windows of 90, 180 and 365 trading days:

- the rolling Pearson correlation of every pair of series *within* a feature block (never the full
  N x N matrix) and of the key pairs (the target against VIX, DXY, palm oil and the crush margin,
  plus configured extras), as daily series (stored in full for the key pairs, for the last
  ``history_days`` rows for the others, with every pair's value at the as-of date);
- the top-k candidates of each block by |correlation with the target's returns| over the history
  up to the as-of date, and the cross-block correlations between those candidates at the as-of date;
- one correlation matrix per block and regime of the regime calendar (all days of the regime up to
  the as-of date).

"Returns" are daily log returns for market closes and daily first differences for signals and
spreads (which can be zero or negative). Missing values are skipped pairwise: a day counts for a
pair when both series have a finite return that day, and a window with fewer than
``CorrelationSpec.min_obs(window)`` such days, or in which either series is constant, gives NaN
in the arrays (null in the stored frames).

The rolling kernel (numba, float64 sums, float32 out) never subtracts a value that leaves the
window. Time is cut into chunks of ``w`` rows aligned to the first row of the data; the sums over
a window ending at row t are the suffix sums of the previous chunk (accumulated backwards from its
end) plus the prefix sums of t's chunk, so each window's sums are formed from its own values only:
no drift over thousands of updates, an all-zero window sums to exactly zero, and the result at t
depends only on the rows of t's window and on where the chunks start. The parallel tasks are
(window, chunk); a task first computes each series' window sums, mean and 1/sqrt(centred sum of
squares), shared by all pairs of the series, so that a pair adds only its cross-product sum, except
in chunks where exactly one of its two series is missing on some day: those take a pairwise path
whose arithmetic is identical on windows without such days. Every row costs O(1) per pair and
window: O(n * pairs * windows) in all, in loops that vectorise.

Incremental updates: ``CorrelationState`` keeps the last ``2 * max(windows)`` rows of returns (what
the chunks of any later row can reach back to), the last transformed level of each series (for the
next return), the regime and target co-moments (Welford, updated day by day in date order) and a
hash of the levels the state was built from. Extending a state over new rows replays exactly the
arithmetic of a full build, so an incremental result is bitwise equal to a full rebuild.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields

import numba
import numpy as np
import polars as pl
from numba import njit, prange

from cbi_pipeline.core.blocks import BLOCKS, CORRELATIONS, SPREADS, block_of
from cbi_pipeline.core.features import FeatureDef, FeatureSpec, feature_plan
from cbi_pipeline.core.panel import close_column
from cbi_pipeline.core.regimes import DEFAULT_REGIMES, Regime, validate_regimes

# A window whose centred sum of squares is at most this share of its raw sum of squares is
# treated as constant (correlation undefined): rounding alone leaves ~1e-14 there.
DEGENERATE_TOL = 1e-10
LOG_RETURN = "log_return"
DIFFERENCE = "difference"
# Co-moment slots of the Welford accumulators.
N, MEAN_X, MEAN_Y, M2_X, M2_Y, C_XY = range(6)


@dataclass(frozen=True)
class CorrelationSpec:
    """What the correlation cache computes.

    target_symbol: the forecast target; key pairs and top-k candidates are taken against it.
    windows: rolling windows in trading days (rows of the target's calendar).
    min_obs_share: a window needs at least ``max(3, ceil(share * window))`` pairwise-complete days.
    key_partners: series paired with the target in every partition and exported as features;
        those absent from the data are skipped (the real 1995-2010 file has no palm oil).
    extra_key_partners: further key partners; each must exist in the data.
    top_k: candidates per block for the cross-block correlations.
    regimes: the regime calendar for the regime-specific matrices.
    regime_min_obs: pairwise-complete days a regime needs before its correlation is reported.
    history_days: trailing rows of every within-block series kept in each partition.
    block_overrides: series -> block, as in ``FeatureSpec``.
    """

    target_symbol: str = "ZL"
    windows: tuple[int, ...] = (90, 180, 365)
    min_obs_share: float = 2.0 / 3.0
    key_partners: tuple[str, ...] = ("VIX", "DXY", "FCPO", "spread_crush_margin")
    extra_key_partners: tuple[str, ...] = ()
    top_k: int = 3
    regimes: tuple[Regime, ...] = DEFAULT_REGIMES
    regime_min_obs: int = 60
    history_days: int = 252
    block_overrides: Mapping[str, str] = field(default_factory=dict)

    def min_obs(self, window: int) -> int:
        return max(3, math.ceil(round(self.min_obs_share * window, 9)))

    @property
    def max_window(self) -> int:
        return max(self.windows)

    @property
    def tail_rows(self) -> int:
        """Rows of returns a state keeps: the chunks of a later row reach back < 2 windows."""
        return 2 * self.max_window

    def validate(self) -> CorrelationSpec:
        if not self.windows or any(w < 3 for w in self.windows):
            raise ValueError(f"correlation windows must be >= 3 days, got {self.windows}")
        if len(set(self.windows)) != len(self.windows):
            raise ValueError(f"correlation windows must be distinct, got {self.windows}")
        if not 0.0 < self.min_obs_share <= 1.0:
            raise ValueError(f"min_obs_share must be in (0, 1], got {self.min_obs_share}")
        if self.top_k < 0 or self.history_days < 1 or self.regime_min_obs < 3:
            raise ValueError(
                f"need top_k >= 0, history_days >= 1 and regime_min_obs >= 3, got {self.top_k}, "
                f"{self.history_days}, {self.regime_min_obs}"
            )
        validate_regimes(self.regimes)
        return self


# --- kernels ---------------------------------------------------------------------------------

# Below this many row-pair updates a kernel runs on one thread: waking the other threads costs
# more than the work, and on a busy machine a parallel region can wait a whole time slice.
SERIAL_WORK = 200_000


@contextlib.contextmanager
def _threads(work: int) -> Iterator[None]:
    previous = numba.get_num_threads()
    numba.set_num_threads(1 if work < SERIAL_WORK else previous)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


@njit(cache=True, error_model="numpy")
def _window_totals(pre, suf, out, w, lo, cs, ce, first):
    """``out[pos - first]`` = prefix sum of the chunk to pos + suffix sum of the previous chunk
    from the window's first row, for rows [first, ce) (see ``_emit`` for the indices)."""
    mid = min(max(lo + w - 1, first), ce)
    head = mid - first
    p = pre[first - cs : mid - cs]
    s0 = suf[0]
    for k in range(head):
        out[k] = p[k] + s0
    p = pre[mid - cs : ce - cs]
    s = suf[mid - (lo + w - 1) : ce - (lo + w - 1)]
    o = out[head:]
    for k in range(ce - mid):
        o[k] = p[k] + s[k]


@njit(cache=True, error_model="numpy")
def _finish_series(sums, squares, nan_count, means, isds, w, m, first):
    """Mean and 1 / sqrt(centred sum of squares) of each window from its sums; the count of
    present days comes from the NaN counts. NaN below min_obs; isd NaN for a constant window.
    Computed unconditionally and selected, so that the loop vectorises."""
    width = sums.shape[0]
    counts = np.empty(width)
    head = min(max(w - 1 - first, 0), width)  # windows that start at row 0
    for k in range(head):
        pos = first + k
        counts[k] = float(pos + 1 - nan_count[pos + 1])
    ends = nan_count[first + head + 1 : first + width + 1]
    starts = nan_count[first + head - w + 1 : first + width - w + 1]
    tail = counts[head:]
    for k in range(width - head):
        tail[k] = float(w - (ends[k] - starts[k]))
    for k in range(width):
        tc = counts[k]
        t1 = sums[k]
        t2 = squares[k]
        mean = t1 * (1.0 / tc)
        var = t2 - t1 * mean
        isd = 1.0 / math.sqrt(var)
        enough = tc >= m
        means[k] = mean if enough else np.nan
        isds[k] = isd if enough and var > DEGENERATE_TOL * t2 else np.nan


@njit(cache=True, error_model="numpy")
def _emit(pre, suf, sums_a, means_b, isd_a, isd_b, o, w, lo, cs, ce, first, start):
    """Correlations of rows [first, ce) from the prefix sums of the chunk (``pre[pos - cs]``) and
    the suffix sums of the previous one (``suf[pos - lo]``, ``suf[cs - lo]`` = 0 for none)."""
    # rows whose window starts before lo (only in the first chunks, where lo = 0) take all of
    # the suffix; later rows start at pos - w + 1. Zero-based slices let the loops vectorise.
    mid = min(max(lo + w - 1, first), ce)
    head = mid - first
    p = pre[first - cs : mid - cs]
    sa = sums_a[:head]
    mb = means_b[:head]
    ia = isd_a[:head]
    ib = isd_b[:head]
    oo = o[first - start : mid - start]
    s0 = suf[0]
    for k in range(head):
        res = (p[k] + s0 - sa[k] * mb[k]) * ia[k] * ib[k]
        res = 1.0 if res > 1.0 else res
        oo[k] = -1.0 if res < -1.0 else res
    tail = ce - mid
    p = pre[mid - cs : ce - cs]
    s = suf[mid - (lo + w - 1) : ce - (lo + w - 1)]
    sa = sums_a[head:]
    mb = means_b[head:]
    ia = isd_a[head:]
    ib = isd_b[head:]
    oo = o[mid - start : ce - start]
    for k in range(tail):
        res = (p[k] + s[k] - sa[k] * mb[k]) * ia[k] * ib[k]
        res = 1.0 if res > 1.0 else res
        oo[k] = -1.0 if res < -1.0 else res


@njit(cache=True, error_model="numpy")
def _pair_slow(x, y, w, m, lo, cs, ce, first, start, o, suf, tot):
    """A pair over one chunk where its series are missing on different days: the count and the
    five sums over the days where both are present (``suf`` and ``tot`` are scratch of at least
    6 x (cs - lo + 1) and 6 x (ce - first)), then the same formula as the shared path
    (``_finish_series`` and ``_emit``), so that windows without such days agree bitwise."""
    span = cs - lo
    c = 0.0
    a1 = 0.0
    a2 = 0.0
    b1 = 0.0
    b2 = 0.0
    ab = 0.0
    for k in range(6):
        suf[k, span] = 0.0
    for u in range(span - 1, -1, -1):
        xv = x[lo + u]
        yv = y[lo + u]
        if xv == xv and yv == yv:
            c += 1.0
            a1 += xv
            a2 += xv * xv
            b1 += yv
            b2 += yv * yv
            ab += xv * yv
        suf[0, u] = c
        suf[1, u] = a1
        suf[2, u] = a2
        suf[3, u] = b1
        suf[4, u] = b2
        suf[5, u] = ab
    c = 0.0
    a1 = 0.0
    a2 = 0.0
    b1 = 0.0
    b2 = 0.0
    ab = 0.0
    for pos in range(cs, ce):
        xv = x[pos]
        yv = y[pos]
        if xv == xv and yv == yv:
            c += 1.0
            a1 += xv
            a2 += xv * xv
            b1 += yv
            b2 += yv * yv
            ab += xv * yv
        if pos >= first:
            j = max(pos - w + 1, lo) - lo
            k = pos - first
            tot[0, k] = c + suf[0, j]
            tot[1, k] = a1 + suf[1, j]
            tot[2, k] = a2 + suf[2, j]
            tot[3, k] = b1 + suf[3, j]
            tot[4, k] = b2 + suf[4, j]
            tot[5, k] = ab + suf[5, j]
    oo = o[first - start : ce - start]
    tc_ = tot[0]
    t1_ = tot[1]
    t2_ = tot[2]
    u1_ = tot[3]
    u2_ = tot[4]
    t_ = tot[5]
    for k in range(ce - first):
        tc = tc_[k]
        t1 = t1_[k]
        t2 = t2_[k]
        u1 = u1_[k]
        u2 = u2_[k]
        inv = 1.0 / tc
        mx = t1 * inv
        my = u1 * inv
        vx = t2 - t1 * mx
        vy = u2 - u1 * my
        isx = 1.0 / math.sqrt(vx)
        isy = 1.0 / math.sqrt(vy)
        res = (t_[k] - t1 * my) * isx * isy
        res = 1.0 if res > 1.0 else res
        res = -1.0 if res < -1.0 else res
        ok = tc >= m and vx > DEGENERATE_TOL * t2 and vy > DEGENERATE_TOL * u2
        oo[k] = res if ok else np.nan


@njit(parallel=True, cache=True, error_model="numpy")
def _rolling_kernel(
    r, r0, nan_count, ia, ib, windows, min_obs, task_w, task_cs, origin, start, out
):
    """Rolling correlations of every pair for rows [start, n), one task per window and chunk.

    A task computes the window sums of each series over its chunk (count, sum, mean and
    1 / sqrt of the centred sum of squares, shared by all the series' pairs), then each pair's
    cross-product sum (two pairs at a time, so that two running sums overlap). A pair whose two
    series are missing on different days within the chunk's reach takes ``_pair_slow``,
    which performs the same floating-point operations on windows without such days, so the two
    paths agree bitwise. ``r0`` is ``r`` with NaN as 0; ``nan_count[i, t]`` counts the NaNs of
    series i before row t.
    """
    p, n = r.shape
    npairs = ia.shape[0]
    for q in prange(task_w.shape[0]):
        wi = task_w[q]
        cs = task_cs[q]
        w = windows[wi]
        m = min_obs[wi]
        lo = max(cs - w, 0)
        ce = min(cs + w, n)
        first = max(cs, start)
        width = ce - first
        span = cs - lo
        sums = np.empty((p, width))
        means = np.empty((p, width))
        isds = np.empty((p, width))
        suf1 = np.empty(span + 1)
        suf2 = np.empty(span + 1)
        pre1 = np.empty(ce - cs)
        pre2 = np.empty(ce - cs)
        sq = np.empty(width)
        for i in range(p):
            # sums of the present values (r0 holds 0 for a missing one) and of their squares
            x = r0[i, lo:ce]
            acc1 = 0.0
            acc2 = 0.0
            suf1[span] = 0.0
            suf2[span] = 0.0
            for u in range(span - 1, -1, -1):
                acc1 += x[u]
                suf1[u] = acc1
                acc2 += x[u] * x[u]
                suf2[u] = acc2
            acc1 = 0.0
            acc2 = 0.0
            for v in range(ce - cs):
                acc1 += x[span + v]
                pre1[v] = acc1
                acc2 += x[span + v] * x[span + v]
                pre2[v] = acc2
            _window_totals(pre1, suf1, sums[i], w, lo, cs, ce, first)
            _window_totals(pre2, suf2, sq, w, lo, cs, ce, first)
            _finish_series(sums[i], sq, nan_count[i], means[i], isds[i], w, m, first)
        s6 = np.empty((6, span + 1))
        t6 = np.empty((6, width))
        fast = np.empty(npairs, dtype=np.int64)
        n_fast = 0
        for pi in range(npairs):
            a = ia[pi]
            b = ib[pi]
            nx = nan_count[a, ce] - nan_count[a, lo]
            ny = nan_count[b, ce] - nan_count[b, lo]
            one_sided = nx != ny
            if nx > 0 and nx == ny:
                for pos in range(lo, ce):
                    if (r[a, pos] == r[a, pos]) != (r[b, pos] == r[b, pos]):
                        one_sided = True
                        break
            if one_sided:
                _pair_slow(r[a], r[b], w, m, lo, cs, ce, first, start, out[wi, pi], s6, t6)
            else:
                fast[n_fast] = pi
                n_fast += 1
        for f in range(0, n_fast, 2):
            p1 = fast[f]
            p2 = fast[f + 1] if f + 1 < n_fast else p1
            x1 = r0[ia[p1], lo:ce]
            y1 = r0[ib[p1], lo:ce]
            x2 = r0[ia[p2], lo:ce]
            y2 = r0[ib[p2], lo:ce]
            acc1 = 0.0
            acc2 = 0.0
            suf1[span] = 0.0
            suf2[span] = 0.0
            for u in range(span - 1, -1, -1):
                acc1 += x1[u] * y1[u]
                suf1[u] = acc1
                acc2 += x2[u] * y2[u]
                suf2[u] = acc2
            acc1 = 0.0
            acc2 = 0.0
            for v in range(ce - cs):
                acc1 += x1[span + v] * y1[span + v]
                pre1[v] = acc1
                acc2 += x2[span + v] * y2[span + v]
                pre2[v] = acc2
            _emit(
                pre1,
                suf1,
                sums[ia[p1]],
                means[ib[p1]],
                isds[ia[p1]],
                isds[ib[p1]],
                out[wi, p1],
                w,
                lo,
                cs,
                ce,
                first,
                start,
            )
            if p2 != p1:
                _emit(
                    pre2,
                    suf2,
                    sums[ia[p2]],
                    means[ib[p2]],
                    isds[ia[p2]],
                    isds[ib[p2]],
                    out[wi, p2],
                    w,
                    lo,
                    cs,
                    ce,
                    first,
                    start,
                )


@njit(parallel=True, cache=True)
def _update_comoments(r, ia, ib, group, start, acc, recip):
    """Welford co-moments of each pair, per group (regime), over rows [start, n) in date order.

    ``recip[k]`` is 1 / k (a multiplication keeps the division off the running means' chain);
    a group's moments stay in registers while consecutive rows belong to it."""
    n = r.shape[1]
    for pi in prange(ia.shape[0]):
        x = r[ia[pi]]
        y = r[ib[pi]]
        g = -1
        cnt = 0
        mx = 0.0
        my = 0.0
        m2x = 0.0
        m2y = 0.0
        cxy = 0.0
        for t in range(start, n):
            if group[t] != g:
                if g >= 0:
                    acc[g, pi, 0] = float(cnt)
                    acc[g, pi, 1] = mx
                    acc[g, pi, 2] = my
                    acc[g, pi, 3] = m2x
                    acc[g, pi, 4] = m2y
                    acc[g, pi, 5] = cxy
                g = group[t]
                cnt = int(acc[g, pi, 0])
                mx = acc[g, pi, 1]
                my = acc[g, pi, 2]
                m2x = acc[g, pi, 3]
                m2y = acc[g, pi, 4]
                cxy = acc[g, pi, 5]
            xv = x[t]
            yv = y[t]
            if xv == xv and yv == yv:
                cnt += 1
                dx = xv - mx
                dy = yv - my
                mx = mx + dx * recip[cnt]
                my = my + dy * recip[cnt]
                m2x += dx * (xv - mx)
                m2y += dy * (yv - my)
                cxy += dx * (yv - my)
        if g >= 0:
            acc[g, pi, 0] = float(cnt)
            acc[g, pi, 1] = mx
            acc[g, pi, 2] = my
            acc[g, pi, 3] = m2x
            acc[g, pi, 4] = m2y
            acc[g, pi, 5] = cxy


@njit(cache=True)
def _transform_levels(levels, log_rows):
    """log of the rows flagged in ``log_rows``, the level itself elsewhere; non-finite -> NaN."""
    p, n = levels.shape
    out = np.empty((p, n))
    for i in range(p):
        for t in range(n):
            v = levels[i, t]
            if log_rows[i]:
                v = math.log(v) if v > 0.0 else np.nan
            out[i, t] = v if math.isfinite(v) else np.nan
    return out


def _check_returns(returns: np.ndarray) -> np.ndarray:
    if returns.ndim != 2:
        raise ValueError(f"returns must be 2-D (series x days), got shape {returns.shape}")
    r = np.ascontiguousarray(returns, dtype=np.float64)
    return np.where(np.isfinite(r), r, np.nan)


def rolling_corr(
    returns: np.ndarray,
    pairs: np.ndarray,
    windows: Sequence[int] | np.ndarray,
    min_obs: Sequence[int] | np.ndarray,
    origin: int = 0,
    start: int = 0,
) -> np.ndarray:
    """Rolling pairwise-complete Pearson correlations, ``out[window, pair, row - start]`` (float32).

    ``returns`` is series x days (NaN or inf = missing). Column ``i`` of the array is row
    ``origin + i`` of the full history: chunks are aligned to the full history, so a tail with
    ``origin`` = its first row's index and ``start >= 2 * max(windows) - 1`` reproduces the full
    history's results bitwise from ``start`` on (the chunks of those rows reach back no further
    than the tail). With ``origin = 0`` the array is the whole history and the first rows use the
    partial windows available (as pandas ``min_periods`` does).
    """
    r = _check_returns(returns)
    p, n = r.shape
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= p):
        raise ValueError(f"pair indices must be in [0, {p}), got {pairs.min()}..{pairs.max()}")
    w_arr = np.asarray(windows, dtype=np.int64)
    m_arr = np.asarray(min_obs, dtype=np.int64)
    if w_arr.shape != m_arr.shape or (w_arr < 2).any() or (m_arr < 2).any():
        raise ValueError(f"windows {list(windows)} and min_obs {list(min_obs)}: need >= 2 each")
    if not 0 <= start <= n or origin < 0:
        raise ValueError(f"need 0 <= start <= {n} and origin >= 0, got {start}, {origin}")
    need = 2 * int(w_arr.max()) - 1
    if origin > 0 and start < need and start < n:
        raise ValueError(
            f"a tail with origin {origin} must hold 2 * max(windows) - 1 = {need} rows before "
            f"start, got {start}"
        )
    nw, m_out = w_arr.size, n - start
    out = np.empty((nw, pairs.shape[0], m_out), dtype=np.float32)
    if m_out == 0 or pairs.shape[0] == 0:
        return out
    # One task per window and chunk, ordered by chunk start so that an even split of the task
    # list between threads gives each about the same rows of every window.
    tasks = sorted(
        (cs, wi)
        for wi, w in enumerate(w_arr.tolist())
        for cs in range(((origin + start) // w) * w - origin, n, w)
    )
    task_cs = np.array([t[0] for t in tasks], dtype=np.int64)
    task_w = np.array([t[1] for t in tasks], dtype=np.int64)
    nan_count = np.zeros((p, n + 1), dtype=np.int64)
    np.cumsum(np.isnan(r), axis=1, out=nan_count[:, 1:])
    with _threads(m_out * pairs.shape[0] * nw):
        _rolling_kernel(
            r,
            np.nan_to_num(r, nan=0.0),
            nan_count,
            pairs[:, 0].copy(),
            pairs[:, 1].copy(),
            w_arr,
            m_arr,
            task_w,
            task_cs,
            origin,
            start,
            out,
        )
    return out


def comoment_corr(acc: np.ndarray, min_obs: int) -> np.ndarray:
    """Correlations from Welford co-moments (``acc[..., 6]``); NaN below min_obs or if constant."""
    n, m2x, m2y, cxy = acc[..., N], acc[..., M2_X], acc[..., M2_Y], acc[..., C_XY]
    scale_x = m2x + n * acc[..., MEAN_X] ** 2
    scale_y = m2y + n * acc[..., MEAN_Y] ** 2
    ok = (n >= min_obs) & (m2x > DEGENERATE_TOL * scale_x) & (m2y > DEGENERATE_TOL * scale_y)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.clip(cxy / np.sqrt(m2x * m2y), -1.0, 1.0)
    return np.where(ok, corr, np.nan)


# --- series, pairs and levels ----------------------------------------------------------------


@dataclass(frozen=True)
class CorrSeries:
    """One series whose returns are correlated: its name, block, source and return transform."""

    name: str
    block: str
    source: str
    transform: str


def _spread_plan(columns: Sequence[str], target: str) -> dict[str, pl.Expr]:
    """Base spread levels of the feature plan (not their z-scores or changes), name -> expr."""
    return dict(_spread_plan_cached(tuple(columns), target))


@functools.lru_cache(maxsize=16)
def _spread_plan_cached(columns: tuple[str, ...], target: str) -> tuple[tuple[str, pl.Expr], ...]:
    entries = [
        (d, e) for d, e in feature_plan(list(columns), FeatureSpec(target)) if d.block == SPREADS
    ]
    names = {d.name: d for d, _ in entries}
    base = []
    for d, expr in entries:
        derived = any(
            d.name.startswith(other + "_") and names[other].inputs == d.inputs
            for other in names
            if other != d.name
        )
        if not derived:
            base.append((d.name, expr))
    return tuple(base)


def correlation_series(columns: Sequence[str], spec: CorrelationSpec) -> tuple[CorrSeries, ...]:
    """The series of a panel with these columns, ordered by block, the target first in its block."""
    cols = list(columns)
    target = spec.target_symbol
    if close_column(target) not in cols:
        raise ValueError(f"panel has no {close_column(target)!r} column for target {target!r}")
    own = {f"{target}_{f}" for f in ("open", "high", "low", "volume")}
    found: list[CorrSeries] = []
    for c in cols:
        if c == "date" or c in own:
            continue
        if c.endswith("_close"):
            sym = c.removesuffix("_close")
            found.append(CorrSeries(sym, block_of(sym, spec.block_overrides), c, LOG_RETURN))
        else:
            found.append(CorrSeries(c, block_of(c, spec.block_overrides), c, DIFFERENCE))
    for name in _spread_plan(cols, target):
        found.append(CorrSeries(name, SPREADS, name, DIFFERENCE))
    names = [s.name for s in found]
    if len(set(names)) != len(names):
        raise ValueError(f"correlation series names collide: {sorted(names)}")
    return tuple(sorted(found, key=lambda s: (BLOCKS.index(s.block), s.name != target, s.name)))


def series_levels(
    panel: pl.DataFrame, series: Sequence[CorrSeries], spec: CorrelationSpec
) -> np.ndarray:
    """Levels (series x rows, float64, NaN = missing) of each series on the panel's rows."""
    wanted = {s.name for s in series if s.block == SPREADS and s.source not in panel.columns}
    spreads = _spread_plan(panel.columns, spec.target_symbol) if wanted else {}
    exprs = [
        (
            spreads[s.name]
            if s.name in spreads and s.source not in panel.columns
            else pl.col(s.source)
        )
        .cast(pl.Float64)
        .alias(f"s{i}")
        for i, s in enumerate(series)
    ]
    frame = panel.select(exprs)
    return np.ascontiguousarray(frame.to_numpy(order="c").T).astype(np.float64, copy=False)


def transform_levels(levels: np.ndarray, series: Sequence[CorrSeries]) -> np.ndarray:
    log_rows = np.array([s.transform == LOG_RETURN for s in series], dtype=np.bool_)
    out: np.ndarray = _transform_levels(np.ascontiguousarray(levels, dtype=np.float64), log_rows)
    return out


def returns_from_levels(transformed: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """Day-over-day differences of transformed levels; ``previous`` is the row before the first."""
    out = np.empty_like(transformed)
    first = np.full(transformed.shape[0], np.nan) if previous is None else previous
    if transformed.shape[1]:
        out[:, 0] = transformed[:, 0] - first
        out[:, 1:] = transformed[:, 1:] - transformed[:, :-1]
    return out


def feature_name(target: str, partner: str, window: int) -> str:
    return f"corr_{target.lower()}_{partner.removeprefix('spread_').lower()}_{window}d"


@dataclass(frozen=True)
class PairSet:
    """Pairs of series indices: every within-block pair, then the key pairs not already in it."""

    index: np.ndarray  # (P, 2) int64
    within: np.ndarray  # (P,) bool
    key_partners: tuple[str, ...]  # the key partners present, in spec order
    key_pairs: tuple[int, ...]  # pair row of each present key partner


def pair_set(series: Sequence[CorrSeries], spec: CorrelationSpec) -> PairSet:
    names = [s.name for s in series]
    pos = {n: i for i, n in enumerate(names)}
    missing_extra = [p for p in spec.extra_key_partners if p not in pos]
    if missing_extra:
        raise ValueError(
            f"configured key partners {missing_extra} are not in the data; available series: "
            f"{names}"
        )
    rows: list[tuple[int, int]] = []
    for block in BLOCKS:
        members = [i for i, s in enumerate(series) if s.block == block]
        rows += [(a, b) for k, a in enumerate(members) for b in members[k + 1 :]]
    within = [True] * len(rows)
    where = {pair: k for k, pair in enumerate(rows)}
    t = pos[spec.target_symbol]
    partners, key_rows = [], []
    for partner in dict.fromkeys((*spec.key_partners, *spec.extra_key_partners)):
        if partner not in pos or partner == spec.target_symbol:
            continue
        pair = (min(t, pos[partner]), max(t, pos[partner]))
        if pair not in where:
            where[pair] = len(rows)
            rows.append(pair)
            within.append(False)
        partners.append(partner)
        key_rows.append(where[pair])
    return PairSet(
        np.array(rows, dtype=np.int64).reshape(-1, 2),
        np.array(within, dtype=np.bool_),
        tuple(partners),
        tuple(key_rows),
    )


def regime_index(dates: np.ndarray, regimes: tuple[Regime, ...]) -> np.ndarray:
    """Index of the regime of each date (``datetime64[D]`` array); every date has one."""
    starts = np.array(
        [np.datetime64(r.start) if r.start else np.datetime64("0001-01-01") for r in regimes],
        dtype="datetime64[D]",
    )
    idx = np.searchsorted(starts, dates, side="right") - 1
    first = regimes[0].start
    if (idx < 0).any():
        raise ValueError(f"dates before the first regime's start {first}")
    return idx.astype(np.int64)


def correlation_catalog(
    spec: CorrelationSpec, partners: Sequence[str], series: Sequence[CorrSeries]
) -> list[FeatureDef]:
    """Catalog entries of the exported rolling-correlation features (block Correlations)."""
    by_name = {s.name: s for s in series}
    target = by_name[spec.target_symbol]
    out = []
    for partner in partners:
        s = by_name[partner]
        what = "daily log return" if s.transform == LOG_RETURN else "daily change"
        for w in spec.windows:
            out.append(
                FeatureDef(
                    feature_name(spec.target_symbol, partner, w),
                    CORRELATIONS,
                    f"{w}-day rolling correlation of {target.name} daily log returns with the "
                    f"{what} of {partner} (pairwise-complete days, at least {spec.min_obs(w)}; "
                    "from correlation_cache)",
                    (target.source, s.source),
                )
            )
    return out


# --- the cache for one as-of date ------------------------------------------------------------


@dataclass(frozen=True)
class CorrelationState:
    """What a later as-of date needs to extend this one (stored as npz without pickle + JSON)."""

    n_rows: int
    last_date: dt.date
    tail_returns: np.ndarray  # (series, min(n_rows, spec.tail_rows)) float64
    last_levels: np.ndarray  # (series,) transformed level (log price or level) of the last row
    regime_moments: np.ndarray  # (regimes, pairs, 6) Welford co-moments per regime and pair
    target_moments: np.ndarray  # (series, 6) co-moments of each series with the target
    history_hash: str
    fingerprint: str


@dataclass(frozen=True)
class CorrelationCache:
    """One as-of partition: the frames it stores and the state that extends it."""

    as_of: dt.date
    series: tuple[CorrSeries, ...]
    features: pl.DataFrame  # date + one Float32 column per key partner and window, every row
    recent: pl.DataFrame  # long: window, block, a, b, date, corr for the last history_days rows
    matrices: pl.DataFrame  # as-of value of every pair: window, block, a, b, key, corr, n_obs
    candidates: pl.DataFrame  # top-k of each block by |corr with the target| up to as_of
    cross_block: pl.DataFrame  # as-of correlations between candidates of different blocks
    regime_matrices: pl.DataFrame  # regime, block, a, b, key, corr, n_obs
    state: CorrelationState
    new_rows: int
    catalog: list[FeatureDef]

    @property
    def last_date(self) -> dt.date:
        return self.state.last_date


def fingerprint(spec: CorrelationSpec, series: Sequence[CorrSeries]) -> str:
    """Hash of everything besides the data that the stored numbers depend on."""
    skip = ("regimes", "block_overrides")
    payload = {
        "spec": {f.name: getattr(spec, f.name) for f in fields(spec) if f.name not in skip},
        "min_obs": [spec.min_obs(w) for w in spec.windows],
        "regimes": [[r.name, str(r.start), str(r.end)] for r in spec.regimes],
        "block_overrides": sorted(spec.block_overrides.items()),
        "series": [[s.name, s.block, s.source, s.transform] for s in series],
        "tol": DEGENERATE_TOL,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def history_hash(dates: np.ndarray, levels: np.ndarray, rows: int) -> str:
    """Hash of the first ``rows`` dates and levels (the data a state was built from)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(dates[:rows].astype("datetime64[D]").astype("<i8")).tobytes())
    h.update(np.ascontiguousarray(levels[:, :rows], dtype="<f8").tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class PanelData:
    """The panel rows on or before as_of, as arrays."""

    series: tuple[CorrSeries, ...]
    dates: np.ndarray  # datetime64[D], increasing
    levels: np.ndarray  # (series, rows) float64


def panel_data(panel: pl.DataFrame, spec: CorrelationSpec, as_of: dt.date) -> PanelData:
    spec.validate()
    if "date" not in panel.columns:
        raise ValueError("the panel has no 'date' column")
    cut = panel.filter(pl.col("date") <= as_of).sort("date")
    if cut.height == 0:
        first = panel["date"].min() if panel.height else None
        raise ValueError(f"the panel has no rows on or before as_of {as_of} (first date {first!s})")
    if cut["date"].n_unique() != cut.height:
        raise ValueError("the panel has duplicate dates")
    series = correlation_series(cut.columns, spec)
    dates = cut["date"].to_numpy().astype("datetime64[D]")
    return PanelData(series, dates, series_levels(cut, series, spec))


def extension_blocker(data: PanelData, spec: CorrelationSpec, base: CorrelationCache) -> str | None:
    """Why ``base`` cannot be extended over ``data`` (None when it can)."""
    st = base.state
    if st.fingerprint != fingerprint(spec, data.series):
        return "its settings or series differ from the current ones"
    if st.n_rows > data.dates.size:
        return f"it holds {st.n_rows} rows, more than the data up to as_of ({data.dates.size})"
    if data.dates[st.n_rows - 1] != np.datetime64(st.last_date, "D"):
        return f"the data's row {st.n_rows} is not its last date {st.last_date}"
    if history_hash(data.dates, data.levels, st.n_rows) != st.history_hash:
        return f"the data up to {st.last_date} changed since it was built"
    return None


def build_correlation_cache(
    panel: pl.DataFrame,
    spec: CorrelationSpec,
    as_of: dt.date,
    base: CorrelationCache | None = None,
) -> CorrelationCache:
    """The cache for ``as_of`` from the panel rows on or before it.

    With ``base`` (an earlier partition for which ``extension_blocker`` is None) only the rows
    after the base's last date are computed; the result equals a full build bitwise.
    """
    return build_from_data(panel_data(panel, spec, as_of), spec, as_of, base)


def build_from_data(
    data: PanelData, spec: CorrelationSpec, as_of: dt.date, base: CorrelationCache | None = None
) -> CorrelationCache:
    series, dates, levels = data.series, data.dates, data.levels
    n, p = dates.size, len(series)
    names = [s.name for s in series]
    blocks = [s.block for s in series]
    pairs = pair_set(series, spec)
    windows = np.array(spec.windows, dtype=np.int64)
    min_obs = np.array([spec.min_obs(w) for w in spec.windows], dtype=np.int64)
    t_idx = names.index(spec.target_symbol)
    groups = regime_index(dates, spec.regimes)

    if base is not None:
        blocker = extension_blocker(data, spec, base)
        if blocker:
            raise ValueError(f"cannot extend the partition of {base.as_of}: {blocker}")
        n0 = base.state.n_rows
        tail = base.state.tail_returns
        new_levels = transform_levels(levels[:, n0:], series)
        rets = np.concatenate([tail, returns_from_levels(new_levels, base.state.last_levels)], 1)
        origin = n0 - tail.shape[1]
        regime_acc = base.state.regime_moments.copy()
        target_acc = base.state.target_moments.copy()
        last_levels = new_levels[:, -1] if n > n0 else base.state.last_levels
    else:
        n0 = 0
        all_levels = transform_levels(levels, series)
        rets = returns_from_levels(all_levels)
        origin = 0
        regime_acc = np.zeros((len(spec.regimes), pairs.index.shape[0], 6))
        target_acc = np.zeros((p, 6))
        last_levels = all_levels[:, -1]

    local0 = n0 - origin  # column of the first new row in rets
    # The last known row is recomputed (bitwise identically) so that a partition without new rows
    # still has its as-of values.
    start = max(local0 - 1, 0)
    rolled = rolling_corr(rets, pairs.index, windows, min_obs, origin=origin, start=start)
    first_row = origin + start  # the history row of rolled[..., 0]

    row_groups = np.zeros(rets.shape[1], dtype=np.int64)
    row_groups[local0:] = groups[n0:]
    with np.errstate(divide="ignore"):
        recip = 1.0 / np.arange(n + 1, dtype=np.float64)  # a count never exceeds the rows
    ia, ib = pairs.index[:, 0].copy(), pairs.index[:, 1].copy()
    with _threads((rets.shape[1] - local0) * (ia.size + p)):
        _update_comoments(rets, ia, ib, row_groups, local0, regime_acc, recip)
        _update_comoments(
            rets,
            np.arange(p, dtype=np.int64),
            np.full(p, t_idx, dtype=np.int64),
            np.zeros_like(row_groups),
            local0,
            target_acc[None],
            recip,
        )

    tail_len = min(n, spec.tail_rows)
    state = CorrelationState(
        n_rows=n,
        last_date=_to_date(dates[-1]),
        tail_returns=np.ascontiguousarray(rets[:, rets.shape[1] - tail_len :]),
        last_levels=np.ascontiguousarray(last_levels, dtype=np.float64),
        regime_moments=regime_acc,
        target_moments=target_acc,
        history_hash=history_hash(dates, levels, n),
        fingerprint=fingerprint(spec, series),
    )
    new_dates = dates[first_row:]
    prior_features = base.features if base is not None else None
    prior_recent = base.recent if base is not None else None
    candidates = _candidates(target_acc, names, blocks, spec, t_idx)
    return CorrelationCache(
        as_of=as_of,
        series=series,
        features=_feature_frame(rolled, pairs, spec, new_dates, prior_features),
        recent=_recent_frame(rolled, pairs, names, blocks, spec, new_dates, prior_recent),
        matrices=_asof_frame(rolled, pairs, names, blocks, spec, state.tail_returns),
        candidates=candidates,
        cross_block=_cross_block(candidates, names, spec, state),
        regime_matrices=_regime_frame(regime_acc, pairs, names, blocks, spec),
        state=state,
        new_rows=n - n0,
        catalog=correlation_catalog(spec, pairs.key_partners, series),
    )


def _to_date(value: np.datetime64) -> dt.date:
    return dt.date.fromisoformat(str(value.astype("datetime64[D]")))


def _date_series(dates: np.ndarray) -> pl.Series:
    return pl.Series("date", dates.astype("datetime64[D]")).cast(pl.Date)


def _feature_frame(
    rolled: np.ndarray,
    pairs: PairSet,
    spec: CorrelationSpec,
    new_dates: np.ndarray,
    prior: pl.DataFrame | None,
) -> pl.DataFrame:
    cols = {}
    for partner, row in zip(pairs.key_partners, pairs.key_pairs, strict=True):
        for wi, w in enumerate(spec.windows):
            name = feature_name(spec.target_symbol, partner, w)
            cols[name] = pl.Series(name, rolled[wi, row], nan_to_null=True)
    fresh = pl.DataFrame([_date_series(new_dates), *cols.values()])
    if prior is None:
        return fresh
    kept = prior.filter(pl.col("date") < _to_date(new_dates[0])).select(fresh.columns)
    return pl.concat([kept, fresh], how="vertical")


def _pair_labels(
    pairs: PairSet, names: list[str], blocks: list[str]
) -> tuple[list[str], list[str], list[str], list[bool]]:
    key_rows = set(pairs.key_pairs)
    block, a, b, key = [], [], [], []
    for k, (i, j) in enumerate(pairs.index.tolist()):
        block.append(blocks[i] if blocks[i] == blocks[j] else f"{blocks[i]} x {blocks[j]}")
        a.append(names[i])
        b.append(names[j])
        key.append(k in key_rows)
    return block, a, b, key


def _recent_frame(
    rolled: np.ndarray,
    pairs: PairSet,
    names: list[str],
    blocks: list[str],
    spec: CorrelationSpec,
    new_dates: np.ndarray,
    prior: pl.DataFrame | None,
) -> pl.DataFrame:
    """Every pair's rolling series over the last ``history_days`` rows, long format ordered by
    date, window and pair (so a later partition appends without sorting)."""
    keep = min(spec.history_days, new_dates.size)
    block, a, b, _key = _pair_labels(pairs, names, blocks)
    nw, npairs = len(spec.windows), len(a)
    values = rolled[:, :, rolled.shape[2] - keep :].transpose(2, 0, 1).reshape(-1)
    labels = pl.DataFrame({"block": block, "a": a, "b": b})
    fresh = pl.concat(
        [
            labels.select(pl.all().gather(np.tile(np.arange(npairs), nw * keep))),
            pl.DataFrame(
                [
                    pl.Series("date", np.repeat(new_dates[new_dates.size - keep :], nw * npairs)),
                    pl.Series(
                        "window", np.tile(np.repeat(np.array(spec.windows), npairs), keep)
                    ).cast(pl.Int32),
                    pl.Series("corr", values, nan_to_null=True),
                ]
            ).with_columns(pl.col("date").cast(pl.Date)),
        ],
        how="horizontal",
    ).select("date", "window", "block", "a", "b", "corr")
    if prior is None:
        return fresh
    first_new = fresh["date"][0]
    both = pl.concat([prior.filter(pl.col("date") < first_new), fresh])
    days = both["date"].unique(maintain_order=True)
    return both.filter(pl.col("date") >= days[max(days.len() - spec.history_days, 0)])


def _asof_frame(
    rolled: np.ndarray,
    pairs: PairSet,
    names: list[str],
    blocks: list[str],
    spec: CorrelationSpec,
    tail: np.ndarray,
) -> pl.DataFrame:
    """Every pair's correlation at the as-of date with its count of pairwise-complete days."""
    block, a, b, key = _pair_labels(pairs, names, blocks)
    valid = np.isfinite(tail)
    frames = []
    for wi, w in enumerate(spec.windows):
        last = valid[:, -w:]
        n_obs = (last[pairs.index[:, 0]] & last[pairs.index[:, 1]]).sum(axis=1)
        frames.append(
            pl.DataFrame(
                {
                    "window": pl.Series([w] * len(a), dtype=pl.Int32),
                    "block": block,
                    "a": a,
                    "b": b,
                    "key": key,
                    "corr": pl.Series(rolled[wi, :, -1].astype(np.float64), nan_to_null=True),
                    "n_obs": n_obs.astype(np.int32),
                }
            )
        )
    return pl.concat(frames)


def _candidates(
    target_acc: np.ndarray, names: list[str], blocks: list[str], spec: CorrelationSpec, t_idx: int
) -> pl.DataFrame:
    """Top-k series of each block by |corr with the target| over the history up to as_of."""
    corr = comoment_corr(target_acc, spec.min_obs(spec.max_window))
    rows = []
    for block in BLOCKS:
        members = [
            i for i, b in enumerate(blocks) if b == block and i != t_idx and np.isfinite(corr[i])
        ]
        members.sort(key=lambda i: (-abs(corr[i]), names[i]))
        for rank, i in enumerate(members[: spec.top_k], start=1):
            rows.append(
                {
                    "block": block,
                    "rank": rank,
                    "series": names[i],
                    "corr_with_target": float(corr[i]),
                    "n_obs": int(target_acc[i, N]),
                }
            )
    schema = {
        "block": pl.String,
        "rank": pl.Int32,
        "series": pl.String,
        "corr_with_target": pl.Float64,
        "n_obs": pl.Int32,
    }
    return pl.DataFrame(rows, schema=schema)


def _cross_block(
    candidates: pl.DataFrame, names: list[str], spec: CorrelationSpec, state: CorrelationState
) -> pl.DataFrame:
    """As-of rolling correlations between top-k candidates of different blocks."""
    pos = {n: i for i, n in enumerate(names)}
    cand = list(zip(candidates["series"].to_list(), candidates["block"].to_list(), strict=True))
    rows = [
        (sa, ba, sb, bb) for k, (sa, ba) in enumerate(cand) for sb, bb in cand[k + 1 :] if ba != bb
    ]
    schema = {
        "window": pl.Int32,
        "block_a": pl.String,
        "a": pl.String,
        "block_b": pl.String,
        "b": pl.String,
        "corr": pl.Float64,
        "n_obs": pl.Int32,
    }
    if not rows:
        return pl.DataFrame(schema=schema)
    idx = np.array([(pos[sa], pos[sb]) for sa, _, sb, _ in rows], dtype=np.int64)
    tail = state.tail_returns
    width = tail.shape[1]
    origin = state.n_rows - width
    windows = list(spec.windows)
    at = rolling_corr(tail, idx, windows, [spec.min_obs(w) for w in windows], origin, width - 1)
    valid = np.isfinite(tail)
    out = []
    for wi, w in enumerate(windows):
        last = valid[:, -w:]
        n_obs = (last[idx[:, 0]] & last[idx[:, 1]]).sum(axis=1)
        for k, (sa, ba, sb, bb) in enumerate(rows):
            value = float(at[wi, k, 0])
            out.append((w, ba, sa, bb, sb, value if math.isfinite(value) else None, int(n_obs[k])))
    return pl.DataFrame(out, schema=schema, orient="row")


def _regime_frame(
    acc: np.ndarray,
    pairs: PairSet,
    names: list[str],
    blocks: list[str],
    spec: CorrelationSpec,
) -> pl.DataFrame:
    """One within-block (and key-pair) matrix per regime with data up to as_of."""
    block, a, b, key = _pair_labels(pairs, names, blocks)
    frames = []
    for g, regime in enumerate(spec.regimes):
        counts = acc[g, :, N]
        if not counts.any():
            continue
        frames.append(
            pl.DataFrame(
                {
                    "regime": [regime.name] * len(a),
                    "block": block,
                    "a": a,
                    "b": b,
                    "key": key,
                    "corr": pl.Series(comoment_corr(acc[g], spec.regime_min_obs), nan_to_null=True),
                    "n_obs": counts.astype(np.int32),
                }
            )
        )
    schema = {
        "regime": pl.String,
        "block": pl.String,
        "a": pl.String,
        "b": pl.String,
        "key": pl.Boolean,
        "corr": pl.Float64,
        "n_obs": pl.Int32,
    }
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def key_pair_features(
    panel: pl.DataFrame, spec: CorrelationSpec = CorrelationSpec()
) -> tuple[pl.DataFrame, list[FeatureDef]]:
    """The exported correlation features computed straight from a panel (a full build up to its
    last date): what the export takes from the cache, for truncation tests and diagnostics."""
    last = panel["date"].max()
    if not isinstance(last, dt.date):
        raise ValueError(f"the panel's date column must hold dates, got {last!r}")
    cache = build_correlation_cache(panel, spec, last)
    return cache.features, cache.catalog
