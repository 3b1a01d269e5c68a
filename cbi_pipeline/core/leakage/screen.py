"""The future-information screen: features that explain the future far better than the past,
track the future price or equal a future price are named."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from cbi_pipeline.core.export import PRICE_COL, feature_columns
from cbi_pipeline.core.leakage.arrays import close_mask, float_column, shift_ahead
from cbi_pipeline.core.leakage.spec import DEFAULT_LEAKAGE, MIN_OVERLAP, LeakageSpec
from cbi_pipeline.core.vocabulary import horizon_days, target_column


def masked_corr(
    x: np.ndarray, ys: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Column-wise Pearson correlation of x (n, F) with each y (n,), over the rows where both
    are finite (pairwise complete), and those row counts; NaN with fewer than MIN_OVERLAP rows
    or no variance.

    x is centred on its column means first (a shift leaves covariances unchanged and keeps the
    one-pass sums accurate for levels far from zero); sums over x are taken once, and the few
    rows where a y is missing (the first or last h) are subtracted.
    """
    finite = np.isfinite(x)
    ff = finite.astype(np.float64)
    x0 = np.where(finite, x, 0.0)
    xc = np.where(finite, x - x0.sum(axis=0) / np.maximum(finite.sum(axis=0), 1), 0.0)
    scale = (x0 * x0).sum(axis=0)
    sx_all, sxx_all = xc.sum(axis=0), (xc * xc).sum(axis=0)
    out, counts = [], []
    for y in ys:
        fy = np.isfinite(y)
        yc = np.where(fy, y - (y[fy].mean() if fy.any() else 0.0), 0.0)
        gone = xc[~fy]
        sx = sx_all - gone.sum(axis=0)
        sxx = sxx_all - (gone * gone).sum(axis=0)
        # einsum, not @: its own single-threaded loops. A BLAS matmul here spawns threads that
        # were 30x slower on a busy 2-core machine (1.4 s instead of 0.04 s per call).
        cnt = np.einsum("i,ij->j", fy.astype(np.float64), ff)
        sy = np.einsum("i,ij->j", yc, ff)
        syy = np.einsum("i,ij->j", yc * yc, ff)
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = np.einsum("i,ij->j", yc, xc) - sx * sy / cnt
            vx = sxx - sx * sx / cnt
            vy = syy - sy * sy / cnt
            corr = cov / np.sqrt(vx * vy)
        bad = (cnt < MIN_OVERLAP) | ~(vx > 1e-20 * scale) | ~(vy > 0)
        corr[bad] = np.nan
        out.append(np.clip(corr, -1.0, 1.0))
        counts.append(cnt)
    return out, counts


def _residual_on(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """x minus its least-squares fit on [1, p], per column, over rows where both are finite."""
    m = np.isfinite(x) & np.isfinite(p)[:, None]
    cnt = np.maximum(m.sum(axis=0), 1)
    mx = np.where(m, x, 0.0).sum(axis=0) / cnt
    mp = np.where(m, p[:, None], 0.0).sum(axis=0) / cnt
    dp = np.where(m, p[:, None] - mp, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = (np.where(m, x - mx, 0.0) * dp).sum(axis=0) / (dp * dp).sum(axis=0)
    beta = np.where(np.isfinite(beta), beta, 0.0)
    return x - mx - beta * (p[:, None] - mp)


def _change(x: np.ndarray, h: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    if h < x.shape[0]:
        out[h:] = x[h:] - x[:-h]
    return out


TRANSFORMS = ("level", "h_change", "price_residual")


@dataclass(frozen=True)
class FeatureScreen:
    """What the screen measured for one feature (NaN where too few rows overlap)."""

    feature: str
    windows: float
    future_limit: float | None  # None: the future-return rule did not apply (too few windows)
    future_corr: float
    past_corr: float
    transform: str
    target_corr: float
    price_corr: float
    return_corr: float
    equal_shift: int | None
    equal_share: float
    reasons: tuple[str, ...]

    @property
    def suspect(self) -> bool:
        return bool(self.reasons)


@dataclass(frozen=True)
class ScreenResult:
    horizon: str
    labelled: int
    windows: float
    correlation_rule_run: bool
    correlation_rule_features: int
    correlation_rule_note: str
    screened: tuple[FeatureScreen, ...]
    not_screened: tuple[str, ...]

    @property
    def suspects(self) -> list[FeatureScreen]:
        return [s for s in self.screened if s.suspect]


def _r(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def _equal_shift(
    f: np.ndarray, price: np.ndarray, h: int, rel_tol: float
) -> tuple[int | None, float]:
    """The k in 1..h for which ``f[t] == price[t+k]`` on the largest share of rows."""
    best, best_share = None, 0.0
    for k in range(1, h + 1):
        ahead = shift_ahead(price, k)
        both = np.isfinite(f) & np.isfinite(ahead)
        n = int(both.sum())
        if n < MIN_OVERLAP:
            continue
        share = float(close_mask(f[both], ahead[both], rel_tol).mean())
        if share > best_share:
            best, best_share = k, share
    return best, best_share


def screen_features(
    export: pl.DataFrame,
    horizon: str,
    features: Sequence[str] | None = None,
    spec: LeakageSpec = DEFAULT_LEAKAGE,
) -> ScreenResult:
    """Measure every numeric feature against the future and the past; name the suspects.

    With r_future = log(target_h / price), r_past = log(price_t / price_{t-h}) and w a feature's
    non-overlapping labelled windows, the rules (each names the feature with its reason) are:
    - future return (when w >= min_windows): for x in (feature, its h-step change, its residual
      on today's price), |corr(x, r_future)| >= spec.future_threshold(w) and
      |corr(x, r_future)| - |corr(x, r_past)| >= future_margin;
    - tracks the future price: |corr(f, target_h)| >= identity_corr and 1 - |corr(f, target_h)|
      < identity_ratio * (1 - |corr(f, price)|);
    - tracks the future return: |corr(f, r_future)| >= identity_corr;
    - equals a future price: f[t] == price[t+k] for some 1 <= k <= h on >= equal_share of rows.
    The statistics of one feature do not depend on the other features.
    """
    h = horizon_days(horizon)
    names = list(feature_columns(export) if features is None else features)
    schema = export.schema
    numeric = [c for c in names if schema[c].is_numeric() or schema[c] == pl.Boolean]
    skipped = tuple(c for c in names if c not in numeric)
    price = float_column(export, PRICE_COL)
    target = float_column(export, target_column(horizon))
    with np.errstate(invalid="ignore", divide="ignore"):
        logp = np.log(price)
        r_future = np.log(target) - logp
    r_past = _change(logp[:, None], h)[:, 0]
    labelled = int(np.isfinite(r_future).sum())
    windows = labelled / h
    run_corr = windows >= spec.min_windows
    if not numeric:
        note = f"{labelled} labelled rows = {windows:.1f} {h}-day windows; no numeric feature"
        return ScreenResult(horizon, labelled, windows, run_corr, 0, note, (), skipped)
    x = (
        export.select([pl.col(c).cast(pl.Float64).fill_nan(None) for c in numeric])
        .to_numpy()
        .astype(np.float64)
    )
    fut, past, win = {}, {}, {}
    (fut["level"], past["level"], c_target, c_price), counts = masked_corr(
        x, [r_future, r_past, target, price]
    )
    win["level"] = counts[0] / h
    for name, xt in (("h_change", _change(x, h)), ("price_residual", _residual_on(x, price))):
        (fut[name], past[name]), counts = masked_corr(xt, [r_future, r_past])
        win[name] = counts[0] / h
    fut = {k: np.abs(v) for k, v in fut.items()}
    past = {k: np.abs(v) for k, v in past.items()}
    c_target, c_price = np.abs(c_target), np.abs(c_price)
    c_return = fut["level"]
    # Features whose values are mostly prices are the candidates for the shifted-copy rule.
    values = np.unique(price[np.isfinite(price)])
    if values.size:
        pos = np.clip(np.searchsorted(values, x), 0, values.size - 1)
        hits = (values[pos] == x).sum(axis=0)
    else:
        hits = np.zeros(x.shape[1])
    price_like = hits >= 0.5 * np.maximum(np.isfinite(x).sum(axis=0), MIN_OVERLAP)
    screened = []
    applied = 0
    for j, name in enumerate(numeric):
        margins = {t: fut[t][j] - past[t][j] for t in TRANSFORMS}
        fin = [t for t in TRANSFORMS if math.isfinite(margins[t])]
        reasons = []
        usable = [t for t in fin if win[t][j] >= spec.min_windows]
        limits = {t: spec.future_threshold(win[t][j]) for t in usable}
        applied += bool(usable)
        # Report the transform that comes closest to its limit (or the strongest, if none applies).
        if usable:
            best_t = max(usable, key=lambda t: fut[t][j] / limits[t])
        else:
            best_t = max(fin, key=lambda t: fut[t][j]) if fin else "level"
        for t in usable:
            limit = limits[t]
            if fut[t][j] >= limit and margins[t] >= spec.future_margin:
                reasons.append(
                    f"{t.replace('_', ' ')} correlates {fut[t][j]:.3f} with the future "
                    f"{h}-day log return vs {past[t][j]:.3f} with the past one (limits: "
                    f">= {limit:.3f} at {win[t][j]:.1f} windows, margin >= "
                    f"{spec.future_margin:g})"
                )
                best_t = t
                break
        ct, cp = c_target[j], c_price[j]
        if (
            math.isfinite(ct)
            and ct >= spec.identity_corr
            and (1.0 - ct) < spec.identity_ratio * (1.0 - (cp if math.isfinite(cp) else 0.0))
        ):
            reasons.append(
                f"tracks {target_column(horizon)} (|corr| {ct:.5f}) more closely than today's "
                f"price (|corr| {cp:.5f})"
            )
        if math.isfinite(c_return[j]) and c_return[j] >= spec.identity_corr:
            reasons.append(f"near-copy of the future {h}-day log return (|corr| {c_return[j]:.4f})")
        k, share = None, 0.0
        if price_like[j]:
            k, share = _equal_shift(x[:, j], price, h, spec.rel_tol)
            if k is not None and share >= spec.equal_share:
                reasons.append(f"equals the price {k} row(s) ahead on {share:.0%} of rows")
        screened.append(
            FeatureScreen(
                feature=name,
                windows=float(win[best_t][j]),
                future_limit=limits.get(best_t),
                future_corr=float(fut[best_t][j]),
                past_corr=float(past[best_t][j]),
                transform=best_t,
                target_corr=float(ct),
                price_corr=float(cp),
                return_corr=float(c_return[j]),
                equal_shift=k,
                equal_share=share,
                reasons=tuple(reasons),
            )
        )
    note = (
        f"{labelled} labelled rows = {windows:.1f} non-overlapping {h}-day windows; the "
        f"future-return rule applied to {applied} of {len(numeric)} features (those with >= "
        f"{spec.min_windows:g} windows of their own)"
    )
    return ScreenResult(
        horizon, labelled, windows, run_corr, applied, note, tuple(screened), skipped
    )


def screen_as_dict(s: FeatureScreen) -> dict[str, object]:
    return {
        "feature": s.feature,
        "reasons": list(s.reasons),
        "windows": round(s.windows, 3),
        "future_limit": None if s.future_limit is None else round(s.future_limit, 6),
        "future_corr": _r(s.future_corr),
        "past_corr": _r(s.past_corr),
        "transform": s.transform,
        "target_corr": _r(s.target_corr),
        "price_corr": _r(s.price_corr),
        "return_corr": _r(s.return_corr),
        "equal_shift": s.equal_shift,
        "equal_share": round(s.equal_share, 4),
    }
