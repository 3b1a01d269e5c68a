"""The raw futures-curve contract: one row per (date, symbol, contract), validated and typed.

A contract code is a root of 1 to 3 letters or digits, a delivery-month letter (F G H J K M N Q U
V X Z = January .. December) and a 4-digit year: ``ZLF1996`` is soybean oil for January 1996.
``expiry`` is the contract's last trade date. It lies in the delivery month (CBOT grains and
oilseeds) or in the month before it (NYMEX heating oil expires on the last business day of the
month before delivery); any other month is refused as a code or expiry error.

Every failure raises :class:`~cbi_pipeline.core.contracts.DataContractError` in the format of the
market contract: the source (file), the column, the number of offending rows, what was expected,
and example rows numbered from 1 in the file as given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from cbi_pipeline.core.contracts import (
    MAX_EXAMPLES,
    ROW_COL,
    DataContractError,
    base_checks,
    check_dates,
    fail,
    parse_numbers,
)

CURVE_REQUIRED = ("date", "symbol", "contract", "expiry", "close")
CURVE_OPTIONAL = ("volume", "open_interest")
CURVE_KEY = ("date", "symbol", "contract")
MONTH_CODES = "FGHJKMNQUVXZ"  # January .. December
CONTRACT_PATTERN = r"^[A-Z0-9]{1,3}[FGHJKMNQUVXZ][0-9]{4}$"
CURVE_SCHEMA: dict[str, type[pl.DataType]] = {
    "date": pl.Date,
    "symbol": pl.String,
    "contract": pl.String,
    "expiry": pl.Date,
    "close": pl.Float64,
    "volume": pl.Float64,
    "open_interest": pl.Float64,
}
_SHOWN = ["date", "symbol", "contract", "expiry"]


def delivery_month(contract: str) -> tuple[int, int]:
    """(year, month) of a contract code's delivery month: ``ZLF1996`` -> (1996, 1)."""
    if not pl.Series([contract]).str.contains(CONTRACT_PATTERN).item():
        raise ValueError(
            f"contract code {contract!r} is not root + month letter + 4-digit year; expected a "
            f"code such as ZLF1996 (pattern {CONTRACT_PATTERN})"
        )
    return int(contract[-4:]), MONTH_CODES.index(contract[-5]) + 1


def delivery_index(code: pl.Expr) -> pl.Expr:
    """The delivery month of a valid contract code as ``year * 12 + month - 1`` (Int32)."""
    month = code.str.slice(-5, 1).replace_strict(
        {c: i for i, c in enumerate(MONTH_CODES)}, return_dtype=pl.Int32
    )
    return code.str.slice(-4).cast(pl.Int32) * 12 + month


def _month_index(date: pl.Expr) -> pl.Expr:
    return date.dt.year().cast(pl.Int32) * 12 + date.dt.month().cast(pl.Int32) - 1


def _parse_date_column(frame: pl.DataFrame, source: str, column: str) -> pl.DataFrame:
    """A Date, a Datetime (its date) or ISO text; missing or unparsable values are refused."""
    dtype = frame.schema[column]
    if dtype == pl.Date:
        parsed = pl.col(column)
    elif isinstance(dtype, pl.Datetime):
        parsed = pl.col(column).dt.date()
    elif dtype in (pl.String, pl.Null):
        text = pl.col(column).cast(pl.String).str.strip_chars()
        parsed = text.str.to_date("%Y-%m-%d", strict=False)
    else:
        raise DataContractError(
            f"{source}: column {column!r} has type {dtype}; expected a date, a datetime or "
            "ISO-8601 text (YYYY-MM-DD)"
        )
    out = frame.with_columns(parsed.alias("_parsed"))
    bad = out.filter(pl.col("_parsed").is_null())
    if bad.height:
        raise fail(
            source,
            column,
            "is missing or unparsable",
            "ISO dates like 2010-03-31",
            bad,
            _SHOWN,
        )
    return out.with_columns(pl.col("_parsed").alias(column)).drop("_parsed")


def _text_columns(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    frame = frame.with_columns(
        pl.col("symbol").cast(pl.String).str.strip_chars(),
        pl.col("contract").cast(pl.String).str.strip_chars(),
    )
    bad = frame.filter(pl.col("symbol").is_null() | (pl.col("symbol") == ""))
    if bad.height:
        raise fail(source, "symbol", "is empty", "a symbol such as ZL", bad, _SHOWN)
    valid = pl.col("contract").str.contains(CONTRACT_PATTERN).fill_null(False)
    bad = frame.filter(~valid)
    if bad.height:
        raise fail(
            source,
            "contract",
            "is not a contract code",
            "root (1-3 of A-Z, 0-9) + delivery-month letter (F G H J K M N Q U V X Z) + "
            "4-digit year, e.g. ZLF1996",
            bad,
            _SHOWN,
        )
    return frame


def _numbers(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    for col in CURVE_OPTIONAL:
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(col))
    frame = parse_numbers(frame, source, ["close", *CURVE_OPTIONAL], CURVE_KEY)
    close = pl.col("close")
    bad = frame.filter((close.is_null() | ~close.is_finite() | (close <= 0)).fill_null(True))
    if bad.height:
        raise fail(
            source,
            "close",
            "is missing, non-positive or non-finite",
            "a finite price > 0",
            bad,
            [*CURVE_KEY, "close"],
        )
    for col in CURVE_OPTIONAL:
        value = pl.col(col)
        bad = frame.filter((~value.is_finite() | (value < 0)).fill_null(False))
        if bad.height:
            raise fail(
                source,
                col,
                "is negative or non-finite",
                f"a finite {col.replace('_', ' ')} >= 0 or empty",
                bad,
                [*CURVE_KEY, col],
            )
    return frame


def _check_expiries(frame: pl.DataFrame, source: str) -> None:
    """The expiry in the delivery month or the month before; no quote after it; one per code."""
    lag = delivery_index(pl.col("contract")) - _month_index(pl.col("expiry"))
    bad = frame.filter(~lag.is_in([0, 1]))
    if bad.height:
        raise fail(
            source,
            "expiry",
            "is not in the contract code's delivery month or the month before it",
            "the last trade date in the delivery month (CBOT) or the month before (NYMEX "
            "heating oil), e.g. ZLF1996 expiring in January 1996 or December 1995",
            bad,
            _SHOWN,
        )
    bad = frame.filter(pl.col("date") > pl.col("expiry"))
    if bad.height:
        raise fail(
            source,
            "date",
            "is after the contract's expiry",
            "quotes dated on or before the contract's last trade date",
            bad,
            _SHOWN,
        )
    bad = _split_expiries(frame)
    if bad.height:
        raise fail(
            source,
            "expiry",
            "differs within one contract",
            "one expiry per (symbol, contract); the first row of each expiry is shown",
            bad,
            _SHOWN,
        )


def _split_expiries(frame: pl.DataFrame) -> pl.DataFrame:
    """The first row of each expiry of every (symbol, contract) that has more than one."""
    split = pl.col("expiry").n_unique().over("symbol", "contract") > 1
    return (
        frame.filter(split)
        .sort(ROW_COL)
        .unique(["symbol", "contract", "expiry"], keep="first", maintain_order=True)
        .sort("symbol", "contract", ROW_COL)
    )


def normalize_curve(frame: pl.DataFrame, source: str, today: dt.date | None = None) -> pl.DataFrame:
    """Validate one raw curve frame (all text from a CSV, or typed from parquet) and return it
    typed: ``date, symbol, contract, expiry, close, volume, open_interest``, sorted by symbol,
    date and expiry. ``today``: the day the data is read; rows dated more than a day after it
    are refused (an expiry may lie in the future)."""
    base_checks(frame, source, CURVE_REQUIRED, "curve")
    frame = frame.with_row_index(ROW_COL, offset=1)
    frame = _parse_date_column(frame, source, "date")
    frame = _parse_date_column(frame, source, "expiry")
    check_dates(frame, source, today)
    frame = _text_columns(frame, source)
    frame = _numbers(frame, source)
    _check_expiries(frame, source)
    bad = frame.filter(pl.struct(list(CURVE_KEY)).is_duplicated()).sort([*CURVE_KEY, ROW_COL])
    if bad.height:
        raise fail(
            source,
            "contract",
            "is duplicated for one (date, symbol)",
            "one row per (date, symbol, contract)",
            bad,
            _SHOWN,
        )
    return frame.select(*[pl.col(c).cast(t) for c, t in CURVE_SCHEMA.items()]).sort(
        "symbol", "date", "expiry", "contract"
    )


def _cross_file(rows: pl.DataFrame, what: str, expected: str, key: Sequence[str]) -> str:
    files = sorted(set(rows["_file"].to_list()))
    shown = rows.head(2 * MAX_EXAMPLES)
    lines = [
        f"    {rec['_file']}: " + ", ".join(f"{k}={rec[k]}" for k in key)
        for rec in shown.iter_rows(named=True)
    ]
    more = f"\n    ... and {rows.height - shown.height} more" if rows.height > shown.height else ""
    return (
        f"{', '.join(files)}: {what} in {rows.height} row(s) of the raw curve data; "
        f"expected {expected}.\n" + "\n".join(lines) + more
    )


def combine_curves(frames: Sequence[pl.DataFrame], sources: Sequence[str]) -> pl.DataFrame:
    """Concatenate normalized curve frames (``sources[i]`` names ``frames[i]``); a (date,
    symbol, contract) in two files, or one contract with two expiries across files, is refused
    naming the files."""
    if not frames:
        raise DataContractError("no raw curve files were given; expected at least one")
    if len(frames) != len(sources):
        raise ValueError(f"{len(frames)} curve frames but {len(sources)} source names")
    combined = pl.concat(
        [f.with_columns(pl.lit(s).alias("_file")) for f, s in zip(frames, sources, strict=True)],
        how="vertical",
    )
    dup = combined.filter(pl.struct(list(CURVE_KEY)).is_duplicated()).sort([*CURVE_KEY, "_file"])
    if dup.height:
        raise DataContractError(
            _cross_file(
                dup,
                "column 'contract': duplicated (date, symbol, contract)",
                "one row per (date, symbol, contract) across all files",
                CURVE_KEY,
            )
        )
    split = combined.filter(pl.col("expiry").n_unique().over("symbol", "contract") > 1)
    if split.height:
        rows = split.unique(["symbol", "contract", "expiry", "_file"]).sort(
            "symbol", "contract", "expiry", "_file"
        )
        raise DataContractError(
            _cross_file(
                rows,
                "column 'expiry': one contract has different expiries",
                "one expiry per (symbol, contract) across all files",
                ("symbol", "contract", "expiry"),
            )
        )
    return combined.drop("_file").sort("symbol", "date", "expiry", "contract")
