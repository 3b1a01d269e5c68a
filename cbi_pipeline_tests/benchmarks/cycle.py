"""The complete nightly cycle from an empty data root, through Dagster, on the default data.

Run: .venv/bin/python cbi_pipeline_tests/benchmarks/cycle.py [--data-root DIR]
Prints wall time per stage, Dagster overhead (run wall time minus the sum of its steps' compute
time, from the instance's step stats) and peak resident memory of this process and its children
(the cycle runs in-process). Last line: ``cycle: wall_s=N peak_mb=N overhead_pct=N folds=N
features=N``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cbi_pipeline.cli.runner import ensure_instance, run_cycle
from cbi_pipeline.core.tables import text_table
from cbi_pipeline.settings import settings_from_env
from cbi_pipeline.steps.evaluation import gate_table
from cbi_pipeline.store.root import DataRoot


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", help="empty folder to use (default: a temp dir, removed)")
    args = parser.parse_args()
    tmp = None if args.data_root else tempfile.mkdtemp(prefix="cbi-cycle-bench-")
    root_dir = Path(args.data_root or tmp or "")
    if root_dir.exists() and any(root_dir.iterdir()):
        print(f"{root_dir} is not empty; the benchmark starts from an empty data root")
        return 2
    try:
        settings = settings_from_env({"data_root": str(root_dir)})
        root = DataRoot(settings.data_root)
        instance = ensure_instance(root.dagster_home)
        runs: list[tuple[str, str | None, float]] = []
        start = time.perf_counter()
        report = run_cycle(settings, instance, on_run=lambda s, k, sec: runs.append((s, k, sec)))
        wall = time.perf_counter() - start
        compute = 0.0
        run_wall = 0.0
        for run_id in report.run_ids:
            stats = instance.get_run_stats(run_id)
            run_wall += (stats.end_time or 0.0) - (stats.start_time or 0.0)
            for step in instance.get_run_step_stats(run_id):
                if step.end_time and step.start_time:
                    compute += step.end_time - step.start_time
        overhead_pct = 100.0 * (wall - compute) / wall
        for stage, seconds in report.stage_seconds.items():
            print(f"stage {stage:<13} {seconds:8.1f}s")
        print(
            f"runs {len(report.run_ids)}: run wall {run_wall:.1f}s, step compute {compute:.1f}s, "
            f"cycle wall {wall:.1f}s"
        )
        folds, features = {}, 0
        for h in ("1w", "1m", "3m", "6m", "12m"):
            manifest = json.loads((root.model_dir(h, "lightgbm") / "manifest.json").read_text())
            folds[h] = len(manifest["folds"])
            features = manifest["feature_selection"]["candidates"]
        print(f"folds per horizon {folds}; features per export {features}")
        print(text_table(gate_table(root)))
        if report.failed_checks:
            print(
                "failing checks: "
                + "; ".join(f"{k}: {', '.join(v)}" for k, v in report.failed_checks.items())
            )
        self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        peak_mb = max(self_mb, child_mb)
        print(
            f"cycle: wall_s={wall:.1f} peak_mb={peak_mb:.0f} overhead_pct={overhead_pct:.1f} "
            f"folds={sum(folds.values())} features={features}"
        )
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
