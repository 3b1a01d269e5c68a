"""The truncation test's recomputed rows are computed once per raw data and reused exactly."""

import shutil
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from cbi_pipeline.settings import Settings
from cbi_pipeline.steps import data as tasks
from cbi_pipeline.steps import diagnostics as diagnosing
from cbi_pipeline.store.root import DataRoot
from cbi_pipeline_tests.conftest import build_tiny_exports, tiny_training_settings

HORIZONS = ("1w", "1m")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Settings, Path]:
    settings = tiny_training_settings(tmp_path_factory.mktemp("truncation_cache"))
    build_tiny_exports(settings, HORIZONS)
    return settings, Path(settings.data_root)


@pytest.fixture
def setup(built, tmp_path, monkeypatch) -> tuple[Settings, DataRoot, list[int]]:
    """A fresh copy of the built root, and a counter of the recomputations run."""
    settings, source = built
    shutil.copytree(source, tmp_path / "root")
    settings = replace(settings, data_root=str(tmp_path / "root"))
    calls: list[int] = []
    real = diagnosing.recompute_at_dates

    def counted(market, signals, dates, *args, **kwargs):
        calls.append(len(dates))  # one entry per recomputation: how many cut dates it built
        return real(market, signals, dates, *args, **kwargs)

    monkeypatch.setattr(diagnosing, "recompute_at_dates", counted)
    return settings, DataRoot(settings.data_root), calls


def truncation(out: diagnosing.DiagnosticsOutput) -> dict:
    return out.payload["leakage"]["truncation"]


def truncate(root: DataRoot, settings: Settings, horizons=HORIZONS, cache: bool = True):
    """``run_truncation`` over the root's exports and raw data, with its cache or without."""
    exports = {
        h: pl.read_parquet(root.export(f"zl_training_prod_allhistory_{h}.parquet"))
        for h in horizons
    }
    market, signals = tasks.read_raw(root)
    curve = tasks.read_curve(root)
    return diagnosing.run_truncation(
        exports, market, signals, settings, curve=curve, root=root if cache else None
    )


def cache_files(root: DataRoot) -> list[Path]:
    return sorted(root.path("cache", "truncation").glob("*.parquet"))


def test_second_horizon_reuses_the_rows_and_gets_the_same_result(setup):
    settings, root, calls = setup
    first, second = (diagnosing.diagnose_root(root, settings, [h], plot=False)[0] for h in HORIZONS)
    assert len(calls) == 1
    assert truncation(first)["recomputed"] == "computed"
    assert truncation(second)["recomputed"] == "reused"
    assert truncation(second)["status"] == "passed"
    assert len(cache_files(root)) == len(truncation(second)["dates"]) == calls[0]  # one per date
    # the rows the cache hands back are the very rows a recomputation gives
    reused, how = truncate(root, settings)
    fresh, fresh_how = truncate(root, settings, cache=False)
    assert (how, fresh_how, len(calls)) == ("reused", "computed", 2)
    assert reused == fresh
    assert tuple(truncation(second)["dates"]) == reused["1m"].dates
    # and diagnostics with no cache at all write the same truncation report
    shutil.rmtree(root.path("cache"))
    (expected,) = diagnosing.diagnose_root(root, settings, ["1m"], plot=False)
    assert truncation(expected)["recomputed"] == "computed"
    assert {**truncation(second), "recomputed": ""} == {**truncation(expected), "recomputed": ""}


def test_a_changed_price_is_a_new_key_and_a_recompute(setup):
    settings, root, calls = setup
    truncate(root, settings)
    before = cache_files(root)
    market = pl.read_parquet(root.raw_market)
    market = market.with_columns(
        pl.when(pl.int_range(pl.len()) == market.height - 3)
        .then(pl.col("close") * 1.01)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    market.write_parquet(root.raw_market)
    results, how = truncate(root, settings)
    assert (how, len(calls)) == ("computed", 2)
    # Only the cut dates on or after the changed day are rebuilt; the earlier cuts are reused.
    assert 0 < calls[1] < calls[0]
    after = cache_files(root)
    assert set(before) <= set(after)  # the earlier entries are kept (a few nights' worth)
    assert len(set(after) - set(before)) == calls[1]
    assert results == truncate(root, settings, cache=False)[0]


@pytest.mark.parametrize("damage", ["garbage", "other_dates", "missing_row", "edited_value"])
def test_a_damaged_entry_is_recomputed_and_replaced(setup, damage):
    settings, root, calls = setup
    expected, _ = truncate(root, settings)
    path = cache_files(root)[0]
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"PAR1 not a parquet file at all")
    else:
        frame = pl.read_parquet(path)
        if damage == "other_dates":
            frame = frame.with_columns(pl.col("date") - pl.duration(days=1))
        elif damage == "edited_value":  # a valid entry for these dates, one value changed
            frame = frame.with_columns(pl.col("zl_ret_1d") * 2)
        else:
            frame = frame.slice(1)
        frame.write_parquet(path)
    results, how = truncate(root, settings)
    assert (how, calls[1:]) == ("computed", [1])  # that date alone is rebuilt
    assert results == expected
    assert path.read_bytes() == good  # overwritten with the rows recomputed
    assert truncate(root, settings)[1] == "reused"


def test_a_new_day_rebuilds_only_the_cuts_it_moves(setup):
    """Yesterday's raw data (the last day cut off) and then today's: the cut dates that stay put
    are reused, whatever the chunking of the frames they are cut from."""
    settings, root, calls = setup
    exports = [root.export(f"zl_training_prod_allhistory_{h}.parquet") for h in HORIZONS]
    today = {p: pl.read_parquet(p) for p in (root.raw_market, root.raw_signals, *exports)}
    last = pl.read_parquet(root.raw_market)["date"].max()
    for path, frame in today.items():
        frame.filter(pl.col("date") < last).write_parquet(path)
    yesterday, _ = truncate(root, settings)
    for path, frame in today.items():  # read back in several chunks: equal cuts, other chunks
        frame.write_parquet(path, row_group_size=500)
    results, how = truncate(root, settings)
    assert how == "computed" and len(calls) == 2
    moved = set(results["1m"].dates) - set(yesterday["1m"].dates)
    assert 0 < calls[1] == len(moved) < calls[0]
    assert results == truncate(root, settings, cache=False)[0]
