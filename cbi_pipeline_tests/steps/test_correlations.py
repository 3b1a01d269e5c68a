import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.cli.main import main
from cbi_pipeline.core.correlations.build import key_pair_features
from cbi_pipeline.core.panel import build_market_panel
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps import correlations as steps
from cbi_pipeline.steps import data as tasks
from cbi_pipeline.store import correlations as store
from cbi_pipeline.store.root import DataRoot, write_parquet
from cbi_pipeline_tests.conftest import make_tiny_market, make_tiny_signals


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    return build_market_panel(make_tiny_market(), make_tiny_signals())


def make_root(tmp_path, panel: pl.DataFrame) -> tuple[DataRoot, Settings]:
    root = DataRoot(tmp_path / "root")
    write_parquet(panel, root.market_panel)
    return root, Settings(data_root=str(root.root))


def read_all(info: store.PartitionInfo) -> dict[str, object]:
    out: dict[str, object] = {
        name: pl.read_parquet(info.path / name) for name in store.FRAME_FILES.values()
    }
    with np.load(info.path / store.STATE, allow_pickle=False) as z:
        out.update({k: z[k] for k in z.files})
    return out


def test_a_partition_round_trips_without_pickle_and_leaves_no_temporary_files(tmp_path, panel):
    root, settings = make_root(tmp_path, panel)
    as_of = panel["date"][-1]
    build = steps.build_partition(root, settings, as_of, panel)
    assert build.mode == "full" and build.info.path == root.correlation_partition(str(as_of))
    back = store.read_partition(build.info)
    for attr in ("features", "recent", "matrices", "candidates", "cross_block", "regime_matrices"):
        assert getattr(back, attr).equals(getattr(build.cache, attr), null_equal=True), attr
    np.testing.assert_array_equal(back.state.regime_moments, build.cache.state.regime_moments)
    assert back.catalog == build.cache.catalog and back.series == build.cache.series
    manifest = json.loads((build.info.path / store.MANIFEST).read_text())
    assert manifest["rows"] == 320 and manifest["last_data_date"] == str(as_of)
    assert [p.name for p in root.correlation_cache.iterdir()] == [str(as_of)]
    # rebuilding the same date replaces the folder atomically
    again = steps.build_partition(root, settings, as_of, panel)
    assert again.mode == "incremental" and again.cache.new_rows == 0
    assert [p.name for p in root.correlation_cache.iterdir()] == [str(as_of)]


def test_a_new_partition_extends_the_previous_one_and_equals_a_full_rebuild(tmp_path, panel):
    dates = panel["date"]
    root, settings = make_root(tmp_path / "a", panel)
    first = steps.build_partition(root, settings, dates[290], panel)
    second = steps.build_partition(root, settings, dates[-1], panel)
    assert (second.mode, second.base, second.cache.new_rows) == ("incremental", dates[290], 29)
    other, _ = make_root(tmp_path / "b", panel)
    full = steps.build_partition(other, settings, dates[-1], panel)
    assert full.mode == "full" and first.info.as_of < second.info.as_of
    a, b = read_all(second.info), read_all(full.info)
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], pl.DataFrame):
            assert a[key].equals(b[key], null_equal=True), key
        else:
            np.testing.assert_array_equal(a[key], b[key])


def test_staleness_is_measured_from_the_last_data_date_to_a_fixed_reference(tmp_path, panel):
    root, settings = make_root(tmp_path, panel)
    last = panel["date"][-1]
    info = steps.build_partition(root, settings, last, panel).info
    assert info.age_days(last) == 0 and not info.is_stale(last, 7)
    assert info.age_days(last + dt.timedelta(days=7)) == 7
    assert not info.is_stale(last + dt.timedelta(days=7), 7)
    assert info.is_stale(last + dt.timedelta(days=8), 7)
    status = steps.cache_status(root, settings, panel, reference=last + dt.timedelta(days=8))
    assert status.partition == info and status.stale and status.age_days == 8
    assert "8 days behind" in status.describe() and "stale" in status.describe()
    fresh = steps.cache_status(root, settings, panel, reference=last + dt.timedelta(days=3))
    assert not fresh.stale and "fresh" in fresh.describe()
    # a historical data set does not age by itself: the default reference is its last date
    assert steps.cache_status(root, settings, panel).age_days == 0


def test_a_partition_built_from_other_data_or_settings_is_not_valid(tmp_path, panel):
    root, settings = make_root(tmp_path, panel)
    steps.build_partition(root, settings, panel["date"][-1], panel)
    revised = panel.with_columns(pl.col("ZS_close") * 1.01)
    assert steps.cache_status(root, settings, revised).partition is None
    other = Settings(data_root=settings.data_root, correlation_top_k=1)
    assert steps.cache_status(root, other, panel).partition is None
    assert steps.cache_status(root, settings, panel).partition is not None


def test_a_stale_cache_is_rebuilt_on_demand_from_the_previous_partition(tmp_path, panel):
    root, settings = make_root(tmp_path, panel)
    dates = panel["date"]
    old = dates[-11]  # 14 calendar days before the last date
    steps.build_partition(root, settings, old, panel)
    got = steps.export_correlations(root, settings, panel)
    assert got.rebuilt is not None and got.rebuilt.base == old
    assert got.status.partition is not None and got.status.partition.as_of == dates[-1]
    assert sorted(p.as_of for p in store.list_partitions(root)) == [old, dates[-1]]
    want, _ = key_pair_features(panel, settings.correlation_spec())
    assert got.frame.equals(
        want.select("date", pl.exclude("date").cast(pl.Float64)), null_equal=True
    )


def test_a_fresh_partition_is_used_and_its_missing_days_computed_from_its_state(tmp_path, panel):
    root, settings = make_root(tmp_path, panel)
    dates = panel["date"]
    steps.build_partition(root, settings, dates[-3], panel)  # 3 calendar days behind: fresh
    got = steps.export_correlations(root, settings, panel)
    assert got.rebuilt is None and got.extended_rows == 2
    assert [p.as_of for p in store.list_partitions(root)] == [dates[-3]]
    want, _ = key_pair_features(panel, settings.correlation_spec())
    assert got.frame.equals(
        want.select("date", pl.exclude("date").cast(pl.Float64)), null_equal=True
    )


def test_an_unreadable_partition_is_rebuilt(tmp_path, panel):
    root, settings = make_root(tmp_path, panel)
    info = steps.build_partition(root, settings, panel["date"][-1], panel).info
    (info.path / "key_pairs.parquet").write_bytes(b"not parquet")
    got = steps.export_correlations(root, settings, panel)
    assert got.rebuilt is not None and got.rebuilt.mode == "full"
    assert pl.read_parquet(info.path / "key_pairs.parquet").height == panel.height


def test_the_exports_correlation_features_come_from_the_cache(tmp_path, panel):
    root, settings = make_root(tmp_path, panel)
    last = panel["date"][-1]
    info = steps.build_partition(root, settings, last, panel).info
    (export,) = tasks.build_exports(root, settings, ["1m"], panel=panel)
    names = [d.name for d in export.catalog if d.block == "Correlations"]
    assert names == [f"corr_zl_{p}_{w}d" for p in ("fcpo", "crush_margin") for w in (90, 180, 365)]
    cached = pl.read_parquet(info.path / "key_pairs.parquet")
    assert export.frame.select(names).equals(
        cached.select(pl.col(names).cast(pl.Float64)), null_equal=True
    )
    catalog = json.loads(root.feature_catalog.read_text())
    assert {d["name"] for d in catalog if d["block"] == "Correlations"} == set(names)
    # alter the cache: the export follows it (it reads the cache, it does not recompute)
    cached.with_columns(pl.lit(0.125, pl.Float32).alias("corr_zl_fcpo_90d")).write_parquet(
        info.path / "key_pairs.parquet"
    )
    (again,) = tasks.build_exports(root, settings, ["1m"], panel=panel)
    assert (again.frame["corr_zl_fcpo_90d"] == 0.125).all()
    assert again.frame["corr_zl_fcpo_180d"].equals(export.frame["corr_zl_fcpo_180d"])


def test_cbi_correlations_builds_then_reuses_the_cache(tmp_path, capsys):
    market = tmp_path / "market.csv"
    make_tiny_market().write_csv(market)
    root = tmp_path / "root"
    args = ["correlations", "--data-path", str(market), "--data-root", str(root)]
    assert main([*args, "--cache-max-age", "7"]) == 0
    out = capsys.readouterr().out
    assert "before: no valid partition" in out and "built 2008-08-21: full" in out
    assert "| ZL | FCPO" in out and "0 days behind 2008-08-21 (limit 7) - fresh" in out
    assert main([*args, "--cache-max-age", "7"]) == 0
    assert "(no rebuild needed)" in capsys.readouterr().out
    assert main([*args, "--as-of", "2008-08-15"]) == 0
    assert "built 2008-08-15: full" in capsys.readouterr().out
    # the panel file works as well, and a file of neither shape is refused by name
    panel_file = tmp_path / "panel.parquet"
    build_market_panel(make_tiny_market(), make_tiny_signals()).write_parquet(panel_file)
    assert main(["correlations", "--data-path", str(panel_file), "--data-root", str(root)]) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("when,what\n2020-01-01,1\n")
    assert main(["correlations", "--data-path", str(bad), "--data-root", str(root)]) == 2
    assert "bad.csv: expected a raw market file" in capsys.readouterr().err
