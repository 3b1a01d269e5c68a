"""The fan chart of a forecast: recent prices, the out-of-fold point predictions at their target
dates, and tonight's forecast as 50/80/95% bands opening from the origin to the target date.

Frames in, PNG bytes out; matplotlib is imported only when a chart is drawn.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import polars as pl

from cbi_pipeline.core.intervals import INTERVALS

# The fan's bands, widest first (drawn under the narrower ones).
FAN_BANDS: tuple[float, ...] = (0.95, 0.8, 0.5)


def forecast_chart(
    history: pl.DataFrame, oof: pl.DataFrame, row: Mapping[str, Any], title: str
) -> bytes:
    """Recent prices, the out-of-fold point predictions at their target dates, and the forecast:
    its 50/80/95% bands as a fan from the origin to the target date, and the point."""
    import matplotlib  # matplotlib: imported only when a chart is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib

    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    ax.plot(
        history["date"].to_list(), history["price"].to_list(), color="#222", lw=1.2, label="price"
    )
    if oof.height:
        ax.plot(
            oof["target_date"].to_list(),
            oof["y_pred"].to_list(),
            color="#1f77b4",
            lw=0.9,
            alpha=0.8,
            label="out-of-fold prediction (at target date)",
        )
    origin, target, price = row["origin_date"], row["target_date"], row["price"]
    for i, level in enumerate(FAN_BANDS):
        lo, hi = (row[q] for q in INTERVALS[level])
        ax.fill(
            [origin, target, target],
            [price, lo, hi],
            color="#d62728",
            alpha=0.15 + 0.15 * i,
            lw=0,
            label=f"{level:.0%} interval",
        )
    ax.plot([origin, target], [price, row["forecast_price"]], color="#d62728", ls="--", lw=1)
    ax.plot([target], [row["forecast_price"]], "o", color="#d62728", label="forecast")
    for q in (*INTERVALS[0.9], "q50"):
        ax.annotate(
            f"{row[q]:.2f}",
            (target, row[q]),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=7,
            va="center",
            color="#7f0000",
        )
    ax.set_title(title)
    ax.set_ylabel("price")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")  # opaque in dark dialogs
    plt.close(fig)
    return buf.getvalue()
