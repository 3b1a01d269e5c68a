"""The roll rule: which contract of a curve is held each day, and the continuous series it makes.

**First notice day (FND).** The last business day (Monday to Friday) of the month before the
contract's delivery month. There is no holiday calendar; the symbol's own dates stand in for one
(below). For NYMEX heating oil this day is the last trade date itself.

**Trading calendar.** Each symbol's own dates in the curve, numbered 0, 1, 2, ... Past the
symbol's last date the calendar goes on with Monday-to-Friday days, so that a roll date beyond the
data still has a position (and ``days_to_roll`` a value).

**Roll date.** With ``N = days_before_notice``: let ``j`` be the position of the last trading
date on or before the contract's FND (the FND itself when it is a trading date; the trading day
before it when the FND is an exchange holiday, absent from the symbol's dates, as the exchange
then moves it). The roll date is the trading date at position ``j - N``: ``N`` trading days
before the FND. It is the first day the contract is no longer held, so the last day it is held,
position ``j - N - 1``, always lies strictly before the FND, and the roll trade is done at that
day's close. ``N = 0`` holds the contract through the trading day before its FND.

**Held contract.** On trading date ``t`` a symbol holds, among its contracts in the curve whose
roll date is after ``t``, the one with the earliest expiry. If no contract is left, or the held
contract has no quote on more than ``RollSpec.max_missing_days`` consecutive trading days (default
1: a missing print), :class:`RollError` names the symbol, the contract and the date. A tolerated
gap day keeps its schedule row (``quoted`` False) and has no row in the continuous series. The
rule never switches to another contract to fill a gap. The real 1995-2010 curve has exactly one
such day: ZS, ZSF2000 on 1999-11-04.

**Adjustment.** Ratio back-adjusted, on the series' rows (the quoted days). On the first row
``t`` of a new contract ``c1`` (previous row ``t-1`` on ``c0``) the roll factor is
``close(c1, t-1) / close(c0, t-1)``: the position moved at the previous close. Every row before
``t`` is multiplied by that factor (and by every later roll's), so the last segment equals the
traded prices and each daily return of ``adjusted`` is the return of the contract held that day
(on a roll day, ``c1``'s own return). A ``c1`` with no quote on ``t-1`` raises
:class:`RollError`.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

import polars as pl

from cbi_pipeline.core.contracts import DataContractError
from cbi_pipeline.core.curves.contract import delivery_month

SCHEDULE_COLUMNS = (
    "date",
    "symbol",
    "contract",
    "next_contract",
    "rolled",
    "days_to_roll",
    "quoted",
)
_CURVE_NEEDS = ("date", "symbol", "contract", "expiry", "close")


class RollError(DataContractError):
    """The curve cannot be rolled by the rule: the held contract lacks a quote it needs."""


@dataclass(frozen=True)
class RollSpec:
    """How the front contract is rolled.

    days_before_notice: trading days before the first notice day on which the next contract is
        first held (0: hold through the trading day before the FND).
    max_missing_days: the most consecutive trading days on which the held contract may lack a
        quote (a missing print); such a day keeps its schedule row with ``quoted`` False and is
        left out of the continuous series. A longer run is a :class:`RollError`; 0 refuses
        any. The real 1995-2010 curve has one such day (ZS, ZSF2000 on 1999-11-04).
    """

    days_before_notice: int = 5
    max_missing_days: int = 1

    def __post_init__(self) -> None:
        for name, meaning in (
            ("days_before_notice", "trading days before the first notice day"),
            ("max_missing_days", "consecutive trading days without a quote of the held contract"),
        ):
            n = getattr(self, name)
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"RollSpec.{name} is {n!r}; expected an integer >= 0 ({meaning})")


def last_business_day(year: int, month: int) -> dt.date:
    """The last Monday-to-Friday day of a month (no holiday calendar)."""
    day = dt.date(year, month, calendar.monthrange(year, month)[1])
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


def first_notice_day(contract: str) -> dt.date:
    """The last business day (Mon-Fri, no holidays) of the month before the delivery month:
    ``ZLH1996`` -> 1996-02-29."""
    year, month = delivery_month(contract)
    return last_business_day(year - 1, 12) if month == 1 else last_business_day(year, month - 1)


def _check_curve(curve: pl.DataFrame) -> None:
    missing = [c for c in _CURVE_NEEDS if c not in curve.columns]
    if missing:
        raise ValueError(
            f"the curve lacks column(s) {missing}; expected a frame from normalize_curve "
            f"({', '.join(_CURVE_NEEDS)})"
        )


def _contracts(curve: pl.DataFrame, dates: pl.Series, spec: RollSpec) -> pl.DataFrame:
    """One row per contract of one symbol, by expiry: its FND and roll position (the position
    of the last trading date on or before the FND, less ``days_before_notice``; past the last
    date the positions go on over Monday-to-Friday days)."""
    contracts = curve.group_by("contract").agg(pl.col("expiry").first()).sort("expiry", "contract")
    fnd = pl.Series("fnd", [first_notice_day(c) for c in contracts["contract"]], dtype=pl.Date)
    on_or_before = dates.search_sorted(fnd, side="right").cast(pl.Int64) - 1
    last = dates[-1]
    # an FND past the data (always a weekday): position n - 1 + weekdays in (last, FND]
    beyond = pl.business_day_count(pl.lit(last) + dt.timedelta(days=1), pl.col("fnd"))
    extra = pl.when(pl.col("fnd") > last).then(beyond + 1).otherwise(0)
    return contracts.with_columns(fnd, on_or_before.alias("_j")).select(
        "contract",
        "expiry",
        "fnd",
        (pl.col("_j") + extra - spec.days_before_notice).alias("roll_pos"),
    )


def _held(symbol: str, dates: pl.Series, contracts: pl.DataFrame) -> pl.DataFrame:
    """date, pos, contract, roll_pos: on position i the first contract (by expiry) whose roll
    position is above i. Only the contracts that raise the running maximum of roll positions
    can be that first one, and on them the maximum increases strictly: a sorted search."""
    records = contracts.filter(
        pl.col("roll_pos") > pl.col("roll_pos").cum_max().shift(1).fill_null(-(2**62))
    )
    pos = pl.int_range(0, len(dates), eager=True, dtype=pl.Int64)
    k = records["roll_pos"].search_sorted(pos, side="right")
    held = pl.DataFrame({"date": dates, "pos": pos, "_k": k})
    lost = held.filter(pl.col("_k") >= records.height)
    if lost.height:
        raise RollError(
            f"symbol {symbol!r}: no contract left to hold on {lost['date'][0]} "
            f"({lost.height} date(s)); every contract in the curve rolls on or before it; "
            "expected a later contract in the curve"
        )
    chosen = records.select("contract", "expiry", "roll_pos").with_row_index("_k")
    return held.join(chosen.with_columns(pl.col("_k").cast(pl.UInt32)), on="_k").drop("_k")


def _check_gaps(symbol: str, held: pl.DataFrame, spec: RollSpec) -> None:
    """Runs of consecutive dates on which the held contract has no close, longest first."""
    runs = (
        held.with_columns(
            (pl.col("close").is_null() != pl.col("close").is_null().shift(1))
            .fill_null(True)
            .cum_sum()
            .alias("_run")
        )
        .filter(pl.col("close").is_null())
        .group_by("_run")
        .agg(
            pl.col("date").min().alias("first"), pl.len().alias("days"), pl.col("contract").first()
        )
        .filter(pl.col("days") > spec.max_missing_days)
        .sort("days", "first", descending=[True, False])
    )
    if runs.height:
        shown = ", ".join(
            f"{r['contract']} from {r['first']} ({r['days']} day(s))"
            for r in runs.head(5).iter_rows(named=True)
        )
        raise RollError(
            f"symbol {symbol!r}: the held contract has no quote on more than "
            f"{spec.max_missing_days} consecutive trading day(s) in {runs.height} run(s): "
            f"{shown}; expected a close for the contract the roll rule holds each day "
            "(RollSpec.max_missing_days)"
        )


def _schedule_one(curve: pl.DataFrame, spec: RollSpec) -> pl.DataFrame:
    symbol = curve["symbol"][0]
    dates = curve["date"].unique().sort()
    held = _held(symbol, dates, _contracts(curve, dates, spec))
    quotes = curve.select("date", "contract", "expiry", "close")
    held = held.join(quotes.drop("expiry"), on=["date", "contract"], how="left")
    _check_gaps(symbol, held.sort("date"), spec)
    later = (
        held.select("date", pl.col("expiry").alias("_held_expiry"))
        .join(quotes, on="date")
        .filter(pl.col("expiry") > pl.col("_held_expiry"))
        .group_by("date")
        .agg(pl.col("contract").sort_by("expiry", "contract").first().alias("next_contract"))
    )
    return (
        held.join(later, on="date", how="left")
        .sort("date")
        .with_columns(
            pl.lit(symbol).alias("symbol"),
            (pl.col("contract") != pl.col("contract").shift(1)).fill_null(False).alias("rolled"),
            (pl.col("roll_pos") - pl.col("pos")).alias("days_to_roll"),
            pl.col("close").is_not_null().alias("quoted"),
        )
    )


def _schedule(curve: pl.DataFrame, spec: RollSpec) -> pl.DataFrame:
    _check_curve(curve)
    parts = [
        _schedule_one(part, spec)
        for part in curve.sort("symbol", "date", "expiry").partition_by(
            "symbol", maintain_order=True
        )
    ]
    if not parts:
        raise ValueError("the curve is empty; expected rows from normalize_curve")
    return pl.concat(parts, how="vertical")


def roll_schedule(curve: pl.DataFrame, spec: RollSpec = RollSpec()) -> pl.DataFrame:
    """One row per (symbol, date): ``date, symbol, contract`` (held), ``next_contract`` (the
    earliest-expiring contract after it quoted that day, null if none), ``rolled`` (True on
    the first date a new contract is held; False on the symbol's first date) and
    ``days_to_roll`` (trading days from the date to the held contract's roll date; 0 never
    occurs, 1 is the last day held) and ``quoted`` (the held contract has a close that day;
    False only on the gaps ``RollSpec.max_missing_days`` allows)."""
    return _schedule(curve, spec).select(SCHEDULE_COLUMNS)


def _adjusted(curve: pl.DataFrame, spec: RollSpec) -> pl.DataFrame:
    """The quoted days of the schedule with front, the roll factor (1 off roll days) and the
    adjusted close. Rolls are read on these rows: the previous row is the previous quoted day."""
    sched = _schedule(curve, spec).filter(pl.col("quoted")).rename({"close": "front"})
    sched = sched.sort("symbol", "date").with_columns(
        (pl.col("contract") != pl.col("contract").shift(1))
        .over("symbol")
        .fill_null(False)
        .alias("rolled"),
        pl.col("date").shift(1).over("symbol").alias("_prev"),
        pl.col("contract").shift(1).over("symbol").alias("from_contract"),
        pl.col("front").shift(1).over("symbol").alias("_prev_front"),
    )
    prev = curve.select(
        "symbol", pl.col("date").alias("_prev"), "contract", pl.col("close").alias("_new_prev")
    )
    sched = sched.join(prev, on=["symbol", "_prev", "contract"], how="left")
    gap = sched.filter(pl.col("rolled") & pl.col("_new_prev").is_null()).sort("symbol", "date")
    if gap.height:
        shown = ", ".join(
            f"{r['symbol']} {r['from_contract']} -> {r['contract']} on {r['date']} (no "
            f"{r['contract']} close on {r['_prev']})"
            for r in gap.head(5).iter_rows(named=True)
        )
        raise RollError(
            f"{gap.height} roll(s) lack the new contract's close on the day before the roll: "
            f"{shown}; expected both contracts quoted on the roll's previous day (the roll "
            "trade's close)"
        )
    factor = pl.when(pl.col("rolled")).then(pl.col("_new_prev") / pl.col("_prev_front"))
    sched = sched.sort("symbol", "date").with_columns(factor.otherwise(1.0).alias("factor"))
    later = pl.col("factor").reverse().cum_prod().reverse().shift(-1).fill_null(1.0)
    return sched.with_columns((pl.col("front") * later.over("symbol")).alias("adjusted"))


def continuous_series(curve: pl.DataFrame, spec: RollSpec = RollSpec()) -> pl.DataFrame:
    """Per (symbol, date) on which the held contract is quoted: ``date, symbol, contract``
    (held), ``front`` (its close: the unadjusted front) and ``adjusted`` (ratio back-adjusted;
    the last segment is ``front``). A gap day allowed by ``RollSpec.max_missing_days`` has no
    row, so the next row's return spans it."""
    return _adjusted(curve, spec).select("date", "symbol", "contract", "front", "adjusted")


def roll_table(curve: pl.DataFrame, spec: RollSpec = RollSpec()) -> pl.DataFrame:
    """One row per roll of the continuous series: ``symbol, date`` (its first day on the new
    contract, the schedule's ``rolled`` day unless that day is a gap), ``from_contract``,
    ``to_contract`` and ``factor`` (new / old close the day before: the ratio applied to all
    earlier history)."""
    return (
        _adjusted(curve, spec)
        .filter(pl.col("rolled"))
        .select(
            "symbol", "date", "from_contract", pl.col("contract").alias("to_contract"), "factor"
        )
    )
