"""What the curve says each day, per symbol: the panel columns the curve features are built from.

For each curve symbol ``S`` and each of its trading dates (the held contract quoted, see
``roll.rolled_series``):

- ``S_roll_adjusted``: the ratio forward-adjusted series of the held contract. Its returns are a
  rolled position's (no roll jumps); its level is arbitrary, so only scale-free features (returns,
  volatilities, ratios to its own moving averages) are built on it. Forward, not back-adjusted:
  the back-adjusted value on a date moves with every later roll, the forward one does not.
- ``S_carry``: the annualised log spread of the next contract over the held one,
  ``log(next / held) / years between their expiries``; above 0 in contango, below in
  backwardation. Null when no later contract is quoted that day.
- ``S_curve_slope``: the least-squares slope of log close on years to expiry over the held
  contract and the next ``SLOPE_CONTRACTS - 1`` contracts quoted that day (at least 3 needed).
- ``S_oi_share``: the held contract's open interest over the open interest of every contract of
  the symbol quoted that day. Null where the held contract has none.
- ``S_days_to_roll``: weekdays until the held contract rolls (``roll.roll_schedule``).

Every value at date t comes from the curve's rows dated t and earlier: the truncation test checks
the features built on these columns like every other.
"""

from __future__ import annotations

import polars as pl

from cbi_pipeline.core.curves.roll import RollSpec, rolled_series

CURVE_FIELDS = ("roll_adjusted", "carry", "curve_slope", "oi_share", "days_to_roll")
ADJUSTED_FIELD = "roll_adjusted"
SLOPE_CONTRACTS = 4
DAYS_PER_YEAR = 365.25


def curve_column(symbol: str, field: str) -> str:
    """The panel column of one curve field: ``curve_column("ZL", "carry")`` -> ``ZL_carry``."""
    return f"{symbol}_{field}"


def curve_symbols(columns: list[str] | set[str]) -> list[str]:
    """The symbols a panel holds curve columns for (those with a roll-adjusted series)."""
    suffix = f"_{ADJUSTED_FIELD}"
    return sorted(c.removesuffix(suffix) for c in columns if c.endswith(suffix))


def _slopes(quotes: pl.DataFrame, held: pl.DataFrame) -> pl.DataFrame:
    later = (
        quotes.join(
            held.select("date", "symbol", pl.col("expiry").alias("_held")), on=["date", "symbol"]
        )
        .filter(pl.col("expiry") >= pl.col("_held"))
        .sort("symbol", "date", "expiry")
        .group_by("symbol", "date", maintain_order=True)
        .head(SLOPE_CONTRACTS)
        .with_columns(
            ((pl.col("expiry") - pl.col("date")).dt.total_days() / DAYS_PER_YEAR).alias("_x"),
            pl.col("close").log().alias("_y"),
        )
    )
    x, y = pl.col("_x"), pl.col("_y")
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    return later.group_by("symbol", "date").agg(
        pl.when(pl.len() >= 3).then(slope).otherwise(None).alias("curve_slope")
    )


def curve_daily(curve: pl.DataFrame, spec: RollSpec = RollSpec()) -> pl.DataFrame:
    """Long: ``date, symbol`` and the fields of ``CURVE_FIELDS``, one row per quoted held day."""
    series = rolled_series(curve, spec)
    has_oi = "open_interest" in curve.columns
    quotes = curve.select(
        "date",
        "symbol",
        "contract",
        "expiry",
        "close",
        pl.col("open_interest") if has_oi else pl.lit(None, pl.Float64).alias("open_interest"),
    )
    nxt = quotes.select(
        "date",
        "symbol",
        pl.col("contract").alias("next_contract"),
        pl.col("expiry").alias("_next_expiry"),
        pl.col("close").alias("_next_close"),
    )
    oi_total = quotes.group_by("date", "symbol").agg(pl.col("open_interest").sum().alias("_oi_all"))
    own_oi = quotes.select("date", "symbol", "contract", pl.col("open_interest").alias("_oi"))
    years = (pl.col("_next_expiry") - pl.col("expiry")).dt.total_days() / DAYS_PER_YEAR
    frame = (
        series.join(nxt, on=["date", "symbol", "next_contract"], how="left")
        .join(own_oi, on=["date", "symbol", "contract"], how="left")
        .join(oi_total, on=["date", "symbol"], how="left")
        .join(_slopes(quotes, series), on=["date", "symbol"], how="left")
    )
    share = pl.when(pl.col("_oi_all") > 0).then(pl.col("_oi") / pl.col("_oi_all"))
    return frame.sort("symbol", "date").select(
        "date",
        "symbol",
        pl.col("forward").alias("roll_adjusted"),
        ((pl.col("_next_close") / pl.col("front")).log() / years).alias("carry"),
        "curve_slope",
        share.otherwise(None).alias("oi_share"),
        pl.col("days_to_roll").cast(pl.Float64),
    )


def curve_series(curve: pl.DataFrame, spec: RollSpec = RollSpec()) -> dict[str, pl.DataFrame]:
    """Per curve symbol, its frame ``date, S_roll_adjusted, S_carry, ...`` (sorted by date), for
    the panel to join on the target's calendar."""
    daily = curve_daily(curve, spec)
    return {
        symbol: part.sort("date").select(
            "date", *[pl.col(f).alias(curve_column(symbol, f)) for f in CURVE_FIELDS]
        )
        for (symbol,), part in daily.partition_by("symbol", as_dict=True).items()
    }
