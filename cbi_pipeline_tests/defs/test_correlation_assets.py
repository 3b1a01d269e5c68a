import datetime as dt
import warnings

import dagster as dg
import pytest

from cbi_pipeline.definitions import ASSETS, build_resources, defs
from cbi_pipeline.settings import Settings
from cbi_pipeline.store import correlations as store
from cbi_pipeline.store.root import DataRoot, read_parquet


@pytest.fixture
def settings(tmp_path, tiny_market, tiny_signals) -> Settings:
    market, signals = tmp_path / "market.parquet", tmp_path / "signals.parquet"
    tiny_market.write_parquet(market)
    tiny_signals.write_parquet(signals)
    return Settings(
        data_root=str(tmp_path / "root"), market_paths=(str(market),), signal_paths=(str(signals),)
    )


def run(settings, selection, instance, partition=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        selection=selection,
        partition_key=partition,
        resources=build_resources(settings),
        instance=instance,
    )


def test_correlation_cache_partitions_materialize_full_then_incrementally(settings):
    instance = dg.DagsterInstance.ephemeral()
    assert run(settings, ["raw_market", "market_panel"], instance).success
    root = DataRoot(settings.data_root)
    dates = read_parquet(root.market_panel, "market_panel")["date"]
    old, last = dates[-11], dates[-1]  # 14 calendar days apart

    first = run(settings, ["correlation_cache"], instance, str(old))
    meta = first.asset_materializations_for_node("correlation_cache")[0].metadata
    assert meta["mode"].value == "full" and meta["rows"].value == 310
    assert meta["age_days"].value == 14 and meta["stale"].value is True

    second = run(settings, ["correlation_cache"], instance, str(last))
    meta = second.asset_materializations_for_node("correlation_cache")[0].metadata
    assert meta["mode"].value == "incremental" and meta["base_partition"].value == str(old)
    assert meta["new_rows"].value == 10 and meta["stale"].value is False
    assert "| ZL | FCPO" in meta["key_pairs_latest"].value
    assert [p.as_of for p in store.list_partitions(root)] == [last, old]

    # the export reads the fresh partition: no rebuild, no new partition
    assert run(settings, ["training_export"], instance, "1m").success
    assert [p.as_of for p in store.list_partitions(root)] == [last, old]
    materialized = instance.get_materialized_partitions(dg.AssetKey("correlation_cache"))
    assert materialized == {str(old), str(last)}


def test_the_export_depends_on_the_latest_correlation_cache_partition():
    graph = defs().resolve_asset_graph()
    export, cache = dg.AssetKey("training_export"), dg.AssetKey("correlation_cache")
    assert cache in graph.get(export).parent_keys
    assert isinstance(graph.get_partition_mapping(export, cache), dg.LastPartitionMapping)
    assert (
        graph.get(cache).partitions_def.get_partition_keys(  # type: ignore[union-attr]
            current_time=dt.datetime(2024, 1, 8, 12)
        )[-3:]
        == ["2024-01-04", "2024-01-05", "2024-01-08"]
    )


def test_new_panel_data_requests_the_latest_as_of_partition():
    instance = dg.DagsterInstance.ephemeral()
    selection = dg.AssetSelection.assets("correlation_cache")
    when = dt.datetime(2024, 1, 10, 18)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tick = dg.evaluate_automation_conditions(
            defs=defs(), instance=instance, asset_selection=selection, evaluation_time=when
        )
        assert tick.total_requested == 0
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="market_panel"))
        tick = dg.evaluate_automation_conditions(
            defs=defs(),
            instance=instance,
            asset_selection=selection,
            evaluation_time=when,
            cursor=tick.cursor,
        )
    (result,) = tick.results
    assert list(result.true_subset.expensively_compute_partition_keys()) == ["2024-01-10"]
