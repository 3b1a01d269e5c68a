"""``cbi correlations``: build or update the correlation cache and print what it holds."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import polars as pl

from cbi_pipeline.core.contracts import DataContractError, check_market_coverage, combine_signals
from cbi_pipeline.core.panel import build_market_panel, close_column
from cbi_pipeline.report import text_table
from cbi_pipeline.settings import Settings, settings_from_env
from cbi_pipeline.sources import load_market_files, load_signal_files, read_table
from cbi_pipeline.storage import DataRoot, read_parquet

DESCRIPTION = """\
Build or update the correlation cache (exports/cache/{as_of}/ under the data root) and print
the key pairs' latest rolling correlations, the top-k candidates and the cache's staleness.

FILE (--data-path) is either a raw market file in the long contract shape (date, symbol, close,
...; parquet or CSV, validated like `cbi export --market`), from which the panel is built with
the optional --signals, or a market panel (wide: date, <TARGET>_close, other <SYMBOL>_close and
signal columns), e.g. exports/market_panel.parquet. Without --data-path the data root's market
panel is used. Nothing but the cache is written.

The freshest partition built from exactly this data is used when it is at most --cache-max-age
calendar days behind the data's last date; otherwise (or with --as-of / --full) a partition is
built, extending the newest earlier partition when the data up to it is unchanged.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-path", metavar="FILE", help="raw market file or market panel")
    p.add_argument("--signals", nargs="+", metavar="PATH", help="raw signal files (raw FILE only)")
    p.add_argument(
        "--data-root", help="data root holding exports/cache (default: $CBI_DATA_ROOT or data)"
    )
    p.add_argument("--target", help="target symbol (default ZL)")
    p.add_argument("--regimes", help="JSON regime calendar replacing the default")
    p.add_argument(
        "--cache-max-age",
        type=int,
        metavar="DAYS",
        help="days a partition may lag the data's last date before it is stale (default 7)",
    )
    p.add_argument("--as-of", help="build the partition of this date (YYYY-MM-DD)")
    p.add_argument("--full", action="store_true", help="rebuild from scratch, no extension")


def load_panel(path: Path, settings: Settings, signal_paths: list[str] | None) -> pl.DataFrame:
    """A raw market file (long) turned into the panel, or a panel file as it is."""
    frame = read_table(path)
    target = close_column(settings.target_symbol)
    if {"symbol", "close"} <= set(frame.columns):
        market = load_market_files([str(path)])
        check_market_coverage(market, settings.target_symbol)
        signals = load_signal_files(signal_paths) if signal_paths else combine_signals([])
        return build_market_panel(market, signals, settings.panel_spec())
    if "date" in frame.columns and target in frame.columns:
        if signal_paths:
            raise DataContractError(f"{path}: --signals only applies to a raw market file")
        if frame.schema["date"] != pl.Date:
            try:
                frame = frame.with_columns(pl.col("date").str.to_date("%Y-%m-%d"))
            except Exception as exc:
                raise DataContractError(f"{path}: column 'date' is not YYYY-MM-DD ({exc})") from exc
        for col in frame.columns:
            if col != "date":
                try:
                    frame = frame.with_columns(pl.col(col).cast(pl.Float64))
                except Exception as exc:
                    raise DataContractError(
                        f"{path}: column {col!r} is not numeric ({exc})"
                    ) from exc
        return frame
    raise DataContractError(
        f"{path}: expected a raw market file (columns date, symbol, close) or a market panel "
        f"(columns date, {target}, ...); got columns {frame.columns[:8]}"
    )


def cmd_correlations(args: argparse.Namespace) -> int:
    from cbi_pipeline import correlation_store as store

    settings = settings_from_env(
        {
            "data_root": args.data_root,
            "target_symbol": args.target,
            "regimes_path": args.regimes,
            "cache_max_age_days": args.cache_max_age,
        }
    )
    if settings.cache_max_age_days < 0:
        raise ValueError(f"--cache-max-age must be >= 0, got {settings.cache_max_age_days}")
    root = DataRoot(settings.data_root)
    if args.data_path:
        panel = load_panel(Path(args.data_path), settings, args.signals)
        source = args.data_path
    else:
        panel = read_parquet(root.market_panel, "market_panel (or pass --data-path)")
        source = str(root.market_panel)
    last = panel["date"].max()
    assert isinstance(last, dt.date)
    status = store.cache_status(root, settings, panel)
    print(f"data: {source}, {panel.height} rows to {last}; cache: {root.correlation_cache}")
    print(f"before: {status.describe()}")
    if args.as_of or args.full or status.stale:
        as_of = dt.date.fromisoformat(args.as_of) if args.as_of else last
        build = store.build_partition(root, settings, as_of, panel, full=args.full)
        print(
            f"built {build.info.as_of}: {build.mode} ({build.reason}), "
            f"{build.cache.new_rows} new rows in {build.seconds:.2f}s -> {build.info.path}"
        )
        cache = build.cache
        status = store.cache_status(root, settings, panel)
    else:
        assert status.partition is not None
        cache = store.read_partition(status.partition)
        print(f"using {status.partition.path} (no rebuild needed)")
    key = cache.matrices.filter(pl.col("key")).pivot(on="window", index=["a", "b"], values="corr")
    print(f"key pairs at {cache.last_date} (rolling correlation of returns, by window in days):")
    print(text_table(key.rename({c: f"{c}d" for c in key.columns if c.isdigit()})))
    print(f"top-{settings.correlation_top_k} candidates per block by |corr with the target|:")
    print(text_table(cache.candidates))
    partitions = store.list_partitions(root)
    print(
        f"after: {status.describe()}; {len(partitions)} partition(s) on disk, "
        f"newest {partitions[0].as_of if partitions else '-'}"
    )
    return 0
