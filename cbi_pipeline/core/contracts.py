"""Raw data contracts: validate and type user or sample frames before anything is written.

Every failure raises :class:`DataContractError` whose message names the source (file), the
column, example offending rows and what was expected. Nothing here touches the filesystem: the
caller reads files and passes each frame with its source name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

MARKET_REQUIRED = ("date", "symbol", "close")
MARKET_OPTIONAL = ("open", "high", "low", "volume")
MARKET_PRICES = ("open", "high", "low", "close")
DATE_FLOOR = dt.date(1900, 1, 1)  # no exchange-traded series here starts earlier
PRICE_RANGE = 1000.0  # a price this many times above or below its series' median is an error
SIGNALS_REQUIRED = ("date", "series", "value")
SOURCE_COL = "_source"
ROW_COL = "_row"
MAX_EXAMPLES = 5

MARKET_SCHEMA: dict[str, type[pl.DataType]] = {
    "date": pl.Date,
    "symbol": pl.String,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
}
SIGNALS_SCHEMA: dict[str, type[pl.DataType]] = {
    "date": pl.Date,
    "series": pl.String,
    "value": pl.Float64,
}


class DataContractError(ValueError):
    """A raw input violates its contract; the message says where and what was expected."""


def _show(value: object) -> str:
    return value.isoformat() if isinstance(value, dt.date) else repr(value)


def _examples(rows: pl.DataFrame, columns: Sequence[str]) -> str:
    shown = rows.head(MAX_EXAMPLES)
    lines = []
    for rec in shown.iter_rows(named=True):
        values = ", ".join(f"{c}={_show(rec.get(c))}" for c in columns if c in rec)
        lines.append(f"    row {rec[ROW_COL]}: {values}")
    more = f"\n    ... and {rows.height - MAX_EXAMPLES} more" if rows.height > MAX_EXAMPLES else ""
    return "\n".join(lines) + more


def fail(
    source: str,
    column: str,
    problem: str,
    expected: str,
    rows: pl.DataFrame,
    columns: Sequence[str],
) -> DataContractError:
    return DataContractError(
        f"{source}: column {column!r} {problem} in {rows.height} row(s); expected {expected}.\n"
        f"  examples (row numbers count data rows from 1, header excluded):\n"
        f"{_examples(rows, columns)}"
    )


def _parse_dates(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    dtype = frame.schema["date"]
    if dtype == pl.Date:
        return frame
    if isinstance(dtype, pl.Datetime):
        return frame.with_columns(pl.col("date").dt.date())
    if dtype != pl.String:
        raise DataContractError(
            f"{source}: column 'date' has type {dtype}; expected a date, a datetime or "
            "ISO-8601 text (YYYY-MM-DD)"
        )
    parsed = frame.with_columns(
        pl.col("date").str.strip_chars().str.to_date("%Y-%m-%d", strict=False).alias("_parsed")
    )
    bad = parsed.filter(pl.col("_parsed").is_null())
    if bad.height:
        raise fail(
            source,
            "date",
            "is missing or unparsable",
            "ISO dates like 2010-03-31",
            bad,
            ["date", *[c for c in ("symbol", "series") if c in frame.columns]],
        )
    return parsed.with_columns(pl.col("_parsed").alias("date")).drop("_parsed")


def parse_numbers(
    frame: pl.DataFrame, source: str, columns: Sequence[str], key: Sequence[str]
) -> pl.DataFrame:
    for col in columns:
        dtype = frame.schema[col]
        if dtype == pl.Float64:
            continue
        if dtype.is_numeric():
            frame = frame.with_columns(pl.col(col).cast(pl.Float64))
            continue
        if dtype not in (pl.String, pl.Null):
            raise DataContractError(f"{source}: column {col!r} has type {dtype}; expected numbers")
        text = pl.col(col).cast(pl.String).str.strip_chars()
        cast = text.cast(pl.Float64, strict=False)
        bad = frame.filter(cast.is_null() & text.is_not_null() & (text != ""))
        if bad.height:
            raise fail(source, col, "is not numeric", "decimal numbers", bad, [*key, col])
        frame = frame.with_columns(cast.alias(col))
    return frame


def base_checks(frame: pl.DataFrame, source: str, required: Sequence[str], kind: str) -> None:
    """The required columns are there and the file has rows (every raw contract starts here)."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataContractError(
            f"{source}: missing required column(s) {missing} for the raw {kind} contract; "
            f"found columns {frame.columns}; expected at least {list(required)}"
        )
    if frame.height == 0:
        raise DataContractError(
            f"{source}: the file is empty (no data rows); expected raw {kind} rows"
        )


def check_dates(frame: pl.DataFrame, source: str, today: dt.date | None) -> None:
    """No date before the floor, none after ``today`` (the day the data is read) by more than a
    day: a future row would give past rows labels from years ahead."""
    key = ["date", *[c for c in ("symbol", "series") if c in frame.columns]]
    bad = frame.filter(pl.col("date") < DATE_FLOOR)
    if bad.height:
        raise fail(source, "date", f"is before {DATE_FLOOR}", "a plausible market date", bad, key)
    if today is not None:
        limit = today + dt.timedelta(days=1)
        bad = frame.filter(pl.col("date") > limit)
        if bad.height:
            raise fail(
                source, "date", f"is after {limit} (today {today})", "no future dates", bad, key
            )


def _check_price_shape(frame: pl.DataFrame, source: str) -> None:
    """high >= low, the close inside [low, high] where both are given, and every price within a
    factor of PRICE_RANGE of its symbol's median in this file (1e300 is no soybean oil price)."""
    key = ["date", "symbol", "open", "high", "low", "close"]
    bad = frame.filter((pl.col("high") < pl.col("low")).fill_null(False))
    if bad.height:
        raise fail(source, "high", "is below 'low'", "high >= low", bad, key)
    outside = (pl.col("close") < pl.col("low")) | (pl.col("close") > pl.col("high"))
    bad = frame.filter(outside.fill_null(False))
    if bad.height:
        raise fail(source, "close", "is outside [low, high]", "low <= close <= high", bad, key)
    for col in MARKET_PRICES:
        ratio = pl.col(col) / pl.col(col).median().over("symbol")
        implausible = (ratio > PRICE_RANGE) | (ratio < 1 / PRICE_RANGE)
        bad = frame.filter(implausible.fill_null(False))
        if bad.height:
            raise fail(
                source,
                col,
                f"is more than {PRICE_RANGE:g}x away from its symbol's median in this file",
                "prices of one series on one scale (a unit or decimal error?)",
                bad,
                ["date", "symbol", col],
            )


def normalize_market(
    frame: pl.DataFrame, source: str, today: dt.date | None = None
) -> pl.DataFrame:
    """Validate one raw market frame and return it typed in the contract's column order.
    ``today``: the day the data is read; rows dated more than a day after it are refused."""
    base_checks(frame, source, MARKET_REQUIRED, "market")
    frame = frame.with_row_index(ROW_COL, offset=1)
    frame = _parse_dates(frame, source)
    check_dates(frame, source, today)
    frame = frame.with_columns(pl.col("symbol").cast(pl.String).str.strip_chars())
    bad = frame.filter(pl.col("symbol").is_null() | (pl.col("symbol") == ""))
    if bad.height:
        raise fail(source, "symbol", "is empty", "a symbol such as ZL", bad, ["date", "symbol"])
    for col in MARKET_OPTIONAL:
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(col))
    frame = parse_numbers(frame, source, [*MARKET_PRICES, "volume"], ["date", "symbol"])
    for col in MARKET_PRICES:
        value = pl.col(col)
        invalid = ~value.is_finite() | (value <= 0)
        if col == "close":
            invalid = value.is_null() | invalid
        bad = frame.filter(invalid.fill_null(False))
        if bad.height:
            needed = "a finite price > 0" + ("" if col == "close" else " or empty")
            raise fail(
                source,
                col,
                "is missing, non-positive or non-finite",
                needed,
                bad,
                ["date", "symbol", col],
            )
    _check_price_shape(frame, source)
    bad = frame.filter((~pl.col("volume").is_finite() | (pl.col("volume") < 0)).fill_null(False))
    if bad.height:
        raise fail(
            source,
            "volume",
            "is negative or non-finite",
            "a finite volume >= 0 or empty",
            bad,
            ["date", "symbol", "volume"],
        )
    return frame.select(
        *[pl.col(c).cast(t) for c, t in MARKET_SCHEMA.items()],
        pl.lit(source).alias(SOURCE_COL),
        pl.col(ROW_COL),
    )


def normalize_signals(
    frame: pl.DataFrame, source: str, today: dt.date | None = None
) -> pl.DataFrame:
    """Validate one raw signals frame (date, series, value) and return it typed."""
    base_checks(frame, source, SIGNALS_REQUIRED, "signals")
    frame = frame.with_row_index(ROW_COL, offset=1)
    frame = _parse_dates(frame, source)
    check_dates(frame, source, today)
    frame = frame.with_columns(pl.col("series").cast(pl.String).str.strip_chars())
    bad = frame.filter(pl.col("series").is_null() | (pl.col("series") == ""))
    if bad.height:
        raise fail(source, "series", "is empty", "a series name", bad, ["date", "series"])
    frame = parse_numbers(frame, source, ["value"], ["date", "series"])
    bad = frame.filter(~pl.col("value").is_finite().fill_null(False))
    if bad.height:
        raise fail(
            source,
            "value",
            "is missing or non-finite",
            "a finite number",
            bad,
            ["date", "series", "value"],
        )
    return frame.select(
        *[pl.col(c).cast(t) for c, t in SIGNALS_SCHEMA.items()],
        pl.lit(source).alias(SOURCE_COL),
        pl.col(ROW_COL),
    )


def _check_duplicates(frame: pl.DataFrame, key: Sequence[str], kind: str) -> None:
    dup = frame.filter(pl.struct(list(key)).is_duplicated()).sort([*key, SOURCE_COL, ROW_COL])
    if dup.height:
        lines = [
            f"    {rec[SOURCE_COL]} row {rec[ROW_COL]}: "
            + ", ".join(f"{k}={_show(rec[k])}" for k in key)
            for rec in dup.head(2 * MAX_EXAMPLES).iter_rows(named=True)
        ]
        files = sorted(set(dup[SOURCE_COL].to_list()))
        raise DataContractError(
            f"{', '.join(files)}: duplicated ({', '.join(key)}) in the raw {kind} data: "
            f"{dup.height} rows share a key; expected one row per ({', '.join(key)}).\n"
            + "\n".join(lines)
        )


def combine_market(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Concatenate normalized market frames, reject duplicate (date, symbol) across all files."""
    if not frames:
        raise DataContractError("no raw market files were given; expected at least one")
    combined = pl.concat(frames, how="vertical")
    _check_duplicates(combined, ("date", "symbol"), "market")
    by_case = (
        combined.group_by(pl.col("symbol").str.to_uppercase().alias("upper"))
        .agg(pl.col("symbol").unique().sort(), pl.col(SOURCE_COL).unique().sort())
        .filter(pl.col("symbol").list.len() > 1)
    )
    if by_case.height:
        clash = by_case.row(0, named=True)
        raise DataContractError(
            f"{', '.join(clash[SOURCE_COL])}: column 'symbol': {clash['symbol']} differ only in "
            "case; expected one spelling per series (symbols name columns and features)"
        )
    return combined.drop(SOURCE_COL, ROW_COL).sort("symbol", "date")


def combine_signals(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Concatenate normalized signal frames, reject duplicate (date, series)."""
    if not frames:
        return pl.DataFrame(schema=SIGNALS_SCHEMA)
    combined = pl.concat(frames, how="vertical")
    _check_duplicates(combined, ("date", "series"), "signals")
    return combined.drop(SOURCE_COL, ROW_COL).sort("series", "date")


def check_market_coverage(
    market: pl.DataFrame, target_symbol: str, source: str = "the raw market data"
) -> None:
    """The target must exist, and every other symbol must overlap the target's date range.
    ``source`` names the file(s) the market came from, for the messages."""
    symbols = sorted(market["symbol"].unique().to_list())
    if target_symbol not in symbols:
        raise DataContractError(
            f"{source}: column 'symbol': unknown target symbol {target_symbol!r}; the raw "
            f"market data holds {symbols}; expected the target among them (set target_symbol)"
        )
    ranges = market.group_by("symbol").agg(
        pl.col("date").min().alias("first"), pl.col("date").max().alias("last")
    )
    target = ranges.filter(pl.col("symbol") == target_symbol).row(0, named=True)
    apart = ranges.filter(
        (pl.col("symbol") != target_symbol)
        & ((pl.col("last") < target["first"]) | (pl.col("first") > target["last"]))
    ).sort("symbol")
    if apart.height:
        detail = "; ".join(
            f"{r['symbol']} {r['first']}..{r['last']}" for r in apart.iter_rows(named=True)
        )
        raise DataContractError(
            f"{source}: column 'symbol': symbol(s) {apart['symbol'].to_list()} have no dates "
            "overlapping "
            f"the target {target_symbol} ({target['first']}..{target['last']}): {detail}; "
            "expected every series to share dates with the target"
        )


def check_signal_names(
    signals: pl.DataFrame,
    market: pl.DataFrame,
    target_symbol: str,
    source: str,
    curve_columns: Sequence[str] = (),
) -> None:
    """A signal series may not take a name the market panel uses (``{SYMBOL}_close``, the
    target's ``open/high/low/volume``, the ``curve_columns`` of a curve, ``date``), in any case,
    nor end in ``_close`` or ``_roll_adjusted``: features treat such a column as a market close
    (or a curve's series) and would build a second set under the same names."""
    reserved = {"date"} | {f"{s}_close".lower() for s in market["symbol"].unique().to_list()}
    reserved |= {f"{target_symbol}_{f}".lower() for f in ("open", "high", "low", "volume")}
    reserved |= {c.lower() for c in curve_columns}
    names = sorted(signals["series"].unique().to_list())
    ends = ("_close", "_roll_adjusted")
    bad = [n for n in names if n.lower() in reserved or n.lower().endswith(ends)]
    if bad:
        raise DataContractError(
            f"{source}: column 'series': signal series {bad} take a name of the market panel "
            "or end in '_close' or '_roll_adjusted' (reserved for market closes and curve "
            "series); expected other names"
        )
