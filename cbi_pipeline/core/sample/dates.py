"""Calendar helpers of the sample market: business days, date parts, interpolation, steps."""

from __future__ import annotations

import datetime as dt

import numpy as np


def date_values(text: str) -> tuple[tuple[str, float], ...]:
    """Parse a whitespace-separated ``YYYY-MM-DD value`` table."""
    tokens = text.split()
    return tuple((tokens[i], float(tokens[i + 1])) for i in range(0, len(tokens), 2))


def business_days(start: dt.date, end: dt.date) -> np.ndarray:
    if end < start:
        return np.array([], dtype="datetime64[D]")
    all_days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    return all_days[np.is_busday(all_days)]


def _day_numbers(dates: tuple[str, ...]) -> np.ndarray:
    return np.array(dates, dtype="datetime64[D]").astype(np.int64)


def weekdays_of(days: np.ndarray) -> np.ndarray:
    """Monday = 0 .. Sunday = 6 (day 0, 1970-01-01, was a Thursday)."""
    return (days.astype(np.int64) + 3) % 7


def years_of(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[Y]").astype(np.int64) + 1970


def months_of(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[M]").astype(np.int64) % 12 + 1


def year_fraction(days: np.ndarray) -> np.ndarray:
    start_of_year = days.astype("datetime64[Y]").astype("datetime64[D]")
    return (days - start_of_year).astype(np.float64) / 365.25


def interp(days: np.ndarray, knot_dates: tuple[str, ...], values: np.ndarray) -> np.ndarray:
    """Linear interpolation on calendar days, flat outside the knots."""
    return np.interp(days.astype(np.int64), _day_numbers(knot_dates), values)


def step(days: np.ndarray, events: tuple[tuple[str, float], ...]) -> np.ndarray:
    """Value in force on each day for a step function given by (effective date, value)."""
    when = _day_numbers(tuple(d for d, _ in events))
    values = np.array([v for _, v in events])
    idx = np.searchsorted(when, days.astype(np.int64), side="right") - 1
    return values[np.clip(idx, 0, None)]
