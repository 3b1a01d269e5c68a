import json

import dagster as dg
import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core.diagnostics_schema import schema_errors
from cbi_pipeline.core.vocabulary import CHECK_ALIGNED, CHECK_MISSING, CHECK_NAMES, CHECK_NO_LEAK
from cbi_pipeline.definitions import ASSETS, build_resources, defs
from cbi_pipeline.defs.assets.diagnostics import pretraining_diagnostics
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.stages import STAGES
from cbi_pipeline.settings import Settings
from cbi_pipeline_tests.conftest import make_tiny_market, make_tiny_signals


@dg.asset(partitions_def=horizon_partitions, deps=[pretraining_diagnostics])
def dummy_training(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Stands in for a model trained on the export: must not run when a blocking check fails."""
    return dg.MaterializeResult(metadata={"trained": context.partition_key})


@pytest.fixture
def settings(tmp_path) -> Settings:
    # 700 rows: the 365-day correlation features of 320 rows would be mostly warm-up (missing).
    market = tmp_path / "in" / "market.parquet"
    market.parent.mkdir()
    make_tiny_market(n=700).write_parquet(market)
    signals = tmp_path / "in" / "signals.parquet"
    make_tiny_signals(n=700).write_parquet(signals)
    return Settings(
        data_root=str(tmp_path / "root"), market_paths=(str(market),), signal_paths=(str(signals),)
    )


def run(settings, selection, partition=None, instance=None, extra=()):
    return dg.materialize(
        [*ASSETS, *extra],
        selection=selection,
        partition_key=partition,
        resources=build_resources(settings),
        instance=instance,
        raise_on_error=False,
    )


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_definitions_hold_the_diagnostics_asset_and_its_blocking_checks():
    graph = defs().resolve_asset_graph()
    assert graph.get(pretraining_diagnostics.key).partitions_def == horizon_partitions
    checks = {k.name for k in graph.asset_check_keys if k.asset_key == pretraining_diagnostics.key}
    assert checks == set(CHECK_NAMES)
    for key in graph.asset_check_keys:
        if key.asset_key == pretraining_diagnostics.key:  # the gates on evaluation do not block
            assert graph.get_check_spec(key).blocking
    horizon_stage = next(s for s in STAGES if s.name == "horizon")
    assert "pretraining_diagnostics" in horizon_stage.assets


def test_diagnostics_pass_on_tiny_data_and_downstream_training_runs(settings, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    assert run(settings, ["raw_market", "market_panel"], instance=instance).success
    result = run(
        settings,
        ["training_export", "pretraining_diagnostics", "dummy_training"],
        "1w",
        instance,
        extra=[dummy_training],
    )
    assert result.success
    checks = check_results(result)
    assert {name: c.passed for name, c in checks.items()} == dict.fromkeys(CHECK_NAMES, True)
    assert result.asset_materializations_for_node("dummy_training")
    meta = result.asset_materializations_for_node("pretraining_diagnostics")[0].metadata
    assert meta["plot"].value.startswith("![diagnostics](data:image/png;base64,iVBORw0KGgo")
    assert meta["truncation"].value == "passed"
    assert meta["canary_caught"].value is True
    assert "export_target_is_aligned" in meta["summary"].value
    root = tmp_path / "root" / "diagnostics"
    payload = json.loads((root / "1w.json").read_text())
    assert schema_errors(payload) == []
    assert (root / "1w.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "not_run" not in json.dumps(payload["leakage"]["truncation"])


def test_a_leaky_export_fails_the_blocking_check_and_skips_training(settings, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    assert run(settings, ["raw_market", "market_panel"], instance=instance).success
    assert run(settings, ["training_export"], "1m", instance).success
    path = tmp_path / "root" / "exports" / "zl_training_prod_allhistory_1m.parquet"
    export = pl.read_parquet(path)
    target = export["target_1m"].cast(pl.Float64).to_numpy()
    noisy = target * (1 + np.random.default_rng(0).normal(0, 0.005, target.size))
    export.with_columns(pl.Series("zl_hint", noisy).fill_nan(None)).write_parquet(path)

    result = run(
        settings,
        ["pretraining_diagnostics", "dummy_training"],
        "1m",
        instance,
        extra=[dummy_training],
    )
    assert not result.success
    checks = check_results(result)
    leak = checks[CHECK_NO_LEAK]
    assert not leak.passed
    assert "zl_hint" in leak.metadata["offending"].value
    suspects = leak.metadata["suspects"].value
    assert [s["feature"] for s in suspects] == ["zl_hint"]
    assert checks[CHECK_ALIGNED].passed and checks[CHECK_MISSING].passed
    assert result.asset_materializations_for_node("dummy_training") == []
    assert result.get_failed_step_keys() == {"diagnostics_checks"}
    assert not result.is_node_success("dummy_training")
    assert result.events_for_node("dummy_training") == []  # never started
