"""``cbi export``: build the training exports (the same steps as the data assets)."""

from __future__ import annotations

import argparse
import time

from cbi_pipeline.cli.arguments import (
    add_horizon,
    add_setting,
    add_sources,
    horizons,
    settings_from_args,
)
from cbi_pipeline.core.export import summarize_export
from cbi_pipeline.steps.data import (
    build_exports,
    check_buildable,
    load_raw,
    write_panel,
    write_raw,
)
from cbi_pipeline.store.root import DataRoot

NAME = "export"
HELP = "build training exports (same code as the asset)"
DESCRIPTION = """\
Load the raw market (the sample market, or --market files validated against the raw contract),
build the aligned panel and one training export per horizon under the data root:
raw/market.parquet, raw/signals.parquet, exports/market_panel.parquet and
exports/zl_training_{surface}_allhistory_{h}.parquet with exports/feature_catalog.json.
Everything is validated and written in full first, then swapped in together: a bad input or a
failure at any point leaves the previous set as it was.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_horizon(p, "all")
    add_setting(p, "--surface", "surface")
    add_sources(p)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    root = DataRoot(settings.data_root)
    start = time.perf_counter()
    for path in root.finish_swap():
        print(f"finished the interrupted replacement of {path}")
    raw = load_raw(settings, horizons=horizons(args.horizon))
    panel = check_buildable(raw, settings)
    # Raw copies, panel, exports and catalog: all written, then swapped in together.
    with root.batch() as batch:
        write_raw(root, raw, batch)
        write_panel(root, panel, batch)
        results = build_exports(root, settings, horizons(args.horizon), panel, batch)
    for result in results:
        if result.gap_report():
            print(f"warning: {result.gap_report()}")
        s = summarize_export(result.frame, result.horizon)
        print(
            f"{result.horizon:>4}: {s.rows} rows {s.first_date}..{s.last_date}, "
            f"{s.features} features, {s.labelled_rows} labelled -> {result.path}"
        )
    print(f"built from {raw.source} in {time.perf_counter() - start:.1f}s")
    return 0
