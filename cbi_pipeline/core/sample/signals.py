"""Signals of the sample market: weather, news, policy and macro series (long frames)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl

from cbi_pipeline.core.sample.calibration import (
    ARGENTINA_TAX,
    CPI_YOY,
    FED_FUNDS,
    FOMC_MONTH_DAYS,
    RFS_EVENTS,
    STREAM_CPI,
    STREAM_NEWS,
    STREAM_TRADE,
    STREAM_US10Y,
    STREAM_WEATHER,
    TRADE_TENSION,
    US10Y,
    WEATHER_EPISODES,
)
from cbi_pipeline.core.sample.dates import interp, step, weekdays_of, year_fraction, years_of
from cbi_pipeline.core.sample.noise import ar1, rng
from cbi_pipeline.core.sample.prices import rfs_jumps
from cbi_pipeline.core.sample.symbols import MARKET_SYMBOLS, NEWS_SERIES, WEATHER_SERIES


def weather_anomalies(days: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Daily weather anomalies: seasonal mean and scale, AR(1) noise, known episodes."""
    frac = year_fraction(days)
    z = rng(seed, STREAM_WEATHER).standard_normal((days.size, len(WEATHER_SERIES)))
    two_pi = 2.0 * math.pi
    # (phi, sd, seasonal mean amplitude, seasonal-scale amplitude, phase of the wet/active season)
    params = {
        "weather_us_midwest_temp_anom": (0.85, 1.8, 0.3, 0.3, 0.04),
        "weather_us_midwest_precip_anom": (0.6, 1.0, 0.1, 0.2, 0.45),
        "weather_brazil_precip_anom": (0.6, 1.0, 0.1, 0.3, 0.0),
        "weather_malaysia_precip_anom": (0.7, 1.0, 0.1, 0.3, 0.95),
    }
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(WEATHER_SERIES):
        phi, sd, mean_amp, scale_amp, phase = params[name]
        season = np.cos(two_pi * (frac - phase))
        value = mean_amp * season + sd * (1.0 + scale_amp * season) * ar1(z[:, k], phi)
        for series, first, last, shift in WEATHER_EPISODES:
            if series == name:
                inside = (days >= np.datetime64(first, "D")) & (days <= np.datetime64(last, "D"))
                value = value + shift * inside
        out[name] = value
    return out


def weather_frame(days: np.ndarray, weather: dict[str, np.ndarray]) -> pl.DataFrame:
    return pl.concat([_series_frame(name, days, np.round(weather[name], 3)) for name in weather])


def _series_frame(name: str, days: np.ndarray, values: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date": pl.Series("date", days, dtype=pl.Date),
            "series": pl.Series("series", [name] * days.size, dtype=pl.String),
            "value": pl.Series("value", values, dtype=pl.Float64),
        }
    )


def news_frame(days: np.ndarray, logp: np.ndarray, seed: int) -> pl.DataFrame:
    """News indices from information up to yesterday's close plus same-day policy news."""
    z = rng(seed, STREAM_NEWS).standard_normal((days.size, len(NEWS_SERIES)))
    zl, vix = MARKET_SYMBOLS.index("ZL"), MARKET_SYMBOLS.index("VIX")
    ret = np.concatenate([[0.0], np.diff(logp[:, zl])])
    lagged_ret = np.concatenate([[0.0], ret[:-1]])  # return of day t-1, known before day t
    ema = np.empty(days.size)
    acc = 0.0
    for t in range(days.size):
        acc += 0.2 * (lagged_ret[t] - acc)
        ema[t] = acc
    impulse = np.zeros(days.size)
    for when, jump in rfs_jumps(days):
        impulse[when:] += np.sign(jump) * 0.5 ** (np.arange(days.size - when) / 10.0)
    soy = np.tanh(0.5 * ar1(z[:, 0], 0.9) + 8.0 * ema + 0.3 * impulse)
    biofuel = np.tanh(0.5 * ar1(z[:, 1], 0.95) + 0.8 * impulse)
    lagged_vix = np.concatenate([logp[:1, vix], logp[:-1, vix]])
    volume = 100.0 * np.exp(
        0.2 * ar1(z[:, 2], 0.8) + 0.5 * (lagged_vix - math.log(20.0)) + 0.5 * np.abs(impulse)
    )
    return pl.concat(
        [
            _series_frame("news_soyoil_sentiment", days, np.round(soy, 4)),
            _series_frame("news_biofuel_sentiment", days, np.round(biofuel, 4)),
            _series_frame("news_volume_index", days, np.round(volume, 2)),
        ]
    )


def _first_business_days_of_months(days: np.ndarray) -> np.ndarray:
    previous = np.busday_offset(days, -1, roll="forward")
    return days[previous.astype("datetime64[M]") != days.astype("datetime64[M]")]


def _on_or_after(days: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """Each date moved to the first business day of the window on or after it (dropped past end)."""
    idx = np.searchsorted(days, dates)
    idx = idx[idx < days.size]
    return np.unique(days[idx])


def policy_frame(days: np.ndarray, seed: int) -> pl.DataFrame:
    start, end = days[0], days[-1]
    monthly = _first_business_days_of_months(days)
    # RFS: announcement days plus a monthly re-statement of the latest headline volume.
    rfs_events = (("1990-01-01", 0.0), *[(d, v) for d, v, _ in RFS_EVENTS])
    announce = np.array([d for d, _, _ in RFS_EVENTS], dtype="datetime64[D]")
    announce = announce[(announce >= start) & (announce <= end)]
    rfs_days = np.union1d(monthly, _on_or_after(days, announce))
    rfs = step(rfs_days, rfs_events)
    # Trade tension: Fridays (weekly), knots plus AR noise, clipped to [0, 100].
    fridays = days[weekdays_of(days) == 4]
    trade_knots = tuple(d for d, _ in TRADE_TENSION)
    trade_level = interp(fridays, trade_knots, np.array([v for _, v in TRADE_TENSION], float))
    noise = ar1(rng(seed, STREAM_TRADE).standard_normal(max(fridays.size, 1)), 0.7)
    trade = np.clip(trade_level + 4.0 * noise[: fridays.size], 0.0, 100.0)
    # Argentina export tax: monthly, the rate in force.
    tax = step(monthly, ARGENTINA_TAX)
    return pl.concat(
        [
            _series_frame("policy_rfs_mandate_bgal", rfs_days, rfs),
            _series_frame("policy_trade_tension_index", fridays, np.round(trade, 2)),
            _series_frame("policy_argentina_export_tax_pct", monthly, tax),
        ]
    )


def _fomc_days(days: np.ndarray) -> np.ndarray:
    years = range(int(years_of(days[:1])[0]), int(years_of(days[-1:])[0]) + 1)
    changes = np.array([d for d, _ in FED_FUNDS], dtype="datetime64[D]")
    scheduled = []
    for year in years:
        for month, day in FOMC_MONTH_DAYS:
            anchor = np.datetime64(dt.date(year, month, day), "D")
            weekday = int(weekdays_of(np.array([anchor]))[0])
            meeting = anchor - np.timedelta64(weekday, "D") + np.timedelta64(2, "D")
            if np.min(np.abs((changes - meeting).astype(np.int64))) > 10:
                scheduled.append(meeting)
    meetings = np.union1d(np.array(scheduled, dtype="datetime64[D]"), changes)
    meetings = meetings[(meetings >= days[0]) & (meetings <= days[-1])]
    return _on_or_after(days, meetings)


def macro_frame(days: np.ndarray, seed: int) -> pl.DataFrame:
    # 10-year yield: daily, knots plus a mean-reverting deviation scaled by the level.
    level = interp(days, tuple(d for d, _ in US10Y), np.array([v for _, v in US10Y], float))
    dev = ar1(rng(seed, STREAM_US10Y).standard_normal(days.size), 0.983)
    us10y = np.maximum(level + 0.27 * np.sqrt(level / 3.0) * dev, 0.05)
    # Fed funds: FOMC meeting days (and emergency moves), the target in force.
    fomc = _fomc_days(days)
    fed = step(fomc, FED_FUNDS)
    # CPI: the previous month's YoY, published on the first business day on or after the 13th.
    first_month = days[0].astype("datetime64[M]") - np.timedelta64(1, "M")
    months = np.arange(first_month, days[-1].astype("datetime64[M]") + 1)
    thirteenth = months.astype("datetime64[D]") + np.timedelta64(12, "D")
    release = np.busday_offset(thirteenth, 0, roll="forward")
    reference = (months - np.timedelta64(1, "M")).astype("datetime64[D]")
    cpi_noise = rng(seed, STREAM_CPI).normal(0.0, 0.1, size=months.size)
    cpi_level = interp(reference, tuple(d for d, _ in CPI_YOY), np.array([v for _, v in CPI_YOY]))
    cpi = np.round(cpi_level + cpi_noise, 1)
    inside = (release >= days[0]) & (release <= days[-1])
    return pl.concat(
        [
            _series_frame("macro_us10y_yield", days, np.round(us10y, 3)),
            _series_frame("macro_fed_funds_rate", fomc, fed),
            _series_frame("macro_us_cpi_yoy", release[inside], cpi[inside]),
        ]
    )
