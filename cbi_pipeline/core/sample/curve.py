"""The sample futures curve: contract-level closes, volume and open interest for ZL ZS ZM ZC ZW HO.

``sample_curve(market, seed)`` turns the sample raw market frame into rows of the raw curve
contract (``core/curves/contract.py``): ``date, symbol, contract, expiry, close, volume,
open_interest``. It follows the real ``dev_curve_1995_2010.csv``:

- the contracts are the months the exchange lists (``CONTRACT_MONTHS``); the expiry is the
  business day before the 15th of the delivery month (CBOT) or the last business day of the month
  before it (NYMEX heating oil); there is no holiday calendar, as in the rest of the sample;
- on each date the symbol's nearest contract (the earliest expiry on or after the date: a
  contract is quoted through its expiry day, never after) and the next ones, as many as the
  real file quotes (``CONTRACTS_PER_DATE``);
- the nearest contract's close and volume are exactly the market's for that symbol and date, so
  the market's front-month series is this curve's first generic, as in the real files; there
  are rows only on the dates the market has the symbol;
- a later contract is priced from the one before it with the annualised log spread (carry)
  ``mu + sd * g(Z)``: ``mu``, ``sd`` and the skew of ``g`` follow the earlier leg's delivery
  month and its days to expiry (grain old-crop/new-crop and heating-oil winter inversions live
  in ``mu``), ``Z`` is a unit-variance AR(1) per delivery month, correlated between
  neighbouring months (plus a little day-to-day noise on the nearest pair), and ``g`` a
  standardised skew (contango is bounded by the cost of carry, backwardation is not);
- open interest and the later contracts' volume are a profile by delivery month and business
  days to expiry times the front month's volume level (its EMA), with AR(1) noise per
  contract, so that the front's open interest falls as its expiry nears and the next contract
  overtakes it some days before the first notice day.

Because the nearest is pinned to the market's front series, which has no roll gap, the 1st-2nd
spread shows as a gap in the own return of the contract that becomes the nearest, on the day
after the old nearest expires (``docs/sample_market.md`` quantifies it).

Pure numpy/polars; the random draws come from their own stream ``(seed, STREAM_CURVE)``, one row
per market date in date order, so the same market and seed give a bit-identical frame and a
market that ends earlier gives a prefix of the curve.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import polars as pl

from cbi_pipeline.core.curves.contract import CURVE_SCHEMA, MONTH_CODES
from cbi_pipeline.core.sample.calibration import TICKS
from cbi_pipeline.core.sample.curve_calibration import (
    CARRY_BY_MONTH,
    CARRY_NEAR_NOISE,
    CARRY_NEIGHBOUR_CORR,
    CARRY_PHI,
    CONTRACT_MONTHS,
    CONTRACTS_PER_DATE,
    CURVE_SYMBOLS,
    NYMEX_SYMBOLS,
    OI_NOISE,
    OI_PROFILE,
    PROFILE_DAYS,
    STREAM_CURVE,
    VOLUME_LEVEL_SPAN,
    VOLUME_NOISE,
    VOLUME_PROFILE,
)
from cbi_pipeline.core.sample.noise import ar1, rng

_MARKET_NEEDS = ("date", "symbol", "close", "volume")
_YEARS_AHEAD = 3  # the calendar runs this many years past the last date: room for every window


def contract_expiries(symbol: str, years: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Last trade dates (datetime64[D]) of delivery (year, month) pairs.

    CBOT (ZL ZS ZM ZC ZW): the last Monday-Friday before the 15th of the delivery month. NYMEX
    heating oil: the last Monday-Friday of the month before the delivery month.
    """
    first = ((years - 1970) * 12 + months - 1).astype("datetime64[M]").astype("datetime64[D]")
    before = first - np.timedelta64(1, "D") if symbol in NYMEX_SYMBOLS else first + 13
    return np.busday_offset(before, 0, roll="backward")


def contract_calendar(
    symbol: str, first_year: int, last_year: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every listed contract of ``symbol`` delivering in ``first_year..last_year``, by expiry:
    (ordinal, code, expiry). The ordinal ``year * n_months + index of the month`` numbers the
    contracts independently of the sample window."""
    listed = CONTRACT_MONTHS[symbol]
    n = len(listed)
    ordinal = np.arange(first_year * n, (last_year + 1) * n, dtype=np.int64)
    years = ordinal // n
    letters = np.array(list(listed))[ordinal % n]
    months = np.array([MONTH_CODES.index(c) + 1 for c in listed])[ordinal % n]
    expiry = contract_expiries(symbol, years, months)
    codes = np.char.add(np.char.add(symbol, letters), years.astype(str))
    return ordinal, codes, expiry


def skew_transform(z: np.ndarray, lam: np.ndarray | float) -> np.ndarray:
    """Standardised (mean 0, sd 1 for standard-normal ``z``) ``(1 - exp(-lam z)) / lam``,
    elementwise: bounded above with a long lower tail for ``lam > 0`` (contango is capped by the
    cost of carry, backwardation is not), the mirror for ``lam < 0``, the identity at 0. Its
    median, ``skew_transform(0, lam)``, is about ``lam / 2``."""
    z = np.asarray(z, dtype=np.float64)
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), z.shape)
    small = np.abs(lam) < 1e-6
    lam = np.where(small, 1.0, lam)
    mean = -np.expm1(lam * lam / 2.0) / lam
    sd = np.sqrt(np.exp(lam * lam) * np.expm1(lam * lam)) / np.abs(lam)
    return np.where(small, z, (-np.expm1(-lam * z) / lam - mean) / sd)


def front_volume_level(volume: np.ndarray) -> np.ndarray:
    """EMA (span ``VOLUME_LEVEL_SPAN``, no bias correction) of the front month's daily volume,
    skipping and carrying over missing (NaN) days; NaN before the first volume. The same
    function measures the real file's level in the calibration script."""
    series = pl.Series("volume", volume, dtype=pl.Float64, nan_to_null=True)
    level = series.ewm_mean(span=VOLUME_LEVEL_SPAN, adjust=False, ignore_nulls=True)
    return level.forward_fill().fill_null(np.nan).to_numpy()


def _neighbour_cholesky(n: int, rho: float) -> np.ndarray:
    """Cholesky factor of the circulant correlation ``rho ** d`` between delivery months ``d``
    listed months apart (round the year), made positive definite by clipping eigenvalues."""
    i = np.arange(n)
    gap = np.abs(i[:, None] - i[None, :])
    corr = rho ** np.minimum(gap, n - gap).astype(np.float64)
    vals, vecs = np.linalg.eigh(corr)
    fixed = (vecs * np.clip(vals, 1e-6, None)) @ vecs.T
    d = np.sqrt(np.diag(fixed))
    return np.linalg.cholesky(fixed / np.outer(d, d))


class _Draws(NamedTuple):
    """One symbol's random paths on every market date (rows), each unit-variance."""

    carry: np.ndarray  # AR(1) per listed delivery month, correlated between neighbours
    near: np.ndarray  # white noise of the nearest pair's carry (one column)
    oi: np.ndarray  # AR(1) per contract slot
    volume: np.ndarray  # AR(1) per contract slot


def _layout() -> tuple[dict[str, tuple[slice, ...]], int]:
    """Columns of the random matrix per symbol, in ``_Draws`` order; a contract's slot is its
    ordinal modulo ``CONTRACTS_PER_DATE + 1``, so the contracts of one date never share one.
    Fixed for every market, so a symbol missing from a market does not shift the others'."""
    layout, at = {}, 0
    for sym in CURVE_SYMBOLS:
        slots = CONTRACTS_PER_DATE[sym] + 1
        widths = (len(CONTRACT_MONTHS[sym]), 1, slots, slots)
        parts = []
        for w in widths:
            parts.append(slice(at, at + w))
            at += w
        layout[sym] = tuple(parts)
    return layout, at


def _draws(n_days: int, seed: int) -> dict[str, _Draws]:
    """Every symbol's random paths on ``n_days`` market dates, from one generator consumed
    row by row (date order)."""
    layout, width = _layout()
    z = rng(seed, STREAM_CURVE).standard_normal((n_days, width))
    phi = np.empty(width)
    for sym, (carry, near, oi, vol) in layout.items():
        chol = _neighbour_cholesky(carry.stop - carry.start, CARRY_NEIGHBOUR_CORR[sym])
        z[:, carry] = z[:, carry] @ chol.T
        phi[carry], phi[near] = CARRY_PHI[sym], 0.0
        phi[oi], phi[vol] = OI_NOISE[sym][1], VOLUME_NOISE[sym][1]
    paths = ar1(z, phi)
    return {sym: _Draws(*(paths[:, part] for part in parts)) for sym, parts in layout.items()}


def _carry(symbol: str, days_to_expiry: np.ndarray, month: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Annualised log spread from each contract to the next: ``mu + sd * g(z, lam)``, with
    the month's mean, sd and skew linear in the calendar days to the earlier leg's expiry
    between the knots of ``CARRY_BY_MONTH`` (flat outside), so a pair's carry changes smoothly
    as it nears the front."""
    mu, sd, lam = np.empty_like(z), np.empty_like(z), np.empty_like(z)
    for i, m in enumerate(CONTRACT_MONTHS[symbol]):
        knots = np.array(CARRY_BY_MONTH[symbol][m], dtype=np.float64)
        here = month == i
        mu[here] = np.interp(days_to_expiry[here], knots[:, 0], knots[:, 1])
        sd[here] = np.interp(days_to_expiry[here], knots[:, 0], knots[:, 2])
        lam[here] = np.interp(days_to_expiry[here], knots[:, 0], knots[:, 3])
    return mu + sd * skew_transform(z, lam)


def _round_to_tick(values: np.ndarray, tick: float) -> np.ndarray:
    decimals = max(0, -math.floor(math.log10(tick) + 1e-9))
    return np.maximum(np.round(np.round(values / tick) * tick, decimals), tick)


def _profile(
    symbol: str,
    table: dict[str, dict[str, tuple[float, ...]]],
    to_expiry: np.ndarray,
    ordinal: np.ndarray,
) -> np.ndarray:
    """Log of the median open interest (or volume) over the front's volume level for each
    contract's delivery month and business days to expiry: linear in log between the knots at
    ``PROFILE_DAYS``, flat outside."""
    listed = CONTRACT_MONTHS[symbol]
    month = ordinal % len(listed)
    out = np.empty(to_expiry.shape)
    for i, m in enumerate(listed):
        here = month == i
        out[here] = np.interp(to_expiry[here], PROFILE_DAYS, np.log(table[symbol][m]))
    return out


def _symbol_curve(
    symbol: str,
    rows: pl.DataFrame,
    day_index: np.ndarray,
    draws: _Draws,
) -> pl.DataFrame:
    """The curve rows of one symbol on its market dates (``rows``: date, close, volume)."""
    dates = rows["date"].to_numpy().astype("datetime64[D]")
    k = CONTRACTS_PER_DATE[symbol]
    first_year = int(dates[0].astype("datetime64[Y]").astype(np.int64)) + 1970
    last_year = int(dates[-1].astype("datetime64[Y]").astype(np.int64)) + 1970 + _YEARS_AHEAD
    ordinal, codes, expiry = contract_calendar(symbol, first_year, last_year)
    nearest = np.searchsorted(expiry, dates, side="left")
    idx = nearest[:, None] + np.arange(k)[None, :]  # dates x contracts, by expiry
    if idx[-1, -1] >= expiry.size:
        raise ValueError(f"{symbol}: the contract calendar to {last_year} is too short")

    draws = _Draws(*(p[day_index] for p in draws))
    listed = len(CONTRACT_MONTHS[symbol])
    month = ordinal[idx[:, :-1]] % listed  # delivery month (listed index) of the earlier leg
    z = np.take_along_axis(draws.carry, month, axis=1)
    v = CARRY_NEAR_NOISE[symbol]  # the nearest pair's carry is partly day-to-day noise
    z[:, 0] = math.sqrt(1.0 - v) * z[:, 0] + math.sqrt(v) * draws.near[:, 0]
    days_to_expiry = (expiry[idx[:, :-1]] - dates[:, None]).astype(np.float64)
    carry = _carry(symbol, days_to_expiry, month, z)
    years_apart = (expiry[idx[:, 1:]] - expiry[idx[:, :-1]]).astype(np.float64) / 365.25
    close0 = rows["close"].to_numpy().astype(np.float64)
    later = close0[:, None] * np.exp(np.cumsum(carry * years_apart, axis=1))
    close = np.column_stack([close0, _round_to_tick(later, TICKS[symbol])])

    to_expiry = np.busday_count(dates[:, None], expiry[idx]).astype(np.float64)
    front_volume = rows["volume"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    level = front_volume_level(front_volume)
    slot = ordinal[idx] % (k + 1)
    oi = level[:, None] * np.exp(
        _profile(symbol, OI_PROFILE, to_expiry, ordinal[idx])
        + OI_NOISE[symbol][0] * np.take_along_axis(draws.oi, slot, axis=1)
    )
    # A busy day for the front is a busy day along the curve: its log volume over the level.
    busy = np.nan_to_num(np.log(front_volume / level), nan=0.0)
    volume = level[:, None] * np.exp(
        _profile(symbol, VOLUME_PROFILE, to_expiry, ordinal[idx])
        + busy[:, None]
        + VOLUME_NOISE[symbol][0] * np.take_along_axis(draws.volume, slot, axis=1)
    )
    volume = np.round(volume)
    volume[:, 0] = front_volume

    n = dates.size * k
    return pl.DataFrame(
        {
            "date": pl.Series("date", np.repeat(dates, k), dtype=pl.Date),
            "symbol": pl.Series("symbol", [symbol] * n, dtype=pl.String),
            "contract": pl.Series("contract", codes[idx.ravel()], dtype=pl.String),
            "expiry": pl.Series("expiry", expiry[idx.ravel()], dtype=pl.Date),
            "close": close.ravel(),
            "volume": pl.Series("volume", volume.ravel(), nan_to_null=True),
            "open_interest": pl.Series("open_interest", np.round(oi).ravel(), nan_to_null=True),
        },
        schema=CURVE_SCHEMA,
    )


def _check_market(market: pl.DataFrame) -> None:
    missing = [c for c in _MARKET_NEEDS if c not in market.columns]
    if missing:
        raise ValueError(
            f"sample_curve: the market frame lacks column(s) {missing}; expected the sample raw "
            f"market frame ({', '.join(_MARKET_NEEDS)}, ...)"
        )
    if market.schema["date"] != pl.Date:
        raise ValueError(
            f"sample_curve: column 'date' has type {market.schema['date']}; expected Date"
        )
    curve_rows = market.filter(pl.col("symbol").is_in(CURVE_SYMBOLS))
    dup = curve_rows.filter(pl.struct("date", "symbol").is_duplicated())
    if dup.height:
        first = dup.row(0, named=True)
        raise ValueError(
            f"sample_curve: {dup.height} market rows share a (date, symbol), e.g. "
            f"{first['date']} {first['symbol']}; expected one row per (date, symbol)"
        )
    close = pl.col("close")
    bad = curve_rows.filter((close.is_null() | ~close.is_finite() | (close <= 0)).fill_null(True))
    if bad.height:
        first = bad.row(0, named=True)
        raise ValueError(
            f"sample_curve: {bad.height} market closes of {', '.join(CURVE_SYMBOLS)} are "
            f"missing, non-finite or <= 0, e.g. {first['date']} {first['symbol']} "
            f"close={first['close']}; expected a finite price > 0"
        )


def sample_curve(market: pl.DataFrame, seed: int) -> pl.DataFrame:
    """The raw curve rows for ``CURVE_SYMBOLS`` from the sample raw market frame (long: date,
    symbol, close, volume, ...), sorted by symbol, date and expiry.

    The nearest contract's close and volume are the market's; a curve symbol absent from the
    market has no rows. Where the market has no front volume yet for a symbol, its open
    interest and later volumes are empty. The same market and seed give a bit-identical frame.
    Raises ``ValueError`` for a negative seed or a market frame that is not a sample market.
    """
    if seed < 0:
        raise ValueError(f"sample_curve: seed must be >= 0, got {seed}")
    _check_market(market)
    days = market["date"].unique().sort().to_numpy().astype("datetime64[D]")
    if days.size == 0:
        return pl.DataFrame(schema=CURVE_SCHEMA)
    draws = _draws(days.size, seed)
    parts = []
    for sym in CURVE_SYMBOLS:
        rows = market.filter(pl.col("symbol") == sym).select("date", "close", "volume").sort("date")
        if rows.height:
            day_index = np.searchsorted(days, rows["date"].to_numpy().astype("datetime64[D]"))
            parts.append(_symbol_curve(sym, rows, day_index, draws[sym]))
    if not parts:
        return pl.DataFrame(schema=CURVE_SCHEMA)
    return pl.concat(parts).sort("symbol", "date", "expiry")
