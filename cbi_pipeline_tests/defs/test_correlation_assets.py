import datetime as dt

import dagster as dg
import pytest

from cbi_pipeline.definitions import ASSETS, build_resources, defs
from cbi_pipeline.defs.partitions import AS_OF_START
from cbi_pipeline.defs.schedules import NIGHTLY_TIMEZONE
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


def test_only_the_nightly_chain_launches_the_cache_so_no_automation_sensor_is_off():
    loaded = defs()
    graph = loaded.resolve_asset_graph()
    assert all(graph.get(k).automation_condition is None for k in graph.get_all_asset_keys())
    sensors = {s.name for s in loaded.get_repository_def().sensor_defs}
    assert sensors == {"cycle_chain", "cycle_chain_after_failed_checks"}


@pytest.mark.parametrize(
    ("tick_utc", "settled"),
    [
        (dt.datetime(2026, 3, 7, 0, 30, tzinfo=dt.UTC), "2026-03-06"),  # Fri 18:30 CST
        (dt.datetime(2026, 3, 9, 23, 30, tzinfo=dt.UTC), "2026-03-09"),  # Mon 18:30 CDT
    ],
)
def test_the_nightly_as_of_is_todays_partition_on_the_chicago_calendar(tick_utc, settled):
    """At the nightly tick the partition of the day's settlement exists and is the newest, also
    after midnight UTC (no tomorrow's partition listed as missing); none begins before the
    first full 365-day window of the sample."""
    partitions = defs().resolve_assets_def("correlation_cache").partitions_def
    assert isinstance(partitions, dg.TimeWindowPartitionsDefinition)
    assert partitions.timezone == NIGHTLY_TIMEZONE
    keys = partitions.get_partition_keys(current_time=tick_utc)
    assert keys[-1] == store.partition_key(dt.date.fromisoformat(settled)) == settled
    assert keys[0] == AS_OF_START == "2001-05-28"
