"""The aligned daily panel: one row per target trading day, other series joined as of that date."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from cbi_pipeline.core.contracts import check_market_coverage
from cbi_pipeline.core.curves.features import curve_series
from cbi_pipeline.core.curves.roll import RollSpec


@dataclass(frozen=True)
class PanelSpec:
    """How the panel is aligned.

    target_symbol: the forecast target; its trading days define the panel's calendar.
    market_staleness_days: a market close older than this (calendar days) is not carried forward.
    signal_staleness_days: a signal value older than this is not carried forward (monthly
        releases need about 45 days).
    roll: the roll rule of the curve columns (when a curve is given).
    """

    target_symbol: str = "ZL"
    market_staleness_days: int = 7
    signal_staleness_days: int = 45
    roll: RollSpec = RollSpec()


def close_column(symbol: str) -> str:
    return f"{symbol}_close"


def _asof(base: pl.LazyFrame, other: pl.LazyFrame, days: int) -> pl.LazyFrame:
    """Last value of ``other`` dated at or before each base date, at most ``days`` old."""
    return base.join_asof(
        other.sort("date"), on="date", strategy="backward", tolerance=dt.timedelta(days=days)
    )


def build_market_panel(
    market: pl.DataFrame,
    signals: pl.DataFrame,
    spec: PanelSpec = PanelSpec(),
    curve: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Wide daily panel on the target's calendar.

    Columns: ``date``; ``{SYMBOL}_close`` for every symbol; the target's ``open``, ``high``,
    ``low`` and ``volume`` as ``{TARGET}_{field}`` where the data has any; with a curve, the
    curve columns of each curve symbol (``core.curves.features``: ``{SYMBOL}_roll_adjusted``,
    ``_carry``, ``_curve_slope``, ``_oi_share``, ``_days_to_roll``), as of the date within the
    market staleness; one column per signal series. Nothing at date t comes from a row dated
    after t.
    """
    check_market_coverage(market, spec.target_symbol)
    target = spec.target_symbol
    tgt = market.filter(pl.col("symbol") == target).sort("date")
    extra = [
        f
        for f in ("open", "high", "low", "volume")
        if f in tgt.columns and tgt[f].is_not_null().any()
    ]
    panel = tgt.lazy().select(
        "date",
        pl.col("close").alias(close_column(target)),
        *[pl.col(f).alias(f"{target}_{f}") for f in extra],
    )
    base = panel.select("date")
    for symbol in sorted(s for s in market["symbol"].unique().to_list() if s != target):
        series = (
            market.lazy()
            .filter(pl.col("symbol") == symbol)
            .select("date", pl.col("close").alias(close_column(symbol)))
        )
        joined = _asof(base, series, spec.market_staleness_days)
        panel = panel.join(joined, on="date", how="left")
    if curve is not None:
        for _, frame in sorted(curve_series(curve, spec.roll).items()):
            joined = _asof(base, frame.lazy(), spec.market_staleness_days)
            panel = panel.join(joined, on="date", how="left")
    clashes = set(signals["series"].unique().to_list()) & set(panel.collect_schema().names())
    if clashes:
        raise ValueError(f"signal series names {sorted(clashes)} clash with market panel columns")
    for name in sorted(signals["series"].unique().to_list()):
        series = (
            signals.lazy()
            .filter(pl.col("series") == name)
            .select("date", pl.col("value").alias(name))
        )
        joined = _asof(base, series, spec.signal_staleness_days)
        panel = panel.join(joined, on="date", how="left")
    return panel.sort("date").collect()
