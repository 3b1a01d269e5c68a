import json

import dagster as dg
import polars as pl
import pytest

from cbi_pipeline.definitions import ASSETS, build_resources, defs
from cbi_pipeline.defs.assets.models import ACCELERATOR_POOL, gru_model, lstm_model
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import HardwareResource
from cbi_pipeline.defs.stages import STAGES
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps import data as tasks
from cbi_pipeline.store.root import DataRoot
from cbi_pipeline.store.tracking import Tracker
from cbi_pipeline_tests.conftest import make_tiny_market


def test_neural_assets_share_the_tree_models_deps_partitions_and_one_pool():
    graph = defs().resolve_asset_graph()
    for asset in (lstm_model, gru_model):
        node = graph.get(asset.key)
        assert node.partitions_def == horizon_partitions
        assert {k.to_user_string() for k in node.parent_keys} == {
            "training_export",
            "pretraining_diagnostics",
        }
        assert node.pools == {ACCELERATOR_POOL}
    horizon_stage = next(s for s in STAGES if s.name == "horizon")
    assert {"lstm_model", "gru_model"} <= set(horizon_stage.assets)


def test_lstm_model_materializes_on_tiny_data(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    market = tmp_path / "market.parquet"
    make_tiny_market(n=700).write_parquet(market)
    settings = Settings(
        data_root=str(tmp_path / "root"),
        market_paths=(str(market),),
        first_test_date="2009-07-01",
        refit_step_days=63,
        validation_rows=63,
        min_train_rows=126,
    )
    data_root = DataRoot(settings.data_root)
    tasks.write_raw(data_root, tasks.load_raw(settings))
    tasks.build_exports(data_root, settings, ["1m"], panel=tasks.build_panel(data_root, settings))
    resources = {**build_resources(settings), "hardware": HardwareResource(cores=1, device="cpu")}
    common = {"resources": resources, "instance": dg.DagsterInstance.ephemeral()}
    result = dg.materialize(
        ASSETS,
        selection=["lstm_model"],
        partition_key="1m",
        run_config={
            "ops": {"lstm_model": {"config": {"hidden_size": 8, "max_epochs": 2, "patience": 1}}}
        },
        **common,
    )
    assert result.success
    meta = result.asset_materializations_for_node("lstm_model")[0].metadata
    root = tmp_path / "root"
    predictions = pl.read_parquet(root / "predictions" / "1m" / "lstm.parquet")
    assert meta["folds"].value == 3 and meta["predicted_rows"].value == predictions.height
    assert meta["device"].value == "cpu" and meta["precision"].value == "fp32"
    assert all(e <= 2 for e in meta["epochs_per_fold"].value)
    run_id = meta["mlflow_run_id"].value
    assert meta["mlflow_url"].value.endswith(run_id)
    manifest = json.loads((root / "models" / "1m" / "lstm" / "manifest.json").read_text())
    assert manifest["parameters"]["hidden_size"] == 8
    assert manifest["val_mape"] == pytest.approx(meta["val_mape"].value, abs=1e-4)
    assert (root / "models" / "1m" / "lstm" / "model.pt").exists()
    # MLflow: the parent run and one nested run per fold with per-epoch loss curves.
    client = Tracker.for_data_root(root).client
    parent = client.get_run(run_id)
    assert parent.data.tags["dagster.run_id"] == result.run_id
    assert parent.data.metrics["val_mape"] == pytest.approx(manifest["val_mape"])
    assert parent.data.params["model.hidden_size"] == "8"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'"
    )
    by_fold = {int(r.data.tags["cbi.fold"]): r for r in children}
    assert sorted(by_fold) == [0, 1, 2]
    for fold in manifest["folds"]:
        child = by_fold[fold["fold"]]
        history = client.get_metric_history(child.info.run_id, "validation_loss")
        assert sorted(m.step for m in history) == list(range(fold["epochs"] + 1))
        assert child.data.metrics["best_epoch"] == fold["best_epoch"]
    # Epoch progress went to the Dagster log.
    logs = [e.user_message for e in common["instance"].all_logs(result.run_id)]
    assert any("1m lstm fold 1/3 epoch 1/2: train loss" in m for m in logs)
