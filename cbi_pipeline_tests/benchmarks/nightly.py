"""The nightly cycle's cost: a full cycle from an empty data root, then the same market plus one
business day and the cycle again (the fold cache reuses what the new day did not change).

Run: .venv/bin/python cbi_pipeline_tests/benchmarks/nightly.py [--runs 3] [--data-root DIR]

The market is the default sample, which ends on the last business day before today; the full
cycle sees it cut one business day earlier (the sample's prefix is the same series, checked
below). Each run prints its full and incremental wall times and, per family, the folds the
incremental cycle reused (model kept; its changed test rows predicted with it) and refitted,
with the refit reasons. With ``--runs N`` the last line holds the medians over the N runs.
Last line: ``nightly: full_s=N incremental_s=N reused_folds=N refit_folds=N peak_mb=N``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from cbi_pipeline.cli.runner import ensure_instance, run_cycle
from cbi_pipeline.core.sample.generator import last_business_day_before
from cbi_pipeline.core.vocabulary import HORIZON_LABELS
from cbi_pipeline.settings import settings_from_env
from cbi_pipeline.store.root import DataRoot

CACHED_FAMILIES = ("lightgbm", "xgboost", "lstm", "gru", "ets")


def cycle(root_dir: Path, end: dt.date) -> float:
    settings = settings_from_env({"data_root": str(root_dir), "sample_end": end.isoformat()})
    instance = ensure_instance(DataRoot(settings.data_root).dagster_home)
    start = time.perf_counter()
    run_cycle(settings, instance)
    return time.perf_counter() - start


def fold_counts(root_dir: Path) -> tuple[Counter[str], dict[str, Counter[str]], Counter[str]]:
    """Folds reused / refitted over every horizon, per family, and the refit reasons."""
    root = DataRoot(root_dir)
    total: Counter[str] = Counter()
    per_family: dict[str, Counter[str]] = {}
    reasons: Counter[str] = Counter()
    for h in HORIZON_LABELS:
        for family in CACHED_FAMILIES:
            manifest = json.loads((root.model_dir(h, family) / "manifest.json").read_text())
            cache = manifest["fold_cache"]
            counts = per_family.setdefault(family, Counter())
            counts["reused"] += cache["reused_folds"] + cache["predicted_folds"]
            counts["predicted"] += cache["predicted_folds"]
            counts["refit"] += cache["refit_folds"]
            final = cache.get("final") or {}
            counts["final_refit"] += final.get("status") == "refit"
            reasons.update(cache["refit"].values())
    for counts in per_family.values():
        total.update(counts)
    return total, per_family, reasons


def one_run(base: Path | None) -> tuple[float, float, Counter[str]]:
    tmp = None if base else Path(tempfile.mkdtemp(prefix="cbi-nightly-bench-"))
    root_dir = base or tmp
    assert root_dir is not None
    today = last_business_day_before(dt.date.today())
    yesterday = last_business_day_before(today)
    try:
        full = cycle(root_dir, yesterday)
        print(f"full cycle to {yesterday}: {full:.1f}s", flush=True)
        incremental = cycle(root_dir, today)
        total, per_family, reasons = fold_counts(root_dir)
        print(f"incremental cycle to {today}: {incremental:.1f}s")
        for family, c in per_family.items():
            print(
                f"  {family:<9} reused {c['reused']:3d} (predicted {c['predicted']}) refit "
                f"{c['refit']:3d}; final models refitted {c['final_refit']}/5"
            )
        for reason, n in reasons.most_common(5):
            print(f"  refit x{n}: {reason}")
        return full, incremental, total
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1, help="repetitions (median reported)")
    parser.add_argument("--data-root", help="empty folder to use for a single run")
    args = parser.parse_args()
    if args.data_root and args.runs != 1:
        parser.error("--data-root holds one run; use --runs 1")
    base = Path(args.data_root) if args.data_root else None
    if base is not None and base.exists() and any(base.iterdir()):
        print(f"{base} is not empty; the benchmark starts from an empty data root")
        return 2
    fulls, incrementals, totals = [], [], []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs}", flush=True)
        full, incremental, total = one_run(base)
        fulls.append(full)
        incrementals.append(incremental)
        totals.append(total)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.runs > 1:
        print(f"full_s per run {[round(f, 1) for f in fulls]}")
        print(f"incremental_s per run {[round(v, 1) for v in incrementals]}")
    print(
        f"nightly: full_s={statistics.median(fulls):.1f} "
        f"incremental_s={statistics.median(incrementals):.1f} "
        f"reused_folds={totals[-1]['reused']} refit_folds={totals[-1]['refit']} "
        f"peak_mb={peak_mb:.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
