"""The market's own forecast: the front price at t+h is today's price of the contract that will
be front then (the ``futures_curve`` baseline).

For an export row at date ``t`` (price ``p_t``, the target's front close) and horizon ``h``
trading days:

1. the target date ``D = t + h`` weekdays (no holiday calendar: the forecast is made at ``t``,
   before the later trading days are known);
2. the contract that will be front at ``D``, among the contracts of the symbol quoted at ``t``
   (earliest expiry first), by the target's front rule:

   - ``nearest`` (a front-month market file, as vendors stitch it and as the real 1995-2010
     file is: the nearest contract held to its last trade date): the first contract with
     ``expiry >= D``;
   - ``roll`` (the front comes from the curve under the roll rule): the first contract whose
     roll date (``roll.roll_date``) is after ``D``;

3. the forecast log return ``log(close of that contract at t / p_t)``: the futures price is the
   market's price for delivery then. Where no quoted contract reaches ``D`` (the curve is too
   short for the horizon) or ``t`` has no curve row, the value is null and the baseline falls
   back to the random walk (0); the fallbacks are counted and reported.

Only rows dated ``t`` are read for the forecast at ``t``.
"""

from __future__ import annotations

import polars as pl

from cbi_pipeline.core.curves.roll import RollSpec, roll_date

NEAREST = "nearest"
ROLL = "roll"
FRONT_RULES = (NEAREST, ROLL)


def market_forecast(
    curve: pl.DataFrame,
    symbol: str,
    dates: pl.Series,
    prices: pl.Series,
    h: int,
    front_rule: str,
    spec: RollSpec = RollSpec(),
) -> pl.DataFrame:
    """``date, target_date, contract, pred_return``: one row per date of ``dates`` in order;
    ``contract`` and ``pred_return`` are null where the forecast falls back (see the module)."""
    if front_rule not in FRONT_RULES:
        raise ValueError(f"unknown front rule {front_rule!r}; expected one of {FRONT_RULES}")
    if h < 1:
        raise ValueError(f"horizon of {h} trading days; expected at least 1")
    quotes = curve.filter(pl.col("symbol") == symbol).select(
        pl.col("date").cast(pl.Date), "contract", "expiry", "close"
    )
    if front_rule == ROLL:
        contracts = quotes["contract"].unique().to_list()
        keys = pl.DataFrame(
            {"contract": contracts, "_key": [roll_date(c, spec) for c in contracts]},
            schema={"contract": pl.String, "_key": pl.Date},
        )
        quotes = quotes.join(keys, on="contract")
        reaches = pl.col("_key") > pl.col("target_date")
    else:
        quotes = quotes.with_columns(pl.col("expiry").alias("_key"))
        reaches = pl.col("_key") >= pl.col("target_date")
    rows = pl.DataFrame(
        {"date": dates.cast(pl.Date), "_price": prices.cast(pl.Float64)}
    ).with_row_index("_row")
    rows = rows.with_columns(
        pl.col("date").dt.add_business_days(h, roll="forward").alias("target_date")
    )
    chosen = (
        rows.join(quotes, on="date")
        .filter(reaches)
        .sort("_row", "expiry", "contract")
        .group_by("_row", maintain_order=True)
        .first()
        .select("_row", "contract", (pl.col("close") / pl.col("_price")).log().alias("pred_return"))
    )
    return (
        rows.join(chosen, on="_row", how="left")
        .sort("_row")
        .select("date", "target_date", "contract", "pred_return")
    )
