import hashlib

import dagster as dg
import polars as pl
import pytest

from cbi_pipeline.core.export import feature_columns
from cbi_pipeline.core.vocabulary import HORIZON_LABELS
from cbi_pipeline.definitions import ASSETS, build_defs, build_resources, defs
from cbi_pipeline.settings import Settings


def test_definitions_load_with_every_asset():
    graph = defs().resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw_market", "market_panel", "training_export"} <= keys
    assert defs().resolve_implicit_global_asset_job_def() is not None


def test_the_code_location_follows_its_settings():
    import datetime as dt

    loaded = build_defs(Settings(data_root="elsewhere", cache_max_age_days=3))
    cache = loaded.resolve_assets_def("correlation_cache")
    policy = cache.specs_by_key[cache.key].freshness_policy
    assert policy is not None and policy.fail_window.to_timedelta() == dt.timedelta(days=3)
    pipeline = loaded.resources["pipeline"]
    assert pipeline.settings() == Settings(data_root="elsewhere", cache_max_age_days=3)


@pytest.fixture
def user_files(tmp_path, tiny_market, tiny_signals):
    market = tmp_path / "in" / "market.csv"
    market.parent.mkdir()
    tiny_market.write_csv(market)
    signals = tmp_path / "in" / "signals.parquet"
    tiny_signals.write_parquet(signals)
    return market, signals


def materialize(
    settings: Settings,
    selection: list[str],
    partition: str | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        selection=selection,
        partition_key=partition,
        resources=build_resources(settings),
        instance=instance,
        raise_on_error=False,
    )


def test_exports_materialize_from_user_files(tmp_path, user_files):
    market, signals = user_files
    settings = Settings(
        data_root=str(tmp_path / "root"), market_paths=(str(market),), signal_paths=(str(signals),)
    )
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(settings, ["raw_market", "market_panel"], instance=instance).success
    for h in HORIZON_LABELS:
        result = materialize(settings, ["training_export"], h, instance=instance)
        assert result.success
        meta = result.asset_materializations_for_node("training_export")[0].metadata
        assert meta["rows"].value == 320
        assert (
            meta["labelled_rows"].value
            == 320 - {"1w": 5, "1m": 21, "3m": 63, "6m": 126, "12m": 252}[h]
        )
        path = tmp_path / "root" / "exports" / f"zl_training_prod_allhistory_{h}.parquet"
        assert pl.read_parquet(path).height == 320
    catalog = (tmp_path / "root" / "exports" / "feature_catalog.json").read_text()
    assert '"block": "Spreads"' in catalog


def test_bad_input_fails_and_leaves_earlier_outputs_intact(tmp_path, user_files):
    market, _signals = user_files
    root = tmp_path / "root"
    settings = Settings(data_root=str(root), market_paths=(str(market),))
    assert materialize(settings, ["raw_market"]).success
    raw = root / "raw" / "market.parquet"
    before = hashlib.sha256(raw.read_bytes()).hexdigest()

    bad = tmp_path / "in" / "bad.csv"
    bad.write_text("date,symbol,close\n2008-01-02,ZL,31.0\n2008-01-03,ZL,-4\n")
    result = materialize(Settings(data_root=str(root), market_paths=(str(bad),)), ["raw_market"])
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and failure.cause is not None
    assert failure.cause.cls_name == "DataContractError"
    assert "bad.csv: column 'close' is missing, non-positive or non-finite" in failure.cause.message
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == before
    assert not list((root / "raw").glob("*.tmp"))


@pytest.mark.realdata
def test_real_file_builds_all_five_exports_by_configuration(tmp_path, real_data):
    settings = Settings(data_root=str(tmp_path), market_paths=(str(real_data),))
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(settings, ["raw_market", "market_panel"], instance=instance).success
    for h in HORIZON_LABELS:
        assert materialize(settings, ["training_export"], h, instance=instance).success
        export = pl.read_parquet(tmp_path / "exports" / f"zl_training_prod_allhistory_{h}.parquet")
        assert (
            str(export["date"].min()) == "1995-01-03" and str(export["date"].max()) == "2010-09-07"
        )
        assert len(feature_columns(export)) >= 130


def test_a_bad_input_is_the_step_failure_message_in_the_ui(tmp_path, tiny_market):
    """The step's failure, as the Dagster UI shows it, is the error naming the file, raised as
    a ``Failure`` (not Dagster's "error occurred while executing" wrapper around a traceback)."""
    bad = tmp_path / "bad.csv"
    tiny_market.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("zl")).otherwise("symbol").alias("symbol")
    ).write_csv(bad)
    root = tmp_path / "root"
    result = materialize(Settings(data_root=str(root), market_paths=(str(bad),)), ["raw_market"])
    assert not result.success
    (failure,) = result.get_step_failure_events()
    error = failure.step_failure_data.error
    assert error is not None and error.cls_name == "Failure"
    first = error.message.splitlines()[0]
    assert first == (
        f"dagster._core.definitions.events.Failure: DataContractError: {bad}: column 'symbol': "
        "['ZL', 'zl'] differ only in case; expected one spelling per series (symbols name "
        "columns and features)"
    )
    assert failure.step_failure_data.user_failure_data is not None
    assert not (root / "raw").exists()  # nothing written
