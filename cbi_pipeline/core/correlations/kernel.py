"""The numba kernels of the correlation cache: rolling correlations (``rolling_corr``), Welford
co-moments (``update_comoments``, ``comoment_corr``), the level transform (``transform_levels``)
and thread control (``threads``). numba is imported here only.

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
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import numba
import numpy as np
from numba import njit, prange

from cbi_pipeline.core.correlations.spec import DEGENERATE_TOL, LOG_RETURN, CorrSeries

# Co-moment slots of the Welford accumulators.
N, MEAN_X, MEAN_Y, M2_X, M2_Y, C_XY = range(6)

# Below this many row-pair updates a kernel runs on one thread: waking the other threads costs
# more than the work, and on a busy machine a parallel region can wait a whole time slice.
SERIAL_WORK = 200_000


@contextlib.contextmanager
def threads(work: int) -> Iterator[None]:
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
def update_comoments(r, ia, ib, group, start, acc, recip):
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


def transform_levels(levels: np.ndarray, series: Sequence[CorrSeries]) -> np.ndarray:
    log_rows = np.array([s.transform == LOG_RETURN for s in series], dtype=np.bool_)
    out: np.ndarray = _transform_levels(np.ascontiguousarray(levels, dtype=np.float64), log_rows)
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
    with threads(m_out * pairs.shape[0] * nw):
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
