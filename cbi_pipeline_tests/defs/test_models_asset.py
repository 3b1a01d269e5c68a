import dagster as dg
import polars as pl
import pytest

from cbi_pipeline.definitions import ASSETS, build_resources, defs
from cbi_pipeline.defs.assets.models import baselines, lightgbm_model, xgboost_model
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import HardwareResource
from cbi_pipeline.defs.stages import STAGES
from cbi_pipeline.settings import Settings
from cbi_pipeline.store.tracking import Tracker
from cbi_pipeline_tests.conftest import tiny_training_settings

MODEL_ASSETS = ("lightgbm_model", "xgboost_model", "baselines")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return tiny_training_settings(tmp_path, refit_step_days=63, max_features=16, max_bin=32)


def test_model_assets_are_partitioned_by_horizon_behind_the_diagnostics():
    graph = defs().resolve_asset_graph()
    for asset in (lightgbm_model, xgboost_model, baselines):
        node = graph.get(asset.key)
        assert node.partitions_def == horizon_partitions
        assert {k.to_user_string() for k in node.parent_keys} == {
            "training_export",
            "pretraining_diagnostics",
        }
    horizon_stage = next(s for s in STAGES if s.name == "horizon")
    assert set(MODEL_ASSETS) <= set(horizon_stage.assets)


def test_training_materializes_on_tiny_data_and_links_mlflow(
    settings, tmp_path, monkeypatch, mlflow_db
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow_db(tmp_path / "root" / "mlflow" / "mlflow.db")  # the default store, schema ready
    instance = dg.DagsterInstance.ephemeral()
    # One thread: on 400 fit rows threads only add overhead (and contention on a busy machine).
    resources = {**build_resources(settings), "hardware": HardwareResource(cores=1, device="cpu")}
    common = {"resources": resources, "instance": instance, "raise_on_error": False}
    assert dg.materialize(ASSETS, selection=["raw_market", "market_panel"], **common).success
    result = dg.materialize(
        ASSETS,
        selection=["training_export", *MODEL_ASSETS],
        partition_key="1m",
        **common,
    )
    assert result.success
    root = tmp_path / "root"
    tracker = Tracker.for_data_root(root)
    assert tracker.tracking_uri == f"sqlite:///{root.resolve()}/mlflow/mlflow.db"
    for name, families in (
        ("lightgbm_model", ("lightgbm",)),
        ("xgboost_model", ("xgboost",)),
        ("baselines", ("random_walk", "drift")),
    ):
        meta = result.asset_materializations_for_node(name)[0].metadata
        for family in families:
            prefix = "" if len(families) == 1 else f"{family}/"
            assert meta[prefix + "folds"].value == 3
            predictions = pl.read_parquet(root / "predictions" / "1m" / f"{family}.parquet")
            assert meta[prefix + "predicted_rows"].value == predictions.height
            assert (root / "models" / "1m" / family / "manifest.json").exists()
            run_id = meta[prefix + "mlflow_run_id"].value
            url = meta[prefix + "mlflow_url"].value
            assert url.startswith("http://127.0.0.1:5000/#/experiments/") and url.endswith(run_id)
            run = tracker.client.get_run(run_id)
            assert run.data.tags["dagster.run_id"] == result.run_id
            assert run.data.tags["dagster.partition"] == "1m"
            assert run.data.metrics["val_mape"] == pytest.approx(
                meta[prefix + "val_mape"].value, abs=1e-4
            )
    assert (root / "models" / "1m" / "lightgbm" / "model.txt").exists()
    assert (root / "models" / "1m" / "xgboost" / "model.json").exists()
