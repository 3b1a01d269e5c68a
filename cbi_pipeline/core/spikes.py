"""One-day price spikes that reverse the next day: a known vendor artefact (a bad print).

A spike at row ``t`` of a daily price series ``p``, with log returns ``r_t = log(p_t / p_{t-1})``:

- the move is extreme: ``|r_t| > SPIKE_SIGMAS * sigma``, where ``sigma = 1.4826 * median|r|``
  is a robust daily volatility of the whole series (a few bad prints do not inflate it);
- it reverses the next day: ``r_{t+1}`` has the opposite sign and undoes at least
  ``SPIKE_REVERSAL`` of it, ``|r_{t+1}| >= SPIKE_REVERSAL * |r_t|``.

A real repricing (a jump that stays) is not a spike. The diagnostics report spikes with their
dates; they do not fail a check (a genuine one-day round trip is possible, the user decides).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

SPIKE_SIGMAS = 8.0
SPIKE_REVERSAL = 0.8
# 1 / Phi^-1(3/4): makes the median absolute return a standard deviation for normal returns.
MAD_TO_SIGMA = 1.4826


def price_spikes(dates: pl.Series, price: pl.Series) -> dict[str, Any]:
    """The rule, the robust daily volatility and each spike: its date, the prices the day before,
    on the day and the day after, and the two log returns (in %). Null prices are skipped."""
    frame = pl.DataFrame({"date": dates.cast(pl.Date), "price": price.cast(pl.Float64)})
    frame = frame.filter(pl.col("price").is_not_null() & (pl.col("price") > 0)).sort("date")
    p = frame["price"].to_numpy()
    rule = (
        f"|r_t| > {SPIKE_SIGMAS:g} robust daily sigma (1.4826 x median |r|) and the next day "
        f"reverses at least {SPIKE_REVERSAL:.0%} of it"
    )
    report: dict[str, Any] = {"rule": rule, "daily_sigma": None, "spikes": []}
    if p.size < 3:
        return report
    r = np.diff(np.log(p))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(r)))
    report["daily_sigma"] = round(sigma, 8)
    if sigma == 0:
        return report
    jump, back = r[:-1], r[1:]
    hit = (
        (np.abs(jump) > SPIKE_SIGMAS * sigma)
        & (np.sign(back) == -np.sign(jump))
        & (np.abs(back) >= SPIKE_REVERSAL * np.abs(jump))
    )
    day = frame["date"].to_list()
    for i in np.flatnonzero(hit):
        t = int(i) + 1
        report["spikes"].append(
            {
                "date": str(day[t]),
                "previous": float(p[t - 1]),
                "price": float(p[t]),
                "next": float(p[t + 1]),
                "jump_pct": round(float(jump[i]) * 100, 4),
                "reversal_pct": round(float(back[i]) * 100, 4),
            }
        )
    return report
