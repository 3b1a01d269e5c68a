"""The roll rule: which contract of a curve is held each day, and the continuous series it makes.

**First notice day (FND).** The last business day (Monday to Friday) of the month before the
contract's delivery month. There is no holiday calendar. For NYMEX heating oil this day is the
last trade date itself.

**Roll date.** With ``N = days_before_notice`` (at least 1): the weekday ``N`` weekdays before
the FND. It is the first day the contract is no longer held, so the position is closed at the
close of the last trading date before it. The rule counts weekdays, not the symbol's trading
dates, so that whether a contract is held on ``t`` depends on ``t`` and the contract alone:
counting trading dates would need to know at ``t`` which later weekdays are holidays, which a
causal feature (``days_to_roll``) and the truncation test may not. With ``N >= 1`` the last
day held lies at least ``N + 1`` weekdays before the nominal FND, so an exchange holiday that
moves the FND a day earlier still finds the position rolled; ``N = 0`` is refused for that
reason.

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
import functools
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

    days_before_notice: weekdays before the first notice day on which the next contract is
        first held (at least 1).
    max_missing_days: the most consecutive trading days on which the held contract may lack a
        quote (a missing print); such a day keeps its schedule row with ``quoted`` False and is
        left out of the continuous series. A longer run is a :class:`RollError`; 0 refuses
        any. The real 1995-2010 curve has one such day (ZS, ZSF2000 on 1999-11-04).
    """

    days_before_notice: int = 5
    max_missing_days: int = 1

    def __post_init__(self) -> None:
        for name, least, meaning in (
            (
                "days_before_notice",
                1,
                "weekdays before the first notice day; 0 would hold into an FND that a holiday "
                "moves a day earlier",
            ),
            (
                "max_missing_days",
                0,
                "consecutive trading days without a quote of the held contract",
            ),
        ):
            n = getattr(self, name)
            if isinstance(n, bool) or not isinstance(n, int) or n < least:
                raise ValueError(
                    f"RollSpec.{name} is {n!r}; expected an integer >= {least} ({meaning})"
                )


def last_business_day(year: int, month: int) -> dt.date:
    """The last Monday-to-Friday day of a month (no holiday calendar)."""
    day = dt.date(year, month, calendar.monthrange(year, month)[1])
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


@functools.lru_cache(
    maxsize=4096
)  # a pure function of the code, asked for every contract per build
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


def roll_date(contract: str, spec: RollSpec) -> dt.date:
    """The first weekday the contract is no longer held: ``days_before_notice`` weekdays before
    its first notice day (``ZLH1996``, 5 -> 1996-02-22)."""
    fnd = first_notice_day(contract)
    return pl.select(pl.lit(fnd).dt.add_business_days(-spec.days_before_notice)).item()


def _contracts(curve: pl.DataFrame, spec: RollSpec) -> pl.DataFrame:
    """One row per contract of one symbol, by expiry, with its FND and roll date."""
    contracts = curve.group_by("contract").agg(pl.col("expiry").first()).sort("expiry", "contract")
    fnd = pl.Series("fnd", [first_notice_day(c) for c in contracts["contract"]], dtype=pl.Date)
    return contracts.with_columns(fnd).with_columns(
        pl.col("fnd").dt.add_business_days(-spec.days_before_notice).alias("roll_date")
    )


def _held(symbol: str, dates: pl.Series, contracts: pl.DataFrame) -> pl.DataFrame:
    """date, contract, expiry, roll_date: on date t the first contract (by expiry) whose roll
    date is after t. Only the contracts that raise the running maximum of roll dates can be
    that first one, and on them the maximum increases strictly: a sorted search."""
    records = contracts.filter(
        pl.col("roll_date") > pl.col("roll_date").cum_max().shift(1).fill_null(dt.date.min)
    )
    k = records["roll_date"].search_sorted(dates, side="right")
    held = pl.DataFrame({"date": dates, "_k": k})
    lost = held.filter(pl.col("_k") >= records.height)
    if lost.height:
        raise RollError(
            f"symbol {symbol!r}: no contract left to hold on {lost['date'][0]} "
            f"({lost.height} date(s)); every contract in the curve rolls on or before it; "
            "expected a later contract in the curve"
        )
    chosen = records.select("contract", "expiry", "roll_date").with_row_index("_k")
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
    held = _held(symbol, dates, _contracts(curve, spec))
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
            pl.business_day_count(pl.col("date"), pl.col("roll_date")).alias("days_to_roll"),
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
    ``days_to_roll`` (weekdays from the date to the held contract's roll date, the date counted
    and the roll date not: at least 1; 1 on the last weekday before the roll date) and ``quoted`` (the held contract has a close that day;
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
    return sched.with_columns(
        (pl.col("front") * later.over("symbol")).alias("adjusted"),
        (pl.col("front") / pl.col("factor").cum_prod().over("symbol")).alias("forward"),
    )


def continuous_series(curve: pl.DataFrame, spec: RollSpec = RollSpec()) -> pl.DataFrame:
    """Per (symbol, date) on which the held contract is quoted: ``date, symbol, contract``
    (held), ``front`` (its close: the unadjusted front) and ``adjusted`` (ratio back-adjusted;
    the last segment is ``front``). A gap day allowed by ``RollSpec.max_missing_days`` has no
    row, so the next row's return spans it."""
    return _adjusted(curve, spec).select("date", "symbol", "contract", "front", "adjusted")


def rolled_series(curve: pl.DataFrame, spec: RollSpec = RollSpec()) -> pl.DataFrame:
    """The rows of ``continuous_series`` with what the curve features read: ``expiry`` (of the
    held contract), ``next_contract``, ``days_to_roll`` (as in ``roll_schedule``) and
    ``forward``, the ratio *forward*-adjusted series: the first segment is traded prices and
    each roll divides the later ones by its factor. It is ``adjusted`` times a constant per
    symbol, so its returns are the same, but its value on a date depends only on rows up to that
    date (the back-adjusted one moves with every later roll), as a causal feature needs."""
    return _adjusted(curve, spec).select(
        "date",
        "symbol",
        "contract",
        "expiry",
        "next_contract",
        "days_to_roll",
        "front",
        "adjusted",
        "forward",
    )


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
