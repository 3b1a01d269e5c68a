"""Causal features from the aligned panel, with a catalog of each feature's block and meaning.

Every expression looks only backwards along the target's trading calendar (diffs, shifts and
rolling windows over past rows, recursive EWMs, calendar fields of the row's own date), so the
value at date t depends on panel rows at or before t. The truncation test checks this property.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import polars as pl

from cbi_pipeline.core.blocks import CALENDAR, SPREADS, block_of
from cbi_pipeline.core.curves.features import (
    ADJUSTED_FIELD,
    CURVE_FIELDS,
    curve_column,
    curve_symbols,
)
from cbi_pipeline.core.panel import close_column

ANNUALISE = math.sqrt(252.0)
# Board crush (USD/bu): 44 lb meal (0.022 short ton) and 11 lb oil from one 60 lb bushel.
CRUSH_MEAL_TONS = 0.022
CRUSH_OIL_LB = 11.0
CENTS_PER_LB_TO_USD_PER_TONNE = 22.0462


@dataclass(frozen=True)
class FeatureDef:
    """One catalog entry: the column name, its block, a human definition and its raw inputs."""

    name: str
    block: str
    definition: str
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class FeatureSpec:
    """Feature windows (in target trading days); the defaults build ~230 features on the sample."""

    target_symbol: str = "ZL"
    return_windows: tuple[int, ...] = (1, 5, 10, 21, 63, 126, 252)
    vol_windows: tuple[int, ...] = (21, 63)
    trend_windows: tuple[int, ...] = (21, 63)
    target_lags: tuple[int, ...] = (1, 2, 3, 4, 5)
    signal_change_windows: tuple[int, ...] = (5, 21)
    zscore_window: int = 63
    long_window: int = 252
    block_overrides: Mapping[str, str] = field(default_factory=dict)


def _finite(expr: pl.Expr) -> pl.Expr:
    """Non-finite results (0/0, x/0) become null rather than inf or NaN."""
    return pl.when(expr.is_finite()).then(expr).otherwise(None)


def _min_obs(window: int) -> int:
    return max(2, (2 * window) // 3)


def _zscore(expr: pl.Expr, window: int) -> pl.Expr:
    mean = expr.rolling_mean(window, min_samples=_min_obs(window))
    std = expr.rolling_std(window, min_samples=_min_obs(window))
    return _finite((expr - mean) / std)


def _ret(expr: pl.Expr, window: int) -> pl.Expr:
    return expr.log().diff(window)


def _vol(expr: pl.Expr, window: int) -> pl.Expr:
    return expr.log().diff(1).rolling_std(window, min_samples=_min_obs(window)) * ANNUALISE


def rsi(close: pl.Expr, period: int = 14) -> pl.Expr:
    """Wilder's RSI: 100 - 100 / (1 + avg gain / avg loss), recursive averages with alpha 1/period."""
    delta = close.diff(1)
    gain = delta.clip(lower_bound=0.0).ewm_mean(
        alpha=1.0 / period, adjust=False, min_samples=period
    )
    loss = (
        (-delta)
        .clip(lower_bound=0.0)
        .ewm_mean(alpha=1.0 / period, adjust=False, min_samples=period)
    )
    return _finite(100.0 - 100.0 / (1.0 + gain / loss))


def crush_margin(zl: pl.Expr, zm: pl.Expr, zs: pl.Expr) -> pl.Expr:
    """Board crush margin in USD/bu: 0.022 * meal (USD/st) + 0.11 * oil (c/lb) - beans (c/bu) / 100."""
    return CRUSH_MEAL_TONS * zm + CRUSH_OIL_LB / 100.0 * zl - zs / 100.0


class _Plan:
    def __init__(self) -> None:
        self.entries: list[tuple[FeatureDef, pl.Expr]] = []

    def add(
        self, name: str, block: str, definition: str, inputs: tuple[str, ...], expr: pl.Expr
    ) -> None:
        self.entries.append(
            (FeatureDef(name, block, definition, inputs), _finite(expr).alias(name))
        )


def _path(symbol: str, columns: set[str]) -> tuple[str, str]:
    """The column a symbol's return and price-path features read, and how the catalog names it:
    the roll-adjusted curve series where the panel has one (a held position's returns, no roll
    jumps), else the front close."""
    adjusted = curve_column(symbol, ADJUSTED_FIELD)
    if adjusted in columns:
        return adjusted, f"roll-adjusted {symbol}"
    return close_column(symbol), symbol


def _price_features(
    plan: _Plan, symbol: str, spec: FeatureSpec, block: str, columns: set[str]
) -> None:
    col, name = _path(symbol, columns)
    p = pl.col(col)
    low = symbol.lower()
    for w in spec.return_windows:
        plan.add(
            f"{low}_ret_{w}d",
            block,
            f"log return of {name} over {w} trading days",
            (col,),
            _ret(p, w),
        )
    for w in spec.vol_windows:
        plan.add(
            f"{low}_vol_{w}d",
            block,
            f"annualised std of {name} daily log returns over {w} days",
            (col,),
            _vol(p, w),
        )
    for w in spec.trend_windows:
        plan.add(
            f"{low}_trend_{w}d",
            block,
            f"log {name} minus its {w}-day mean of log prices",
            (col,),
            p.log() - p.log().rolling_mean(w, min_samples=_min_obs(w)),
        )


def _curve_features(plan: _Plan, symbol: str, spec: FeatureSpec, block: str) -> None:
    """Carry (level, z-score, change), curve slope, open-interest share and days to roll."""
    low, lw = symbol.lower(), spec.long_window
    col = {f: curve_column(symbol, f) for f in CURVE_FIELDS}
    carry = pl.col(col["carry"])
    what = f"{symbol} carry: annualised log spread of the next contract over the held one"
    plan.add(f"{low}_carry", block, f"{what} (contango > 0)", (col["carry"],), carry)
    plan.add(
        f"{low}_carry_z{lw}",
        block,
        f"{lw}-day z-score of {what}",
        (col["carry"],),
        _zscore(carry, lw),
    )
    plan.add(
        f"{low}_carry_chg21", block, f"21-day change of {what}", (col["carry"],), carry.diff(21)
    )
    plan.add(
        f"{low}_curve_slope",
        block,
        f"{symbol} curve slope: least-squares slope of log close on years to expiry over the "
        "held and next contracts (up to 4)",
        (col["curve_slope"],),
        pl.col(col["curve_slope"]),
    )
    plan.add(
        f"{low}_oi_share",
        block,
        f"{symbol} held contract's share of the open interest of all its contracts",
        (col["oi_share"],),
        pl.col(col["oi_share"]),
    )
    plan.add(
        f"{low}_days_to_roll",
        block,
        f"weekdays until the held {symbol} contract rolls (roll rule)",
        (col["days_to_roll"],),
        pl.col(col["days_to_roll"]),
    )


def _target_features(plan: _Plan, spec: FeatureSpec, columns: set[str]) -> None:
    """Technical features of the target, on its roll-adjusted series where there is one."""
    col, sym = _path(spec.target_symbol, columns)
    p = pl.col(col)
    low = spec.target_symbol.lower()
    blk = block_of(sym, spec.block_overrides)
    ret1 = p.log().diff(1)
    for lag in spec.target_lags:
        plan.add(
            f"{low}_ret_1d_lag{lag}",
            blk,
            f"{sym} daily log return {lag} day(s) earlier",
            (col,),
            ret1.shift(lag),
        )
    plan.add(f"{low}_rsi_14", blk, f"Wilder RSI(14) of {sym}", (col,), rsi(p, 14))
    ema12 = p.ewm_mean(span=12, adjust=False, min_samples=12)
    ema26 = p.ewm_mean(span=26, adjust=False, min_samples=26)
    macd = (ema12 - ema26) / p
    plan.add(f"{low}_macd", blk, f"(EMA12 - EMA26) / price of {sym}", (col,), macd)
    signal = macd.ewm_mean(span=9, adjust=False, min_samples=9)
    plan.add(f"{low}_macd_signal", blk, f"EMA9 of {sym} MACD", (col,), signal)
    plan.add(f"{low}_macd_hist", blk, f"{sym} MACD minus its signal", (col,), macd - signal)
    sma20 = p.rolling_mean(20, min_samples=20)
    sd20 = p.rolling_std(20, min_samples=20)
    plan.add(
        f"{low}_bollinger_pctb_20",
        blk,
        f"Bollinger %B(20, 2sd) of {sym}",
        (col,),
        (p - (sma20 - 2 * sd20)) / (4 * sd20),
    )
    for fast, slow in ((5, 20), (20, 50), (50, 200)):
        plan.add(
            f"{low}_sma_ratio_{fast}_{slow}",
            blk,
            f"log of {sym} SMA{fast} / SMA{slow}",
            (col,),
            (p.rolling_mean(fast, min_samples=fast) / p.rolling_mean(slow, min_samples=slow)).log(),
        )
    lw = spec.long_window
    hi = p.rolling_max(lw, min_samples=_min_obs(lw))
    lo = p.rolling_min(lw, min_samples=_min_obs(lw))
    plan.add(
        f"{low}_range_pos_{lw}d",
        blk,
        f"position of {sym} in its {lw}-day high-low range",
        (col,),
        (p - lo) / (hi - lo),
    )
    plan.add(
        f"{low}_drawdown_{lw}d", blk, f"{sym} over its {lw}-day high, minus 1", (col,), p / hi - 1.0
    )
    plan.add(
        f"{low}_vol_ratio_21_{lw}",
        blk,
        f"{sym} 21-day vol over {lw}-day vol",
        (col,),
        _vol(p, 21) / _vol(p, lw),
    )
    plan.add(
        f"{low}_skew_63d",
        blk,
        f"skewness of {sym} daily log returns over 63 days",
        (col,),
        ret1.rolling_skew(63, bias=False),
    )
    sym = spec.target_symbol
    hcol, lcol, vcol = f"{sym}_high", f"{sym}_low", f"{sym}_volume"
    if hcol in columns and lcol in columns:
        hl = (pl.col(hcol) / pl.col(lcol)).log() ** 2
        plan.add(
            f"{low}_parkinson_vol_21d",
            blk,
            f"Parkinson high-low volatility of {sym}, 21 days",
            (hcol, lcol),
            (hl.rolling_mean(21, min_samples=14) / (4 * math.log(2))).sqrt() * ANNUALISE,
        )
    if vcol in columns:
        plan.add(
            f"{low}_volume_z63",
            blk,
            f"z-score of log {sym} volume over 63 days",
            (vcol,),
            _zscore(pl.col(vcol).log1p(), 63),
        )


def _spread_features(plan: _Plan, spec: FeatureSpec, symbols: set[str]) -> None:
    def c(s: str) -> pl.Expr:
        return pl.col(close_column(s))

    lw, zw = spec.long_window, spec.zscore_window

    def family(
        name: str,
        inputs: tuple[str, ...],
        expr: pl.Expr,
        what: str,
        extras: tuple[tuple[str, Callable[[pl.Expr], pl.Expr], str], ...],
    ) -> None:
        cols = tuple(close_column(s) for s in inputs)
        plan.add(name, SPREADS, what, cols, expr)
        for suffix, fn, text in extras:
            plan.add(f"{name}_{suffix}", SPREADS, f"{text} of {what}", cols, fn(expr))

    z_lw = (f"z{lw}", lambda e: _zscore(e, lw), f"{lw}-day z-score")
    z_zw = (f"z{zw}", lambda e: _zscore(e, zw), f"{zw}-day z-score")
    chg5 = ("chg5", lambda e: e.diff(5), "5-day change")
    chg21 = ("chg21", lambda e: e.diff(21), "21-day change")
    if {"ZL", "ZM", "ZS"} <= symbols:
        family(
            "spread_crush_margin",
            ("ZL", "ZM", "ZS"),
            crush_margin(c("ZL"), c("ZM"), c("ZS")),
            "board crush margin, USD/bu (0.022*ZM + 0.11*ZL - ZS/100)",
            (z_zw, z_lw, chg5, chg21),
        )
        share = CRUSH_OIL_LB / 100 * c("ZL")
        family(
            "spread_oil_share",
            ("ZL", "ZM"),
            share / (share + CRUSH_MEAL_TONS * c("ZM")),
            "oil share of crush value, 0.11*ZL / (0.11*ZL + 0.022*ZM)",
            (z_lw, chg21),
        )
    if {"ZL", "FCPO", "USDMYR"} <= symbols:
        family(
            "spread_palm_soy",
            ("ZL", "FCPO", "USDMYR"),
            CENTS_PER_LB_TO_USD_PER_TONNE * c("ZL") - c("FCPO") / c("USDMYR"),
            "soy oil minus palm oil, USD/t (ZL*22.0462 - FCPO/USDMYR)",
            (z_zw, z_lw, chg21),
        )
    if {"ZS", "ZC"} <= symbols:
        family(
            "spread_soy_corn", ("ZS", "ZC"), c("ZS") / c("ZC"), "soybean/corn price ratio", (z_lw,)
        )
    if {"ZL", "CL"} <= symbols:
        family(
            "spread_zl_cl",
            ("ZL", "CL"),
            (c("ZL") / c("CL")).log(),
            "log ratio of soybean oil to crude oil",
            (z_lw,),
        )
    if {"ZL", "HO"} <= symbols:
        family(
            "spread_zl_ho",
            ("ZL", "HO"),
            (c("ZL") / c("HO")).log(),
            "log ratio of soybean oil to heating oil (biodiesel parity)",
            (z_lw,),
        )


def _calendar_features(plan: _Plan) -> None:
    d = pl.col("date")
    doy = d.dt.ordinal_day().cast(pl.Float64)
    month = d.dt.month()
    items: list[tuple[str, str, pl.Expr]] = [
        ("cal_day_of_week", "weekday, Monday=1", d.dt.weekday()),
        ("cal_day_of_month", "day of the month", d.dt.day()),
        ("cal_month", "calendar month", month),
        ("cal_quarter", "calendar quarter", d.dt.quarter()),
        ("cal_week_of_year", "ISO week number", d.dt.week()),
        ("cal_doy_sin", "sin of 2*pi*day-of-year/365.25", (doy * 2 * math.pi / 365.25).sin()),
        ("cal_doy_cos", "cos of 2*pi*day-of-year/365.25", (doy * 2 * math.pi / 365.25).cos()),
        (
            "cal_us_crop_season",
            "US soybean season: 0 off (Dec-Mar), 1 planting (Apr-May), 2 growing (Jun-Aug), 3 harvest (Sep-Nov)",
            pl.when(month.is_in([4, 5]))
            .then(1)
            .when(month.is_in([6, 7, 8]))
            .then(2)
            .when(month.is_in([9, 10, 11]))
            .then(3)
            .otherwise(0),
        ),
        (
            "cal_sa_crop_season",
            "Brazil soybean season: 1 planting (Sep-Nov), 2 growing (Dec-Jan), 3 harvest (Feb-May), 0 off",
            pl.when(month.is_in([9, 10, 11]))
            .then(1)
            .when(month.is_in([12, 1]))
            .then(2)
            .when(month.is_in([2, 3, 4, 5]))
            .then(3)
            .otherwise(0),
        ),
    ]
    for name, text, expr in items:
        plan.add(name, CALENDAR, text, ("date",), expr.cast(pl.Float64))


def _signal_features(plan: _Plan, series: str, spec: FeatureSpec) -> None:
    s = pl.col(series)
    blk = block_of(series, spec.block_overrides)
    plan.add(f"{series}_level", blk, f"latest value of {series} (as of the date)", (series,), s)
    for w in spec.signal_change_windows:
        plan.add(
            f"{series}_chg{w}",
            blk,
            f"change of {series} over {w} trading days",
            (series,),
            s.diff(w),
        )
    zw = spec.zscore_window
    plan.add(f"{series}_z{zw}", blk, f"{zw}-day z-score of {series}", (series,), _zscore(s, zw))


def feature_plan(panel_columns: list[str], spec: FeatureSpec) -> list[tuple[FeatureDef, pl.Expr]]:
    """The catalog entries and expressions for a panel with these columns."""
    columns = set(panel_columns)
    target_col = close_column(spec.target_symbol)
    if target_col not in columns:
        raise ValueError(f"panel has no {target_col!r} column for target {spec.target_symbol!r}")
    symbols = {c.removesuffix("_close") for c in panel_columns if c.endswith("_close")}
    curves = curve_symbols(columns)
    plan = _Plan()
    for symbol in sorted(symbols, key=lambda s: (s != spec.target_symbol, s)):
        _price_features(plan, symbol, spec, block_of(symbol, spec.block_overrides), columns)
    _target_features(plan, spec, columns)
    for symbol in sorted(curves, key=lambda s: (s != spec.target_symbol, s)):
        _curve_features(plan, symbol, spec, block_of(symbol, spec.block_overrides))
    _spread_features(plan, spec, symbols)
    _calendar_features(plan)
    own = {f"{spec.target_symbol}_{f}" for f in ("open", "high", "low", "volume")}
    own |= {curve_column(s, f) for s in curves for f in CURVE_FIELDS}
    signals = [
        c for c in panel_columns if c != "date" and not c.endswith("_close") and c not in own
    ]
    for series in sorted(signals):
        _signal_features(plan, series, spec)
    names = [d.name for d, _ in plan.entries]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"feature names collide: {dup}; rename the clashing raw series")
    return plan.entries


def build_features(
    panel: pl.DataFrame, spec: FeatureSpec = FeatureSpec()
) -> tuple[pl.DataFrame, list[FeatureDef]]:
    """``date``, the target's close and every feature, one row per panel row, plus the catalog."""
    plan = feature_plan(panel.columns, spec)
    target_col = close_column(spec.target_symbol)
    frame = (
        panel.lazy()
        .sort("date")
        .select("date", pl.col(target_col), *[expr for _, expr in plan])
        .collect()
    )
    return frame, [d for d, _ in plan]


def truncation_mismatches(
    market: pl.DataFrame,
    signals: pl.DataFrame,
    dates: list[dt.date],
    build: Callable[..., pl.DataFrame],
    rel_tol: float = 1e-9,
    curve: pl.DataFrame | None = None,
) -> dict[dt.date, list[str]]:
    """Columns whose value at t changes when every raw row after t is removed, per date t.

    ``build`` turns raw market and signals (and the curve, passed third when there is one) into
    a frame with a ``date`` column (the feature builder under test). An empty result means the
    truncation property holds on these dates.
    """
    raw = [market, signals] if curve is None else [market, signals, curve]
    full = build(*raw)
    found: dict[dt.date, list[str]] = {}
    for t in dates:
        cut = build(*[f.filter(pl.col("date") <= t) for f in raw])
        a = full.filter(pl.col("date") == t)
        b = cut.filter(pl.col("date") == t)
        if a.height != 1 or b.height != 1:
            raise ValueError(f"date {t} is not a single row of the built frame")
        bad = []
        for col in full.columns:
            # a series that only starts after t has no column at all in the cut data
            x, y = a[col].item(), b[col].item() if col in b.columns else None
            if x is None or y is None:
                if (x is None) != (y is None):
                    bad.append(col)
            elif isinstance(x, float) and isinstance(y, float):
                if not math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-12):
                    bad.append(col)
            elif x != y:
                bad.append(col)
        if bad:
            found[t] = bad
    return found
