"""``cbi correlations``: build or update the correlation cache and print what it holds."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import polars as pl

from cbi_pipeline.cli.arguments import add_setting, settings_from_args
from cbi_pipeline.core.tables import text_table
from cbi_pipeline.steps.correlations import build_partition, cache_status
from cbi_pipeline.steps.data import load_panel_file
from cbi_pipeline.store.correlations import list_partitions, read_partition
from cbi_pipeline.store.root import DataRoot, read_parquet

NAME = "correlations"
HELP = "build or update the correlation cache and print key pairs and staleness"

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
    add_setting(p, "--data-root", "data_root")
    add_setting(p, "--target", "target_symbol")
    add_setting(p, "--regimes", "regimes_path")
    add_setting(p, "--cache-max-age", "cache_max_age_days", metavar="DAYS")
    p.add_argument("--as-of", help="build the partition of this date (YYYY-MM-DD)")
    p.add_argument("--full", action="store_true", help="rebuild from scratch, no extension")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if settings.cache_max_age_days < 0:
        raise ValueError(f"--cache-max-age must be >= 0, got {settings.cache_max_age_days}")
    root = DataRoot(settings.data_root)
    if args.data_path:
        panel = load_panel_file(Path(args.data_path), settings, args.signals)
        source = args.data_path
    else:
        panel = read_parquet(root.market_panel, "market_panel (or pass --data-path)")
        source = str(root.market_panel)
    last = panel["date"].max()
    assert isinstance(last, dt.date)
    status = cache_status(root, settings, panel)
    print(f"data: {source}, {panel.height} rows to {last}; cache: {root.correlation_cache}")
    print(f"before: {status.describe()}")
    if args.as_of or args.full or status.stale:
        as_of = dt.date.fromisoformat(args.as_of) if args.as_of else last
        build = build_partition(root, settings, as_of, panel, full=args.full)
        print(
            f"built {build.info.as_of}: {build.mode} ({build.reason}), "
            f"{build.cache.new_rows} new rows in {build.seconds:.2f}s -> {build.info.path}"
        )
        cache = build.cache
        status = cache_status(root, settings, panel)
    else:
        assert status.partition is not None
        cache = read_partition(status.partition)
        print(f"using {status.partition.path} (no rebuild needed)")
    key = cache.matrices.filter(pl.col("key")).pivot(on="window", index=["a", "b"], values="corr")
    print(f"key pairs at {cache.last_date} (rolling correlation of returns, by window in days):")
    print(text_table(key.rename({c: f"{c}d" for c in key.columns if c.isdigit()})))
    print(f"top-{settings.correlation_top_k} candidates per block by |corr with the target|:")
    print(text_table(cache.candidates))
    partitions = list_partitions(root)
    print(
        f"after: {status.describe()}; {len(partitions)} partition(s) on disk, "
        f"newest {partitions[0].as_of if partitions else '-'}"
    )
    return 0
