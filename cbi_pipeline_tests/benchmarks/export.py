"""Build all five training exports on the default (sample) data and print wall time and memory.

Run: .venv/bin/python cbi_pipeline_tests/benchmarks/export.py [--runs 3]
Each run starts from an empty data root and covers sample generation, validation, the panel,
features and the five atomic parquet writes. The figure printed is the median over runs; peak
memory is the process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time

from cbi_pipeline.core.vocabulary import HORIZON_LABELS
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps import data as tasks
from cbi_pipeline.store.root import DataRoot


def one_run() -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory(prefix="cbi-export-bench-") as tmp:
        settings = Settings(data_root=tmp)
        root = DataRoot(tmp)
        start = time.perf_counter()
        tasks.write_raw(root, tasks.load_raw(settings))
        panel = tasks.build_panel(root, settings)
        results = tasks.build_exports(root, settings, HORIZON_LABELS, panel=panel)
        wall = time.perf_counter() - start
    return wall, len(results[0].catalog), results[0].frame.height


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    walls = []
    for i in range(args.runs):
        wall, features, rows = one_run()
        walls.append(wall)
        print(f"run {i + 1}: {wall:.2f}s ({features} features, {rows} rows per export)", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"export: wall_s={statistics.median(walls):.2f} peak_mb={peak_mb:.0f} "
        f"features={features} rows={rows}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
