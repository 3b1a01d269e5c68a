"""Time the pre-training diagnostics for all five horizons on the default data.

Run from the repository root:

    .venv/bin/python cbi_pipeline_tests/benchmarks/diagnostics.py [--data-root DIR] [--repeats 3]
        [--market FILE ...]

Without ``--data-root`` the exports are built into a temporary root from the default data (the
sample market, or ``--market`` files) and the export build is timed once as the baseline. Then,
after one untimed warm-up (imports, numba's compiled-kernel cache), ``diagnose_root`` runs for
all five horizons ``--repeats`` times (the truncation cut builds are shared across horizons, as
``cbi diagnostics`` does) and once per single horizon (what one Dagster partition does). Figures
are medians; the last line is ``diagnostics: wall_s=N`` (all five horizons, target <= 10 s).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

from cbi_pipeline.core.export import export_filename
from cbi_pipeline.core.vocabulary import HORIZON_LABELS
from cbi_pipeline.settings import Settings, settings_from_env
from cbi_pipeline.steps import data as tasks
from cbi_pipeline.steps.diagnostics import diagnose_root
from cbi_pipeline.store.root import DataRoot


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs


def build_exports(settings: Settings) -> float:
    root = DataRoot(settings.data_root)
    start = time.perf_counter()
    raw = tasks.load_raw(settings)
    tasks.write_raw(root, raw)
    panel = tasks.build_panel(root, settings)
    tasks.build_exports(root, settings, HORIZON_LABELS, panel=panel)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="a root that already holds raw data and exports")
    parser.add_argument("--market", nargs="+", help="raw market files (default: sample market)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data_root = args.data_root or tempfile.mkdtemp(prefix="cbi_bench_diag_")
    settings = settings_from_env({"data_root": data_root, "market_paths": args.market})
    root = DataRoot(data_root)
    export_s = None
    if args.data_root is None:
        export_s = build_exports(settings)
    missing = [
        h
        for h in HORIZON_LABELS
        if not root.export(export_filename(settings.target_symbol, settings.surface, h)).exists()
    ]
    if missing:
        raise SystemExit(f"{data_root}: no export for {missing}; run cbi export first")

    def fresh(horizons: list[str], plot: bool = True) -> object:
        """Diagnostics with the truncation rows recomputed (their cache removed first)."""
        shutil.rmtree(root.path("cache", "truncation"), ignore_errors=True)
        return diagnose_root(root, settings, horizons, plot=plot)

    warm_start = time.perf_counter()
    outputs = diagnose_root(root, settings, HORIZON_LABELS)
    warm_s = time.perf_counter() - warm_start
    all_s, runs = timed(lambda: fresh(list(HORIZON_LABELS)), args.repeats)
    single_s, _ = timed(lambda: fresh(["1m"]), args.repeats)
    reused_s, _ = timed(lambda: diagnose_root(root, settings, ["1m"]), args.repeats)
    no_plot_s, _ = timed(lambda: fresh(list(HORIZON_LABELS), plot=False), args.repeats)

    first = outputs[0].payload
    print(f"data: {settings.market_paths or 'sample market'} -> {data_root}")
    print(
        f"exports: {first['rows']} rows {first['first_date']}..{first['last_date']}, "
        f"{first['features']} features"
    )
    for o in outputs:
        p = o.payload
        leak = p["leakage"]
        closest = leak["screen"]["closest"][:1]
        near = f"{closest[0]['feature']} {closest[0]['future_corr']:.3f}" if closest else "-"
        print(
            f"  {p['horizon']:>4}: passed={p['passed']} truncation={leak['truncation']['status']} "
            f"canary={leak['canary']['passed']} suspects={len(leak['screen']['suspects'])} "
            f"flagged_missing={len(p['missing_data']['flagged'])} closest={near}"
        )
    if export_s is not None:
        print(f"baseline export build (all horizons, once): {export_s:.2f}s")
    print(f"warm-up run (untimed in the median): {warm_s:.2f}s")
    print(f"all five horizons, runs: {', '.join(f'{r:.2f}' for r in runs)}")
    print(f"all five horizons without plots: {no_plot_s:.2f}s")
    print(f"one horizon (one Dagster partition, truncation included): {single_s:.2f}s")
    print(
        f"one horizon after another horizon's run (truncation rows reused from the cache): "
        f"{reused_s:.2f}s"
    )
    if export_s is not None:
        print(f"ratio diagnostics / export build: {all_s / export_s:.2f}")
    print(f"diagnostics: wall_s={all_s:.2f}")


if __name__ == "__main__":
    main()
