"""The lag screen's false-alarm rate and its detection limit, measured.

Run from the repository root:

    .venv/bin/python -m cbi_pipeline_tests.benchmarks.leak_screen [--markets 5] [--real FILE]

1. False alarms on honest features: random-walk markets (fat tails, volatility clusters) of
   600, 1500, 4000 and 7000 rows, ``--markets`` seeds each (default 15), 40 random honest
   features per market (past returns, moving-average ratios, rolling volatilities, AR(1) noise;
   random windows), at every horizon (one market per seed and length, so the horizons of a
   market share its features and their alarms are not independent). Prints the share of features flagged and of exports with any alarm; the design
   bound is about ``lag_alpha`` (0.01) per export.
2. The default features of the sample market and of the real file (``--real``, default the
   shared dev file; skipped when absent), every horizon: how many are flagged.
3. The detection limit: into the 1w export of the real file (or the sample), a column
   ``a * r[t+1] + noise`` for a grid of ``a``; prints each one's correlation with the next day's
   return and whether the screen names it, then the smallest correlation caught.
4. Seconds per export (median over the runs above).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from cbi_pipeline.core.leakage.lags import lag_screen
from cbi_pipeline.core.vocabulary import HORIZON_LABELS
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps import data as tasks
from cbi_pipeline.store.root import DataRoot
from cbi_pipeline_tests.conftest import REAL_DATA, random_walk_export

TIMES: list[float] = []


def screened(export: pl.DataFrame, horizon: str) -> list[str]:
    start = time.perf_counter()
    names = lag_screen(export, horizon).names
    TIMES.append(time.perf_counter() - start)
    return names


def exports_of(settings: Settings) -> dict[str, pl.DataFrame]:
    with tempfile.TemporaryDirectory() as tmp:
        root = DataRoot(tmp)
        raw = tasks.load_raw(settings)
        panel = tasks.check_buildable(raw, settings)
        results = tasks.build_exports(root, settings, HORIZON_LABELS, panel)
        return {r.horizon: r.frame for r in results}


def false_alarms(markets: int) -> None:
    features = alarms = exports = flagged_exports = 0
    for n in (600, 1500, 4000, 7000):
        for seed in range(markets):
            for horizon in HORIZON_LABELS:
                export = random_walk_export(n, 1000 * n + seed, horizon)
                names = screened(export, horizon)
                features += 40
                alarms += len(names)
                exports += 1
                flagged_exports += bool(names)
                if names:
                    print(f"  alarm: {n} rows, seed {seed}, {horizon}: {names}")
    print(
        f"honest random features: {alarms}/{features} flagged "
        f"({alarms / features:.2%}); exports with any alarm {flagged_exports}/{exports} "
        f"({flagged_exports / exports:.1%})"
    )


def default_features(name: str, settings: Settings) -> pl.DataFrame:
    exports = exports_of(settings)
    for horizon, export in exports.items():
        names = screened(export, horizon)
        print(
            f"{name} {horizon}: {len(names)} of {export.width - 6} default features flagged {names}"
        )
    return exports["1w"]


def detection_limit(export: pl.DataFrame) -> None:
    rng = np.random.default_rng(11)
    p = export["price"].to_numpy()
    r = np.diff(np.log(p))
    nxt = np.r_[r, np.nan]  # r[t+1] at row t
    sd = float(np.std(r))
    caught = []
    for a in (0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3, 0.5):
        leak = a * nxt + rng.normal(0, sd, p.size)
        ok = np.isfinite(leak)
        corr = float(np.corrcoef(leak[ok], nxt[ok])[0, 1])
        frame = export.with_columns(pl.Series("leak", leak).fill_nan(None))
        hit = "leak" in screened(frame, "1w")
        caught.append((corr, hit))
        print(
            f"  a={a:<5g} corr with the next day's return {corr:.3f}: {'caught' if hit else 'missed'}"
        )
    hits = [c for c, h in caught if h]
    print(
        f"detection limit: smallest correlation caught {min(hits):.3f}"
        if hits
        else "nothing caught"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=15)
    parser.add_argument("--real", type=Path, default=REAL_DATA)
    args = parser.parse_args()
    false_alarms(args.markets)
    sample_1w = default_features("sample", Settings())
    real_1w = None
    if args.real.is_file():
        real_1w = default_features("real", Settings(market_paths=(str(args.real),)))
    else:
        print(f"real file not present at {args.real}: skipped")
    detection_limit(real_1w if real_1w is not None else sample_1w)
    print(f"lag screen: median {statistics.median(TIMES):.2f}s per export over {len(TIMES)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
