"""Read raw market and signal files (parquet or CSV, paths or globs) into validated frames."""

from __future__ import annotations

import csv
import datetime as dt
import glob
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from cbi_pipeline.core.contracts import (
    DataContractError,
    combine_market,
    combine_signals,
    normalize_market,
    normalize_signals,
)
from cbi_pipeline.core.curves.contract import combine_curves, normalize_curve


def expand_paths(patterns: Sequence[str], kind: str) -> list[Path]:
    """Expand paths and globs; a pattern that matches nothing is an error."""
    files: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        matches = [m for m in matches if Path(m).is_file()]
        if not matches:
            raise DataContractError(f"{pattern}: no {kind} file found at this path or glob")
        files.extend(Path(m) for m in matches)
    return files


def check_header(path: Path) -> None:
    """A CSV header naming a column twice is refused (a reader would keep one and rename or drop
    the other silently)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle), [])
    names = [h.strip() for h in header]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        counts = ", ".join(f"{n!r} {names.count(n)} times" for n in dups)
        raise DataContractError(
            f"{path}: the header names column(s) more than once ({counts}); expected each "
            "column once"
        )


def read_table(path: Path) -> pl.DataFrame:
    """Read one CSV (all columns as text, parsed later with row-level errors) or parquet file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix in (".csv", ".txt"):
            if path.stat().st_size == 0:
                raise DataContractError(
                    f"{path}: the file is empty (0 bytes); expected a CSV header and rows"
                )
            check_header(path)
            return pl.read_csv(path, infer_schema=False)
    except DataContractError:
        raise
    except Exception as exc:
        raise DataContractError(f"{path}: could not be read as {suffix[1:]} ({exc})") from exc
    raise DataContractError(f"{path}: unsupported file type {suffix!r}; expected .parquet or .csv")


def load_market_files(patterns: Sequence[str], today: dt.date | None = None) -> pl.DataFrame:
    """Every market file, validated; rows dated after ``today`` (default: the clock's date) by
    more than a day are refused."""
    files = expand_paths(patterns, "market")
    today = today or dt.date.today()
    return combine_market([normalize_market(read_table(f), str(f), today) for f in files])


def load_curve_files(patterns: Sequence[str], today: dt.date | None = None) -> pl.DataFrame:
    """Every futures-curve file, validated against the raw curve contract (``core.curves``)."""
    files = expand_paths(patterns, "curve")
    today = today or dt.date.today()
    return combine_curves(
        [normalize_curve(read_table(f), str(f), today) for f in files], [str(f) for f in files]
    )


def load_signal_files(patterns: Sequence[str], today: dt.date | None = None) -> pl.DataFrame:
    files = expand_paths(patterns, "signals")
    today = today or dt.date.today()
    return combine_signals([normalize_signals(read_table(f), str(f), today) for f in files])
