"""What a rolled futures position earned: the h-day log return of the back-adjusted series.

The front-month close jumps at every roll (the next contract trades at another price), so
``log(front[t+h] / front[t])`` credits a strategy with roll gaps no position earns. A position
held under the roll rule earns the back-adjusted series' return, whose daily returns are the
held contract's own (``roll.continuous_series``).

``held_returns`` maps that onto the export's calendar (the target's trading days): for export
row ``t`` with date ``d_t``, ``held_return_t = log(adjusted(d_{t+h}) / adjusted(d_t))``, where
``adjusted(d)`` is the adjusted close on the last curve date on or before ``d`` (the curve may
lack a day the market file has, or hold one more). Rows whose dates the curve does not reach
are null; a caller that needs them says which.
"""

from __future__ import annotations

import polars as pl

from cbi_pipeline.core.contracts import DataContractError
from cbi_pipeline.core.curves.roll import RollSpec, continuous_series


def held_returns(
    curve: pl.DataFrame, symbol: str, dates: pl.Series, h: int, spec: RollSpec
) -> pl.DataFrame:
    """``date, held_return``: one row per date of ``dates`` (sorted, the export's calendar)."""
    series = continuous_series(curve.filter(pl.col("symbol") == symbol), spec)
    if series.height == 0:
        raise DataContractError(
            f"the curve holds no contract of the target {symbol}; expected its contracts to "
            "measure the returns of a rolled position"
        )
    adjusted = series.select(pl.col("date").cast(pl.Date), "adjusted").sort("date")
    frame = pl.DataFrame({"date": dates.cast(pl.Date)}).with_row_index("_row")
    frame = frame.sort("date").join_asof(adjusted, on="date", strategy="backward").sort("_row")
    return frame.select(
        "date",
        (pl.col("adjusted").shift(-h) / pl.col("adjusted")).log().alias("held_return"),
    )
