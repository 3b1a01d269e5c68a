"""Feature importance of the final tree models: in the manifest, in MLflow and in the metadata."""

import base64
import csv
import io
import json

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core.hardware import detect_system
from cbi_pipeline.core.models.trees import TreeTrainingError, gain_shares, load_tree_model
from cbi_pipeline.defs.assets.models import family_metadata
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps import models as training
from cbi_pipeline.store.root import DataRoot
from cbi_pipeline.store.tracking import IMPORTANCE_TOP, Tracker, importance_csv, importance_metrics
from cbi_pipeline_tests.conftest import SMALL_WALK_FORWARD, tiny_export_settings

SMALL = SMALL_WALK_FORWARD
SYSTEM = detect_system(cores=1, ram_gb=16, device="cpu")
EXPORT = "zl_training_prod_allhistory_1m.parquet"
PLANTED = "planted_signal"


def test_gain_shares_sort_by_gain_and_sum_to_one():
    rows = gain_shares(("a", "b", "c", "d"), np.array([1.0, 3.0, 0.0, 1.0]))
    assert [r["feature"] for r in rows] == ["b", "a", "d", "c"]  # ties keep the feature order
    assert [r["share"] for r in rows] == [0.6, 0.2, 0.2, 0.0]
    assert [r["gain"] for r in rows] == [3.0, 1.0, 1.0, 0.0]


def test_gain_shares_of_a_model_without_splits_are_all_zero():
    rows = gain_shares(("a", "b"), np.zeros(2))
    assert [r["share"] for r in rows] == [0.0, 0.0]


def test_gain_shares_refuse_negative_or_missing_gains():
    with pytest.raises(TreeTrainingError, match=r"not so for \['b'\]"):
        gain_shares(("a", "b"), np.array([1.0, -1.0]))
    with pytest.raises(TreeTrainingError, match="2 gains for 3 features"):
        gain_shares(("a", "b", "c"), np.array([1.0, 1.0]))


@pytest.fixture(scope="module")
def planted_root(tmp_path_factory) -> Settings:
    """A tiny 1m export with one more column: the label itself plus a little noise."""
    base = tmp_path_factory.mktemp("importance")
    settings = tiny_export_settings(base, **SMALL)
    root = DataRoot(settings.data_root)
    path = root.export(EXPORT)
    export = pl.read_parquet(path)
    label = np.log(export["target_1m"].to_numpy() / export["price"].to_numpy())
    noise = np.random.default_rng(3).normal(0, 0.002, export.height)
    planted = np.where(np.isnan(label), noise, label + noise)
    export.with_columns(pl.Series(PLANTED, planted)).write_parquet(path)
    return settings


@pytest.fixture(scope="module")
def tracked(planted_root, tmp_path_factory, empty_mlflow_store):
    """LightGBM and XGBoost trained on the planted export, tracked in a fresh store."""
    db = tmp_path_factory.mktemp("importance-mlflow") / "mlflow.db"
    db.write_bytes(empty_mlflow_store.read_bytes())
    root = DataRoot(planted_root.data_root)
    tracker = Tracker.for_data_root(root.root, f"sqlite:///{db}")
    outputs = {
        family: training.train(root, planted_root, "1m", family, SYSTEM, tracker)[0]
        for family in ("lightgbm", "xgboost")
    }
    return tracker, outputs


@pytest.mark.parametrize("family", ["lightgbm", "xgboost"])
def test_manifest_ranks_the_planted_feature_first_among_the_models_own_features(tracked, family):
    _, outputs = tracked
    out = outputs[family]
    manifest = json.loads((out.model_dir / "manifest.json").read_text())
    importance = manifest["feature_importance"]
    names = [row["feature"] for row in importance]
    assert sorted(names) == sorted(manifest["features"])  # each feature the model reads, once
    assert names[0] == PLANTED
    assert importance[0]["share"] > 0.5
    assert sum(row["share"] for row in importance) == pytest.approx(1.0, abs=1e-12)
    gains = [row["gain"] for row in importance]
    assert gains == sorted(gains, reverse=True) and min(gains) >= 0
    for row in importance:
        assert row["share"] == pytest.approx(row["gain"] / sum(gains), rel=1e-12)
    assert manifest["feature_importance_method"].startswith("gain: ")


def _lightgbm_gains_by_walking_the_trees(model_text: str) -> dict[str, float]:
    import lightgbm as lgb

    dump = lgb.Booster(model_str=model_text).dump_model()
    names = dump["feature_names"]
    gains = dict.fromkeys(names, 0.0)

    def walk(node: dict) -> None:
        if "split_feature" in node:
            gains[names[node["split_feature"]]] += node["split_gain"]
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in dump["tree_info"]:
        walk(tree["tree_structure"])
    return gains


def _xgboost_gains_by_walking_the_trees(model_json: bytes) -> dict[str, float]:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(model_json))
    gains: dict[str, float] = {}

    def walk(node: dict) -> None:
        if "split" in node:
            gains[node["split"]] = gains.get(node["split"], 0.0) + node["gain"]
            for child in node["children"]:
                walk(child)

    for tree in booster.get_dump(with_stats=True, dump_format="json"):
        walk(json.loads(tree))
    return gains


@pytest.mark.parametrize("family", ["lightgbm", "xgboost"])
def test_gains_are_the_sum_of_the_saved_models_split_gains(planted_root, tracked, family):
    _, outputs = tracked
    out = outputs[family]
    assert out.model_path is not None
    raw = out.model_path.read_bytes()
    if family == "lightgbm":
        oracle = _lightgbm_gains_by_walking_the_trees(raw.decode())
    else:
        oracle = _xgboost_gains_by_walking_the_trees(raw)
    for row in out.manifest["feature_importance"]:
        # XGBoost's JSON dump rounds the gains it prints.
        assert row["gain"] == pytest.approx(oracle.get(row["feature"], 0.0), rel=1e-5)
    # The saved model reads the manifest's features, in the manifest's order.
    export = pl.read_parquet(DataRoot(planted_root.data_root).export(EXPORT))
    predict = load_tree_model(family, raw)
    assert np.isfinite(predict(export.select(out.manifest["features"]).to_numpy())).all()


@pytest.mark.parametrize("family", ["lightgbm", "xgboost"])
def test_mlflow_run_holds_the_importance_as_artifacts_metrics_and_params(tracked, family):
    tracker, outputs = tracked
    out = outputs[family]
    assert out.tracked is not None
    client = tracker.client
    run_id = out.tracked.run_id
    importance = out.manifest["feature_importance"]
    paths = {a.path for a in client.list_artifacts(run_id, "feature_importance")}
    assert paths == {
        "feature_importance/feature_importance.json",
        "feature_importance/feature_importance.csv",
        "feature_importance/feature_importance.png",
    }
    png = client.download_artifacts(run_id, "feature_importance/feature_importance.png")
    with open(png, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    local = client.download_artifacts(run_id, "feature_importance/feature_importance.json")
    with open(local) as handle:
        logged = json.load(handle)
    assert logged == {"method": out.manifest["feature_importance_method"], "features": importance}
    local = client.download_artifacts(run_id, "feature_importance/feature_importance.csv")
    with open(local) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["feature"] for r in rows] == [r["feature"] for r in importance]
    assert [float(r["share"]) for r in rows] == [r["share"] for r in importance]
    run = client.get_run(run_id)
    shares = {
        k.removeprefix("importance_share."): v
        for k, v in run.data.metrics.items()
        if k.startswith("importance_share.")
    }
    top = importance[:IMPORTANCE_TOP]
    assert shares == pytest.approx({r["feature"]: r["share"] for r in top})
    assert run.data.params["feature_importance_top"].split(", ") == [r["feature"] for r in top]
    assert run.data.params["feature_importance_method"] == out.manifest["feature_importance_method"]
    # The fold runs and the model artifacts are as before.
    assert {a.path for a in client.list_artifacts(run_id, "model")} == {
        "model/manifest.json",
        f"model/{out.manifest['model_file']}",
    }


def test_model_asset_metadata_shows_the_top_features_as_a_table(tracked):
    _, outputs = tracked
    out = outputs["lightgbm"]
    meta = family_metadata(out)
    table = meta["feature_importance"]
    records = [r.data for r in table.records]
    top = out.manifest["feature_importance"][:IMPORTANCE_TOP]
    assert [r["feature"] for r in records] == [r["feature"] for r in top]
    assert [r["rank"] for r in records] == list(range(1, len(top) + 1))
    assert records[0]["feature"] == PLANTED
    assert [c.name for c in table.schema.columns] == ["rank", "feature", "share", "gain"]
    assert meta["feature_importance_method"] == out.manifest["feature_importance_method"]
    chart = meta["feature_importance_chart"].value
    assert chart.startswith("![feature importance](data:image/png;base64,")
    png = base64.b64decode(chart.split(",", 1)[1].rstrip(")"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000


def test_importance_csv_keeps_full_precision():
    text = importance_csv([{"feature": "a,b", "gain": 0.1 + 0.2, "share": 1.0}])
    (row,) = csv.DictReader(io.StringIO(text))
    assert row == {"rank": "1", "feature": "a,b", "gain": repr(0.1 + 0.2), "share": "1.0"}


def test_a_network_records_no_importance_and_says_why(planted_root, tracked):
    tracker, _ = tracked
    tiny_net = {"hidden_size": 8, "max_epochs": 2, "max_features": 4, "sequence_length": 10}
    root = DataRoot(planted_root.data_root)
    (out,) = training.train(root, planted_root, "1m", "gru", SYSTEM, tracker, overrides=tiny_net)
    manifest = json.loads((out.model_dir / "manifest.json").read_text())
    assert manifest["feature_importance"] is None
    assert manifest["feature_importance_method"].startswith("none: ")
    assert out.tracked is not None
    run = tracker.client.get_run(out.tracked.run_id)
    assert run.data.params["feature_importance_method"] == manifest["feature_importance_method"]
    assert not [k for k in run.data.metrics if k.startswith("importance_share.")]
    assert not tracker.client.list_artifacts(out.tracked.run_id, "feature_importance")
    meta = family_metadata(out)
    assert "feature_importance" not in meta
    assert meta["feature_importance_method"] == manifest["feature_importance_method"]


def test_importance_metric_keys_are_valid_mlflow_names_for_any_feature_name():
    from mlflow.utils.validation import _validate_metric_name

    rows = [
        {"feature": "a/../b", "share": 0.5},
        {"feature": "w:x(y)", "share": 0.3},
        {"feature": "w_x_y_", "share": 0.2},
    ]
    metrics = importance_metrics(rows, 0)
    for metric in metrics:
        _validate_metric_name(metric.key)
    # 'w:x(y)' and 'w_x_y_' clean to the same key: the larger share is kept.
    assert {m.key: m.value for m in metrics} == {
        "importance_share.a_.._b": 0.5,
        "importance_share.w_x_y_": 0.3,
    }
