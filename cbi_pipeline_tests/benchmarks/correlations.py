"""Rolling correlations on the default (sample) data: our kernel against pandas and polars.

Run: .venv/bin/python cbi_pipeline_tests/benchmarks/correlations.py [--rounds 7] [--runs 7]

Every contender computes, from the same returns matrix, the rolling Pearson correlation of the
same pairs (every pair within each feature block plus the target's key pairs) over the same
windows (90/180/365 days, min_obs 60/120/244):

- ours: ``core.correlations.kernel.rolling_corr`` (numba, two-stack window sums, float32 out) timed from
  the panel's levels (transform and returns included); ``full build`` is the whole cache of one
  as-of date (rolling series, as-of matrices, last-year series, top-k, cross-block, regimes);
- pandas: ``Series.rolling(w, min_periods=m).corr(other)`` per pair (its fastest form here) and
  ``DataFrame.rolling(w).corr()`` per block (pairwise, as a second figure);
- polars: one ``select`` of ``pl.rolling_corr(a, b, window_size=w, min_samples=m)`` expressions.

Times are medians over rounds that interleave the contenders (the machine may be shared: a load
change then hits all of them), after a warm-up; numba's JIT compile is excluded from them and
reported separately, measured in a child process with an empty numba cache. ``incremental_s`` is
one new day: the partition of the last date built on disk from the previous day's partition
(read, compute, atomic write). ``peak_mb`` is the maximum resident set size of a child process
that loads the panel and runs one full cache build and one incremental update. The ratios divide
the baseline's median by our rolling median; the last line is what CI logs read.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import polars as pl

from cbi_pipeline.core.blocks import BLOCKS
from cbi_pipeline.core.correlations.build import build_from_data
from cbi_pipeline.core.correlations.kernel import rolling_corr, transform_levels
from cbi_pipeline.core.correlations.pairs import pair_set, returns_from_levels
from cbi_pipeline.core.correlations.spec import CorrelationSpec
from cbi_pipeline.core.correlations.state import panel_data
from cbi_pipeline.core.panel import build_market_panel
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps import correlations as store
from cbi_pipeline.steps import data as tasks
from cbi_pipeline.store.correlations import list_partitions, read_partition
from cbi_pipeline.store.root import DataRoot

CHILD_CODE = """
import sys, time
import polars as pl
from cbi_pipeline.steps import correlations as store
from cbi_pipeline.core.correlations.build import build_correlation_cache
from cbi_pipeline.core.correlations.spec import CorrelationSpec
from cbi_pipeline.settings import Settings
from cbi_pipeline.store.root import DataRoot
mode, panel_path, root = sys.argv[1], sys.argv[2], sys.argv[3]
panel = pl.read_parquet(panel_path)
spec = CorrelationSpec()
dates = panel["date"]
if mode == "compile":
    t = time.perf_counter(); build_correlation_cache(panel, spec, dates[-1])
    first = time.perf_counter() - t
    t = time.perf_counter(); build_correlation_cache(panel, spec, dates[-1])
    print(first - (time.perf_counter() - t))
else:
    def hwm_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    settings = Settings(data_root=root)
    build_correlation_cache(panel.head(800), spec, dates[799])  # numba warm
    base = hwm_mb()
    store.build_partition(DataRoot(root), settings, dates[-2], panel)
    store.build_partition(DataRoot(root), settings, dates[-1], panel)
    print(base, hwm_mb())
"""


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def child(mode: str, panel_path: Path, root: Path, env: dict[str, str]) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD_CODE, mode, str(panel_path), str(root)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return [float(x) for x in out.stdout.split()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of timings")
    parser.add_argument("--runs", type=int, default=7, help="runs of the incremental update")
    args = parser.parse_args()

    raw = tasks.load_raw(Settings())
    panel = build_market_panel(raw.market, raw.signals)
    spec = CorrelationSpec()
    dates = panel["date"]
    data = panel_data(panel, spec, dates[-1])
    pairs = pair_set(data.series, spec)
    windows = list(spec.windows)
    min_obs = [spec.min_obs(w) for w in windows]
    names = [s.name for s in data.series]
    n_days, n_pairs = data.dates.size, pairs.index.shape[0]
    rets = returns_from_levels(transform_levels(data.levels, data.series))
    # warm-up: JIT (or load from numba's cache) outside the timed runs
    start = time.perf_counter()
    ours = rolling_corr(rets, pairs.index, windows, min_obs)
    build_from_data(data, spec, dates[-1])
    first_call = time.perf_counter() - start
    print(
        f"data: {n_days} days, {len(names)} series in {len({s.block for s in data.series})} "
        f"blocks, {n_pairs} pairs ({int(pairs.within.sum())} within-block + key pairs) x "
        f"windows {windows}; numba threads {numba.get_num_threads()} ({numba.threading_layer()}), "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        flush=True,
    )

    def ours_rolling() -> np.ndarray:
        r = returns_from_levels(transform_levels(data.levels, data.series))
        return rolling_corr(r, pairs.index, windows, min_obs)

    frame = pd.DataFrame(rets.T, columns=names)

    def pandas_pairs() -> dict[tuple[int, int, int], np.ndarray]:
        out = {}
        for w, m in zip(windows, min_obs, strict=True):
            for a, b in pairs.index.tolist():
                r = frame.iloc[:, a].rolling(w, min_periods=m).corr(frame.iloc[:, b])
                out[(w, a, b)] = r.to_numpy()
        return out

    def pandas_blocks() -> None:
        for w, m in zip(windows, min_obs, strict=True):
            for block in BLOCKS:
                cols = [s.name for s in data.series if s.block == block]
                if len(cols) > 1:
                    frame[cols].rolling(w, min_periods=m).corr()
            for k, (a, b) in enumerate(pairs.index.tolist()):
                if not pairs.within[k]:
                    frame.iloc[:, a].rolling(w, min_periods=m).corr(frame.iloc[:, b])

    pframe = pl.DataFrame({f"s{i}": rets[i] for i in range(len(names))}).fill_nan(None)
    exprs = [
        pl.rolling_corr(pl.col(f"s{a}"), pl.col(f"s{b}"), window_size=w, min_samples=m).alias(
            f"{w}_{a}_{b}"
        )
        for w, m in zip(windows, min_obs, strict=True)
        for a, b in pairs.index.tolist()
    ]
    pd_result = pandas_pairs()
    pl_result = pframe.select(exprs)

    # Rounds interleave the contenders, so that a change in the machine's load (it is shared)
    # hits all of them alike; each figure is the median over rounds of its per-round median.
    def ours_one_thread() -> np.ndarray:
        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return ours_rolling()
        finally:
            numba.set_num_threads(threads)

    contenders: dict[str, Callable[[], object]] = {
        "ours": ours_rolling,
        "ours_1t": ours_one_thread,
        "build": lambda: build_from_data(data, spec, dates[-1]),
        "pandas_pairs": pandas_pairs,
        "pandas_blocks": pandas_blocks,
        "polars": lambda: pframe.select(exprs),
    }
    per_round = {
        "ours": 5,
        "ours_1t": 5,
        "build": 3,
        "pandas_pairs": 1,
        "pandas_blocks": 1,
        "polars": 3,
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            times[name].append(median_time(fn, per_round[name]))
    med = {k: statistics.median(v) for k, v in times.items()}
    t_ours, t_build, t_polars = med["ours"], med["build"], med["polars"]
    t_pandas_pairs, t_pandas_blocks = med["pandas_pairs"], med["pandas_blocks"]
    t_pandas = min(t_pandas_pairs, t_pandas_blocks)

    # agreement on the same pairs and windows
    diff_pd, diff_pl, nan_pd, nan_pl = 0.0, 0.0, 0, 0
    for wi, w in enumerate(windows):
        for k, (a, b) in enumerate(pairs.index.tolist()):
            mine = ours[wi, k].astype(np.float64)
            for ref, kind in ((pd_result[(w, a, b)], "pd"), (pl_result[f"{w}_{a}_{b}"], "pl")):
                ref = np.asarray(ref, dtype=np.float64)
                both = np.isfinite(mine) & np.isfinite(ref)
                worst = float(np.abs(mine[both] - ref[both]).max()) if both.any() else 0.0
                mismatch = int((np.isfinite(mine) != np.isfinite(ref)).sum())
                if kind == "pd":
                    diff_pd, nan_pd = max(diff_pd, worst), nan_pd + mismatch
                else:
                    diff_pl, nan_pl = max(diff_pl, worst), nan_pl + mismatch

    # one new day, on disk: read the previous partition, compute, write atomically
    tmp = Path(tempfile.mkdtemp(prefix="cbi-corr-bench-"))
    try:
        settings = Settings(data_root=str(tmp / "root"))
        root = DataRoot(settings.data_root)
        store.build_partition(root, settings, dates[-2], panel)
        latest = root.correlation_partition(str(dates[-1]))
        inc_times, modes = [], set()
        for _ in range(args.runs):
            shutil.rmtree(latest, ignore_errors=True)
            start = time.perf_counter()
            built = store.build_partition(root, settings, dates[-1], panel)
            inc_times.append(time.perf_counter() - start)
            modes.add((built.mode, built.cache.new_rows))
        t_inc = statistics.median(inc_times)
        base = read_partition(list_partitions(root)[-1])
        t_inc_core = median_time(lambda: build_from_data(data, spec, dates[-1], base), args.runs)

        panel_path = tmp / "panel.parquet"
        panel.write_parquet(panel_path)
        env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp / "numba-cache")}
        (compile_s,) = child("compile", panel_path, tmp / "compile-root", env)
        base_mb, peak_mb = child("memory", panel_path, tmp / "mem-root", dict(os.environ))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    spread = {k: f"{min(v) * 1e3:.0f}-{max(v) * 1e3:.0f}" for k, v in times.items()}
    print(
        f"ours rolling (returns + kernel): {t_ours * 1e3:.1f} ms (median of {args.rounds} "
        f"rounds; round medians {spread['ours']} ms)"
    )
    print(
        f"ours rolling on one thread: {med['ours_1t'] * 1e3:.1f} ms (round medians "
        f"{spread['ours_1t']} ms; pandas is single-threaded)"
    )
    print(f"ours full cache build (everything of one as-of date): {t_build * 1e3:.1f} ms")
    print(
        f"pandas Series.rolling().corr() per pair: {t_pandas_pairs * 1e3:.0f} ms; "
        f"DataFrame.rolling().corr() per block: {t_pandas_blocks * 1e3:.0f} ms "
        f"(rounds {spread['pandas_pairs']} / {spread['pandas_blocks']} ms; the faster form is "
        "the baseline)"
    )
    print(
        f"polars rolling_corr expressions, one select: {t_polars * 1e3:.1f} ms "
        f"(rounds {spread['polars']} ms)"
    )
    print(
        f"agreement: max |ours - pandas| {diff_pd:.1e} ({nan_pd} null-pattern differences), "
        f"max |ours - polars| {diff_pl:.1e} ({nan_pl} null-pattern differences)"
    )
    print(
        f"incremental one day on disk: {t_inc * 1e3:.1f} ms {sorted(modes)}; "
        f"in memory: {t_inc_core * 1e3:.1f} ms"
    )
    print(
        f"numba: first call in this process {first_call:.2f}s; compile with an empty cache "
        f"{compile_s:.2f}s (excluded from the timings)"
    )
    print(
        f"memory: child process peak RSS {peak_mb:.0f} MB, {peak_mb - base_mb:.0f} MB above its "
        f"RSS with the panel loaded and numba warm; this process "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    print(
        f"correlations: vs_pandas={t_pandas / t_ours:.1f}x vs_polars={t_polars / t_ours:.1f}x "
        f"incremental_s={t_inc:.3f} peak_mb={peak_mb:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
