"""The sample market's entry point: ``SampleSpec`` in, ``SampleMarket`` (raw market, raw
signals and raw curve frames) out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import NamedTuple

import polars as pl

from cbi_pipeline.core.sample.curve import sample_curve
from cbi_pipeline.core.sample.dates import business_days
from cbi_pipeline.core.sample.prices import market_frame, price_paths
from cbi_pipeline.core.sample.signals import (
    macro_frame,
    news_frame,
    policy_frame,
    weather_anomalies,
    weather_frame,
)


@dataclass(frozen=True)
class SampleSpec:
    """What sample to generate.

    start: first business day. end: last day (inclusive); ``None`` means the last business day
    (Mon-Fri) strictly before ``today``. seed: the random seed (>= 0); the same spec, seed and
    ``today`` give bit-identical frames.
    """

    start: dt.date = dt.date(2000, 1, 3)
    end: dt.date | None = None
    seed: int = 20000103


class SampleMarket(NamedTuple):
    """The generated raw inputs, in the raw market and raw signals contracts (DESIGN §2), and
    the contract-level futures curve of ZL ZS ZM ZC ZW HO in the raw curve contract
    (``core/curves/contract.py``), whose nearest contract is the market's front month."""

    market: pl.DataFrame
    signals: pl.DataFrame
    curve: pl.DataFrame


def last_business_day_before(today: dt.date) -> dt.date:
    """The last Monday-Friday strictly before ``today``."""
    day = today - dt.timedelta(days=1)
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


def generate_sample_market(
    spec: SampleSpec = SampleSpec(), today: dt.date | None = None
) -> SampleMarket:
    """Generate the sample raw market (long OHLCV), raw signals (long date/series/value) and
    raw futures curve (long date/symbol/contract/expiry/close/volume/open_interest).

    ``today`` only matters when ``spec.end`` is ``None``; it defaults to the system date.
    Raises ``ValueError`` for a negative seed or an end before the start.
    """
    if spec.seed < 0:
        raise ValueError(f"SampleSpec.seed must be >= 0, got {spec.seed}")
    end = spec.end if spec.end is not None else last_business_day_before(today or dt.date.today())
    if end < spec.start:
        raise ValueError(f"SampleSpec: end {end} is before start {spec.start}")
    days = business_days(spec.start, end)
    if days.size == 0:
        raise ValueError(f"SampleSpec: no business day (Mon-Fri) from {spec.start} to {end}")
    weather = weather_anomalies(days, spec.seed)
    logp, shocks = price_paths(days, spec.seed, weather)
    market = market_frame(days, logp, shocks, spec.seed)
    signals = pl.concat(
        [
            weather_frame(days, weather),
            news_frame(days, logp, spec.seed),
            policy_frame(days, spec.seed),
            macro_frame(days, spec.seed),
        ]
    ).sort("series", "date")
    return SampleMarket(market=market, signals=signals, curve=sample_curve(market, spec.seed))
