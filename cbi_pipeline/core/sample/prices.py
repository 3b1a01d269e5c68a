"""Price paths of the sample market: anchors, shocks, lead-lag drifts and the OHLCV frame."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl

from cbi_pipeline.core.sample.calibration import (
    BRAZIL_PRECIP_EFFECT,
    CRUSH_EMA_DAYS,
    CRUSH_REVERSION,
    DROP_PROB,
    EXTRA3,
    EXTRA_CORR_POST2006,
    EXTRA_CORR_PRE2006,
    EXTRA_KNOTS,
    FCPO_FOLLOWS_ZL,
    GAP_SHARE,
    LB_PER_TONNE_OVER_100,
    OU_BAND,
    OU_BAND_BY_SYMBOL,
    OU_HALF_LIFE_DAYS,
    PALM_SOY_EMA_DAYS,
    PALM_SOY_REVERSION_FCPO,
    PALM_SOY_REVERSION_ZL,
    PUBLIC_KNOTS,
    REAL9,
    REAL_CORR_POST2006,
    REAL_CORR_PRE2006,
    REAL_KNOTS,
    REGIME_SPLIT,
    RFS_EVENTS,
    STREAM_DROP,
    STREAM_OHLC,
    STREAM_SHOCKS,
    STREAM_SV,
    STREAM_TMIX,
    STREAM_VOLUME,
    SV_PHI,
    SV_SD,
    T_DOF,
    TICKS,
    US_PRECIP_EFFECT,
    USDMYR_DEPEG,
    VIX_HALF_LIFE_DAYS,
    VOL_BY_YEAR,
    VOLUME_2005,
    VOLUME_GROWTH,
    WICK_SHARE,
    ZL_MONTH_EFFECT_21D,
)
from cbi_pipeline.core.sample.dates import business_days, interp, months_of, year_fraction, years_of
from cbi_pipeline.core.sample.noise import ar1, rng
from cbi_pipeline.core.sample.symbols import MARKET_SYMBOLS, TARGET_SYMBOL


def _log_anchors(days: np.ndarray) -> np.ndarray:
    """Log level anchor per day and symbol (MARKET_SYMBOLS order)."""
    out = np.empty((days.size, len(MARKET_SYMBOLS)))
    knot_dates = tuple(row[0] for row in REAL_KNOTS + PUBLIC_KNOTS)
    levels = np.array([row[1:] for row in REAL_KNOTS + PUBLIC_KNOTS], dtype=np.float64)
    for j, sym in enumerate(REAL9):
        out[:, MARKET_SYMBOLS.index(sym)] = interp(days, knot_dates, np.log(levels[:, j]))
    extra_dates = tuple(row[0] for row in EXTRA_KNOTS)
    extra = np.array([row[1:] for row in EXTRA_KNOTS], dtype=np.float64)
    for j, sym in enumerate(EXTRA3):
        out[:, MARKET_SYMBOLS.index(sym)] = interp(days, extra_dates, np.log(extra[:, j]))
    return out


def _vix_anchor(days: np.ndarray) -> np.ndarray:
    knot_dates = tuple(row[0] for row in REAL_KNOTS + PUBLIC_KNOTS)
    vix = np.array([row[9] for row in REAL_KNOTS + PUBLIC_KNOTS], dtype=np.float64)
    return interp(days, knot_dates, vix)


def _crisis_shape(days: np.ndarray) -> np.ndarray:
    """Intra-year volatility shape: sqrt of the VIX anchor, RMS 1 over each full calendar year.

    Normalising over the whole calendar year (not the sample window) keeps prefixes stable.
    """
    years = years_of(days)
    shape = np.sqrt(_vix_anchor(days))
    for year in np.unique(years):
        full_year = business_days(dt.date(int(year), 1, 1), dt.date(int(year), 12, 31))
        rms = math.sqrt(float(np.mean(_vix_anchor(full_year))))
        shape[years == year] /= rms
    return shape


def _annual_vols(days: np.ndarray) -> np.ndarray:
    first, last = min(VOL_BY_YEAR), max(VOL_BY_YEAR)
    years = np.clip(years_of(days), first, last)
    table = np.array([VOL_BY_YEAR[y] for y in range(first, last + 1)])
    vols = table[years - first].copy()
    peg = days < np.datetime64(USDMYR_DEPEG, "D")
    vols[peg, MARKET_SYMBOLS.index("USDMYR")] = VOL_BY_YEAR[first][-1]
    return vols


def _corr_matrix(
    real: tuple[tuple[float, ...], ...], extra: dict[str, tuple[float, ...]]
) -> np.ndarray:
    n = len(MARKET_SYMBOLS)
    corr = np.eye(n)
    order = REAL9 + EXTRA3
    lower = [list(row) for row in real] + [[*extra[s], 1.0] for s in EXTRA3]
    for i, row in enumerate(lower):
        for j, value in enumerate(row):
            a, b = MARKET_SYMBOLS.index(order[i]), MARKET_SYMBOLS.index(order[j])
            corr[a, b] = corr[b, a] = value
    # Nearest positive-definite matrix by eigenvalue clipping, unit diagonal restored.
    vals, vecs = np.linalg.eigh(corr)
    fixed = (vecs * np.clip(vals, 1e-4, None)) @ vecs.T
    d = np.sqrt(np.diag(fixed))
    return fixed / np.outer(d, d)


def _correlation_matrices() -> tuple[np.ndarray, np.ndarray]:
    """Target daily-return correlation (MARKET_SYMBOLS order) before and from 2006-01-01."""
    return (
        _corr_matrix(REAL_CORR_PRE2006, EXTRA_CORR_PRE2006),
        _corr_matrix(REAL_CORR_POST2006, EXTRA_CORR_POST2006),
    )


def _shocks(days: np.ndarray, seed: int) -> np.ndarray:
    """Daily log-return shocks (T x symbols) before the lead-lag drifts."""
    n_days, n_sym = days.size, len(MARKET_SYMBOLS)
    pre, post = (np.linalg.cholesky(c) for c in _correlation_matrices())
    z = rng(seed, STREAM_SHOCKS).standard_normal((n_days, n_sym))
    late = days >= np.datetime64(REGIME_SPLIT, "D")
    corr_z = np.where(late[:, None], z @ post.T, z @ pre.T)
    # FCPO trades before CBOT: part of its shock is yesterday's ZL shock.
    zl, fcpo = MARKET_SYMBOLS.index("ZL"), MARKET_SYMBOLS.index("FCPO")
    lagged = np.concatenate([[0.0], corr_z[:-1, zl]])
    corr_z[:, fcpo] = (corr_z[:, fcpo] + FCPO_FOLLOWS_ZL * lagged) / math.sqrt(
        1.0 + FCPO_FOLLOWS_ZL**2
    )
    chi2 = rng(seed, STREAM_TMIX).chisquare(T_DOF, size=n_days)
    tmix = np.sqrt((T_DOF - 2.0) / chi2)
    sv_innov = rng(seed, STREAM_SV).standard_normal(n_days)
    sv = ar1(sv_innov, SV_PHI) * SV_SD
    sv_mult = np.exp(sv - SV_SD**2)  # E[mult^2] = 1
    daily_vol = _annual_vols(days) / math.sqrt(252.0) * _crisis_shape(days)[:, None]
    return corr_z * daily_vol * (tmix * sv_mult)[:, None]


def _exogenous_drift(days: np.ndarray, weather: dict[str, np.ndarray]) -> np.ndarray:
    """Drifts that need no simulated price: month effect, lagged weather, policy jumps."""
    drift = np.zeros((days.size, len(MARKET_SYMBOLS)))
    months = months_of(days)
    zl = MARKET_SYMBOLS.index("ZL")
    drift[:, zl] += ZL_MONTH_EFFECT_21D[months - 1] / 21.0
    summer = (months >= 6) & (months <= 8)
    brazil_season = (months == 12) | (months <= 2)
    us_lag = np.concatenate([[0.0], weather["weather_us_midwest_precip_anom"][:-1]])
    br_lag = np.concatenate([[0.0], weather["weather_brazil_precip_anom"][:-1]])
    for sym, effect in US_PRECIP_EFFECT.items():
        drift[:, MARKET_SYMBOLS.index(sym)] -= effect * us_lag * summer
    for sym, effect in BRAZIL_PRECIP_EFFECT.items():
        drift[:, MARKET_SYMBOLS.index(sym)] -= effect * br_lag * brazil_season
    for when, jump in rfs_jumps(days):
        drift[when, zl] += jump
    return drift


def rfs_jumps(days: np.ndarray) -> list[tuple[int, float]]:
    """(day index, ZL jump) for announcements on a business day of the window (or a day after)."""
    out = []
    for date, _, jump in RFS_EVENTS:
        when = np.datetime64(date, "D")
        idx = int(np.searchsorted(days, when))
        if idx < days.size and days[idx] - when < np.timedelta64(4, "D"):
            out.append((idx, jump))
    return out


def price_paths(
    days: np.ndarray, seed: int, weather: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Log closes (T x symbols) and the raw shocks (used for the first open and for volume)."""
    anchors = _log_anchors(days)
    shocks = _shocks(days, seed)
    inputs = shocks + _exogenous_drift(days, weather)
    kappa = np.full(len(MARKET_SYMBOLS), math.log(2.0) / OU_HALF_LIFE_DAYS)
    kappa[MARKET_SYMBOLS.index("VIX")] = math.log(2.0) / VIX_HALF_LIFE_DAYS
    band = np.array([OU_BAND_BY_SYMBOL.get(sym, OU_BAND) for sym in MARKET_SYMBOLS])
    i_zl, i_zs, i_zm = (MARKET_SYMBOLS.index(s) for s in ("ZL", "ZS", "ZM"))
    i_fcpo, i_myr = MARKET_SYMBOLS.index("FCPO"), MARKET_SYMBOLS.index("USDMYR")
    a_crush = 2.0 / (CRUSH_EMA_DAYS + 1.0)
    a_palm = 2.0 / (PALM_SOY_EMA_DAYS + 1.0)
    log_lb = math.log(LB_PER_TONNE_OVER_100)

    logp = np.empty_like(anchors)
    x = np.zeros(len(MARKET_SYMBOLS))
    logp[0] = anchors[0]
    crush_ema = _crush(logp[0, i_zl], logp[0, i_zs], logp[0, i_zm])
    palm_ema = logp[0, i_zl] + log_lb - logp[0, i_fcpo] + logp[0, i_myr]
    for t in range(1, days.size):
        prev = logp[t - 1]
        crush = _crush(prev[i_zl], prev[i_zs], prev[i_zm])
        crush_ema += a_crush * (crush - crush_ema)
        crush_dev = (crush - crush_ema) / (math.exp(prev[i_zs]) / 100.0)
        palm = prev[i_zl] + log_lb - prev[i_fcpo] + prev[i_myr]
        palm_ema += a_palm * (palm - palm_ema)
        palm_dev = palm - palm_ema
        x = x * np.exp(-kappa * (1.0 + np.minimum((x / band) ** 2, 1e3))) + inputs[t]
        x[i_zl] -= CRUSH_REVERSION * crush_dev + PALM_SOY_REVERSION_ZL * palm_dev
        x[i_fcpo] += PALM_SOY_REVERSION_FCPO * palm_dev
        logp[t] = anchors[t] + x
    return logp, shocks


def _crush(log_zl: float, log_zs: float, log_zm: float) -> float:
    """Board crush margin in USD/bu: 0.022 * ZM (USD/st) + 0.11 * ZL (c/lb) - ZS (c/bu) / 100."""
    return 0.022 * math.exp(log_zm) + 0.11 * math.exp(log_zl) - math.exp(log_zs) / 100.0


def board_crush(zl: pl.Expr, zs: pl.Expr, zm: pl.Expr) -> pl.Expr:
    """Board crush margin (USD/bu) from ZL (cents/lb), ZS (cents/bu) and ZM (USD/short ton)."""
    return 0.022 * zm + 0.11 * zl - zs / 100.0


def _round_to_tick(values: np.ndarray, tick: float) -> np.ndarray:
    decimals = max(0, -math.floor(math.log10(tick) + 1e-9))
    return np.maximum(np.round(np.round(values / tick) * tick, decimals), tick)


def market_frame(days: np.ndarray, logp: np.ndarray, shocks: np.ndarray, seed: int) -> pl.DataFrame:
    n_days, n_sym = logp.shape
    vols = np.maximum(_annual_vols(days) / math.sqrt(252.0) * _crisis_shape(days)[:, None], 1e-6)
    ohlc_z = rng(seed, STREAM_OHLC).standard_normal((n_days, n_sym, 3))
    gap = GAP_SHARE * vols * ohlc_z[:, :, 0]
    close = np.exp(logp)
    prev_close = np.vstack([close[:1] * np.exp(-shocks[:1]), close[:-1]])
    open_ = prev_close * np.exp(gap)
    top = np.maximum(open_, close) * np.exp(WICK_SHARE * vols * np.abs(ohlc_z[:, :, 1]))
    bottom = np.minimum(open_, close) * np.exp(-WICK_SHARE * vols * np.abs(ohlc_z[:, :, 2]))
    returns = np.vstack([shocks[:1], np.diff(logp, axis=0)])
    vol_z = rng(seed, STREAM_VOLUME).standard_normal((n_days, n_sym))
    growth = VOLUME_GROWTH ** (years_of(days) + year_fraction(days) - 2005.0)
    activity = np.exp(0.4 * vol_z + 0.5 * (np.abs(returns) / vols - 0.8))
    dropped = rng(seed, STREAM_DROP).random((n_days, n_sym)) < DROP_PROB
    frames = []
    for j, sym in enumerate(MARKET_SYMBOLS):
        tick = TICKS[sym]
        keep = np.ones(n_days, dtype=bool) if sym == TARGET_SYMBOL else ~dropped[:, j]
        if sym in VOLUME_2005:
            volume = pl.Series("volume", np.round(VOLUME_2005[sym] * growth * activity[:, j])[keep])
        else:
            volume = pl.Series("volume", [None] * int(keep.sum()), dtype=pl.Float64)
        frames.append(
            pl.DataFrame(
                {
                    "date": pl.Series("date", days[keep], dtype=pl.Date),
                    "symbol": pl.Series("symbol", [sym] * int(keep.sum()), dtype=pl.String),
                    "open": _round_to_tick(open_[keep, j], tick),
                    "high": _round_to_tick(top[keep, j], tick),
                    "low": _round_to_tick(bottom[keep, j], tick),
                    "close": _round_to_tick(close[keep, j], tick),
                    "volume": volume,
                }
            )
        )
    return pl.concat(frames).sort("symbol", "date")
