"""Market regime calendar and training weights (DESIGN §2), overridable from JSON."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from dataclasses import dataclass

import polars as pl

WEIGHT_MIN = 50.0
WEIGHT_MAX = 5000.0


@dataclass(frozen=True)
class Regime:
    """A named, contiguous date range with a training weight; ``None`` bounds are open."""

    name: str
    start: dt.date | None
    end: dt.date | None
    weight: float
    crisis: bool = False


# precrisis is open at the start so that data before 2000 (the real 1995–2010 file) is covered;
# policy is open at the end.
DEFAULT_REGIMES: tuple[Regime, ...] = (
    Regime("precrisis", None, dt.date(2007, 12, 31), 100.0),
    Regime("financial_crisis", dt.date(2008, 1, 1), dt.date(2009, 12, 31), 500.0, crisis=True),
    Regime("recovery", dt.date(2010, 1, 1), dt.date(2016, 12, 31), 300.0),
    Regime("tradewar", dt.date(2017, 1, 1), dt.date(2019, 12, 31), 1500.0),
    Regime("covid", dt.date(2020, 1, 1), dt.date(2021, 6, 30), 800.0, crisis=True),
    Regime("inflation", dt.date(2021, 7, 1), dt.date(2023, 6, 30), 1200.0),
    Regime("policy", dt.date(2023, 7, 1), None, 5000.0),
)


class RegimeConfigError(ValueError):
    """The regime calendar is malformed (gaps, overlaps, weights out of range)."""


def validate_regimes(regimes: tuple[Regime, ...]) -> tuple[Regime, ...]:
    """Check the calendar is ordered, gap-free, non-overlapping and weighted in [50, 5000]."""
    if not regimes:
        raise RegimeConfigError("the regime calendar is empty; expected at least one regime")
    names = [r.name for r in regimes]
    if len(set(names)) != len(names):
        raise RegimeConfigError(f"regime names must be unique, got {names}")
    for r in regimes:
        if not WEIGHT_MIN <= r.weight <= WEIGHT_MAX:
            raise RegimeConfigError(
                f"regime {r.name!r}: weight {r.weight} outside [{WEIGHT_MIN:g}, {WEIGHT_MAX:g}]"
            )
        if r.start and r.end and r.end < r.start:
            raise RegimeConfigError(f"regime {r.name!r}: end {r.end} before start {r.start}")
    for prev, nxt in itertools.pairwise(regimes):
        if prev.end is None or nxt.start is None:
            raise RegimeConfigError(
                f"only the first regime may have an open start and only the last an open end "
                f"({prev.name!r} -> {nxt.name!r})"
            )
        if nxt.start != prev.end + dt.timedelta(days=1):
            raise RegimeConfigError(
                f"regimes {prev.name!r} (ends {prev.end}) and {nxt.name!r} (starts {nxt.start}) "
                "must be contiguous: the next regime starts the day after the previous ends"
            )
    return regimes


def _date_or_none(value: object, field: str, name: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise RegimeConfigError(f"regime {name!r}: {field} {value!r} is not an ISO date") from None


def regimes_from_json(text: str, source: str = "<regimes>") -> tuple[Regime, ...]:
    """Parse ``[{"name", "start", "end", "weight", "crisis"}, ...]`` and validate it."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegimeConfigError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(raw, list):
        raise RegimeConfigError(f"{source}: expected a JSON list of regimes")
    regimes = []
    for item in raw:
        if not isinstance(item, dict) or "name" not in item or "weight" not in item:
            raise RegimeConfigError(
                f"{source}: each regime needs at least 'name' and 'weight': {item!r}"
            )
        name = str(item["name"])
        weight, crisis = item["weight"], item.get("crisis", False)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise RegimeConfigError(
                f"{source}: regime {name!r}: weight {weight!r} is not a number; expected a "
                "number such as 500"
            )
        if not isinstance(crisis, bool):
            raise RegimeConfigError(
                f"{source}: regime {name!r}: crisis {crisis!r} is not a JSON boolean; expected "
                "true or false (unquoted)"
            )
        regimes.append(
            Regime(
                name=name,
                start=_date_or_none(item.get("start"), "start", name),
                end=_date_or_none(item.get("end"), "end", name),
                weight=float(weight),
                crisis=crisis,
            )
        )
    try:
        return validate_regimes(tuple(regimes))
    except RegimeConfigError as exc:
        raise RegimeConfigError(f"{source}: {exc}") from exc


def regimes_to_json(regimes: tuple[Regime, ...]) -> str:
    return json.dumps(
        [
            {
                "name": r.name,
                "start": r.start.isoformat() if r.start else None,
                "end": r.end.isoformat() if r.end else None,
                "weight": r.weight,
                "crisis": r.crisis,
            }
            for r in regimes
        ],
        indent=2,
    )


def regime_expressions(
    regimes: tuple[Regime, ...], date_col: str = "date"
) -> tuple[pl.Expr, pl.Expr]:
    """Expressions for ``market_regime`` and ``training_weight`` of each date."""
    validate_regimes(regimes)
    date = pl.col(date_col)
    name: pl.Expr | None = None
    weight: pl.Expr | None = None
    for r in regimes:
        cond = pl.lit(True)
        if r.start is not None:
            cond = cond & (date >= r.start)
        if r.end is not None:
            cond = cond & (date <= r.end)
        name = (pl.when(cond) if name is None else name.when(cond)).then(pl.lit(r.name))  # type: ignore[attr-defined]
        weight = (pl.when(cond) if weight is None else weight.when(cond)).then(pl.lit(r.weight))  # type: ignore[attr-defined]
    assert name is not None and weight is not None
    return name.alias("market_regime"), weight.cast(pl.Float64).alias("training_weight")
