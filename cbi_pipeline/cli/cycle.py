"""``cbi cycle``: the whole cycle through Dagster in this process (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
import time

from cbi_pipeline.cli.arguments import add_horizon, add_sources, horizons, settings_from_args
from cbi_pipeline.core.tables import text_table
from cbi_pipeline.core.vocabulary import GATE_CHECKS
from cbi_pipeline.steps.data import export_table
from cbi_pipeline.steps.evaluation import gate_table
from cbi_pipeline.store.foldcache import fold_cache_table
from cbi_pipeline.store.root import DataRoot

NAME = "cycle"
HELP = "run the whole cycle through Dagster (what make demo runs)"
DESCRIPTION = """\
Run the cycle's named jobs (data_job, correlations_job, horizon_job, promotion_job) in the
persistent Dagster instance under <data_root>/dagster_home, in the order of the nightly chain:
data, correlations, then per horizon its training and evaluation and its promotion and forecast.
Prints each run, the exports and the gate table. A failing gate is a result, not an error (its
check warns, the run succeeds, nothing is promoted); failing diagnostics stop that horizon's
training; a step that raises stops the cycle (exit 2).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_horizon(p, "all")
    add_sources(p)


def run(args: argparse.Namespace) -> int:
    from cbi_pipeline.cli import (
        runner,  # dagster and the asset graph: seconds only this command needs
    )

    settings = settings_from_args(args)
    root = DataRoot(settings.data_root)
    instance = runner.ensure_instance(root.dagster_home)
    start = time.perf_counter()
    chosen = horizons(args.horizon)

    def progress(stage: str, key: str | None, seconds: float) -> None:
        print(f"  {stage:<12} {key or '-':<10} done in {seconds:5.1f}s", flush=True)

    inputs = settings.market_paths + settings.curve_paths
    source = "the sample market" if settings.uses_sample else ", ".join(inputs)
    print(f"running the cycle on {source} -> {settings.data_root}", flush=True)
    report = runner.run_cycle(settings, instance, chosen, on_run=progress)
    print(
        f"cycle finished in {time.perf_counter() - start:.1f}s: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in report.stage_seconds.items())
        + f" ({len(report.run_ids)} Dagster runs in {instance.root_directory})"
    )
    print(text_table(export_table(root, settings, chosen)))
    print(
        "fold cache (reused: model and predictions kept; predicted: model kept, its changed test "
        "rows predicted with it; refit: fitted in this cycle, with the reason):"
    )
    print(text_table(fold_cache_table(root, chosen)))
    gate_checks = set(GATE_CHECKS.values())
    for label, checks in report.failed_checks.items():
        gates = [c for c in checks if c in gate_checks]
        blocking = [c for c in checks if c not in gate_checks]
        if blocking:
            print(f"  failing blocking checks in {label} (training skipped): {', '.join(blocking)}")
        if gates:
            print(f"  failed gates in {label} (nothing promoted): {', '.join(gates)}")
    print("gates (a failing gate is a result, not an error):")
    print(text_table(gate_table(root, chosen)))
    return 0
