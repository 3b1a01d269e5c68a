"""``cbi correlations``: build or update the correlation cache and print what it holds."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import polars as pl

from cbi_pipeline.cli.arguments import add_setting, settings_from_args
from cbi_pipeline.core.tables import text_table
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps.correlations import (
    build_partition,
    cache_status,
    join_correlation_features,
)
from cbi_pipeline.steps.data import is_export, load_panel_file
from cbi_pipeline.store.correlations import list_partitions, read_partition
from cbi_pipeline.store.root import DataRoot, read_parquet
from cbi_pipeline.store.sources import read_table

NAME = "correlations"
HELP = "build or update the correlation cache and print key pairs and staleness"

DESCRIPTION = """\
Build or update the correlation cache (exports/cache/{as_of}/ under the data root) and print
the key pairs' latest rolling correlations, the top-k candidates and the cache's staleness.

FILE (--data-path) is a raw market file in the long contract shape (date, symbol, close,
...; parquet or CSV, validated like `cbi export --market`), from which the panel is built with
the optional --signals; a market panel (wide: date, <TARGET>_close, other <SYMBOL>_close and
signal columns), e.g. exports/market_panel.parquet; or a training export
(exports/zl_training_prod_allhistory_1m.parquet): its correlation features are computed from the
market panel beside it and compared with the ones it stores. Without --data-path the data
root's market panel is used. Nothing but the cache is written.

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
    if args.data_path and is_export(read_table(Path(args.data_path)).columns):
        print_export_features(root, settings, panel, Path(args.data_path))
    partitions = list_partitions(root)
    print(
        f"after: {status.describe()}; {len(partitions)} partition(s) on disk, "
        f"newest {partitions[0].as_of if partitions else '-'}"
    )
    return 0


def print_export_features(
    root: DataRoot, settings: Settings, panel: pl.DataFrame, path: Path
) -> None:
    """The export's correlation features from the cache, at its last date, beside the values it
    stores (a differing stored value means the export was built from another cache)."""
    export = read_table(path).with_columns(pl.col("date").cast(pl.Date))
    computed, catalog = join_correlation_features(root, settings, panel, export.select("date"), [])
    names = [d.name for d in catalog]
    last = export["date"].max()
    assert isinstance(last, dt.date)
    now = computed.filter(pl.col("date") == last)
    stored = export.filter(pl.col("date") == last)
    rows = []
    for name in names:
        value = now[name].item()
        kept = stored[name].item() if name in stored.columns else None
        rows.append({"feature": name, "computed": value, "in_export": kept})
    differ = [
        r["feature"]
        for r in rows
        if (r["computed"] is None) != (r["in_export"] is None)
        or (r["computed"] is not None and abs(r["computed"] - r["in_export"]) > 1e-9)
    ]
    print(f"correlation features of {path} at {last} ({len(names)}):")
    print(text_table(pl.DataFrame(rows, infer_schema_length=None)))
    print(
        "the export stores the same values"
        if not differ
        else f"{len(differ)} differ from the export's (built from another cache?): {differ[:5]}"
    )
