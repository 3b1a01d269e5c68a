"""Training over a data root: outputs, purge on real fold output, reruns, manifest, MLflow, CLI."""

import datetime as dt
import hashlib
import json
import subprocess
from dataclasses import replace
from importlib import metadata

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.cli.main import main
from cbi_pipeline.core.hardware import detect_system
from cbi_pipeline.core.intervals import STORED_PREDICTION_COLUMNS
from cbi_pipeline.core.models.trees import load_tree_model
from cbi_pipeline.core.walkforward import (
    WalkForwardError,
    plan_folds,
    training_data,
)
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps import data as tasks
from cbi_pipeline.steps import models as training
from cbi_pipeline.store.models import code_version
from cbi_pipeline.store.root import DataRoot, StorageError
from cbi_pipeline.store.tracking import Tracker, resolve_tracking_uri
from cbi_pipeline_tests.conftest import (
    SMALL_WALK_FORWARD,
    assert_quantiles_are_ordered,
    tiny_export_settings,
)

H = 21
# Small walk-forward for 700 tiny rows (2007-06-01 .. 2010-02): 3 folds from 2009-07-01 at 1m.
SMALL = SMALL_WALK_FORWARD
SYSTEM = detect_system(cores=1, ram_gb=16, device="cpu")


@pytest.fixture(scope="module")
def export_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("training")
    return tiny_export_settings(base, **SMALL)


def fresh_root(settings: Settings, tmp_path) -> tuple[Settings, DataRoot]:
    """A new data root holding only a copy of the 1m export."""
    src = DataRoot(settings.data_root).export("zl_training_prod_allhistory_1m.parquet")
    new = replace(settings, data_root=str(tmp_path / "root"))
    root = DataRoot(new.data_root)
    dst = root.export(src.name)
    dst.parent.mkdir(parents=True)
    dst.write_bytes(src.read_bytes())
    return new, root


@pytest.fixture(scope="module")
def lightgbm_run(export_root):
    (out,) = training.train(DataRoot(export_root.data_root), export_root, "1m", "lightgbm", SYSTEM)
    return out


def test_no_test_date_is_inside_its_own_training_or_validation_rows(export_root, lightgbm_run):
    export = pl.read_parquet(
        DataRoot(export_root.data_root).export("zl_training_prod_allhistory_1m.parquet")
    )
    index = {d: i for i, d in enumerate(export["date"].to_list())}
    predictions = pl.read_parquet(lightgbm_run.predictions_path)
    assert tuple(predictions.columns) == STORED_PREDICTION_COLUMNS
    assert_quantiles_are_ordered(predictions)
    # Every labelled date from the first test date on is predicted exactly once.
    labelled = export.filter(
        pl.col("target_1m").is_not_null() & (pl.col("date") >= dt.date(2009, 7, 1))
    )
    assert predictions["date"].to_list() == labelled["date"].to_list()
    folds = lightgbm_run.manifest["folds"]
    assert len(folds) == 3
    for fold in folds:
        rows = predictions.filter(pl.col("fold") == fold["fold"])
        first_test = index[rows["date"].min()]
        fit_end = index[dt.date.fromisoformat(fold["fit"][1])]
        val_start = index[dt.date.fromisoformat(fold["validation"][0])]
        val_end = index[dt.date.fromisoformat(fold["validation"][1])]
        # Label windows [t, t + h]: fit labels end before validation starts, validation labels
        # end before the first test origin of the fold.
        assert fit_end + H < val_start
        assert val_end + H < first_test
        assert [fold["test"][0], fold["test"][1]] == [
            str(rows["date"].min()),
            str(rows["date"].max()),
        ]
        assert fold["test_rows"] == rows.height
        assert fold["val_mape"] == pytest.approx(
            float(((rows["y_pred"] - rows["y_true"]).abs() / rows["y_true"]).mean() * 100)
        )
    y_pred = predictions["price"] * np.exp(predictions["pred_return"])
    assert np.allclose(predictions["y_pred"].to_numpy(), y_pred.to_numpy(), rtol=1e-12)


def test_rerun_with_the_same_data_and_seed_gives_identical_predictions(
    export_root, lightgbm_run, tmp_path
):
    settings, root = fresh_root(export_root, tmp_path)
    (again,) = training.train(root, settings, "1m", "lightgbm", SYSTEM)
    assert pl.read_parquet(again.predictions_path).equals(
        pl.read_parquet(lightgbm_run.predictions_path)
    )
    assert again.model_path is not None and lightgbm_run.model_path is not None
    assert again.model_path.read_bytes() == lightgbm_run.model_path.read_bytes()
    (x1,) = training.train(root, settings, "1m", "xgboost", SYSTEM)
    first = pl.read_parquet(x1.predictions_path)
    (x2,) = training.train(root, settings, "1m", "xgboost", SYSTEM)
    assert pl.read_parquet(x2.predictions_path).equals(first)


def test_manifest_describes_the_model_the_data_and_every_fold(export_root, lightgbm_run):
    manifest = json.loads((lightgbm_run.model_dir / "manifest.json").read_text())
    export_path = DataRoot(export_root.data_root).export("zl_training_prod_allhistory_1m.parquet")
    assert manifest["data"]["export_sha256"] == hashlib.sha256(export_path.read_bytes()).hexdigest()
    assert manifest["data"]["export"] == str(export_path)
    assert manifest["model_file"] == "model.txt"
    model_bytes = (lightgbm_run.model_dir / "model.txt").read_bytes()
    assert manifest["model_sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert manifest["code_version"]["package"] == metadata.version("cbi_pipeline")
    assert manifest["code_version"]["git_sha"]
    features = pl.read_parquet(export_path).columns
    assert 0 < len(manifest["features"]) <= 16 and set(manifest["features"]) <= set(features)
    params = manifest["parameters"]
    assert params["seed"] == 42 and params["deterministic"] is True and params["max_bin"] == 32
    assert params["n_estimators"] == 1500 and params["early_stopping_rounds"] == 100
    assert manifest["walk_forward"] == {
        "horizon_days": 21,
        "first_test_date": "2009-07-01",
        "refit_step": 63,
        "validation_rows": 63,
        "min_train_rows": 126,
    }
    for fold in manifest["folds"]:
        assert fold["fit"][0] <= fold["fit"][1] < fold["validation"][0] <= fold["validation"][1]
        assert fold["validation"][1] < fold["test"][0] <= fold["test"][1]
        assert 1 <= fold["trees"] <= fold["rounds"]
    final = manifest["final"]
    assert final["trees"] == manifest["folds"][-1]["trees"]
    assert final["rows"] == manifest["data"]["labelled_rows"]
    # The saved final model holds exactly the trees the manifest names and reads its features.
    predict = load_tree_model("lightgbm", model_bytes)
    export = pl.read_parquet(export_path)
    out = predict(export.select(manifest["features"]).to_numpy())
    assert out.shape == (export.height,) and np.isfinite(out).all()
    assert model_bytes.decode().count("Tree=") == final["trees"]
    assert manifest["val_mape"] == pytest.approx(lightgbm_run.val_mape)


def test_baselines_write_every_family_on_the_same_folds(export_root, lightgbm_run, tmp_path):
    settings, root = fresh_root(export_root, tmp_path)
    outputs = training.train(root, settings, "1m", "baselines", SYSTEM)
    assert [o.family for o in outputs] == ["random_walk", "drift", "ets"]
    rw, drift, ets = (pl.read_parquet(o.predictions_path) for o in outputs)
    model = pl.read_parquet(lightgbm_run.predictions_path)
    for frame in (rw, drift, ets):
        assert frame.select("date", "fold", "price", "y_true").equals(
            model.select("date", "fold", "price", "y_true")
        )
    assert rw["y_pred"].equals(rw["price"], check_names=False)
    assert outputs[0].val_mape == pytest.approx(lightgbm_run.random_walk_mape)
    manifest = json.loads((root.model_dir("1m", "drift") / "manifest.json").read_text())
    assert manifest["model_file"] is None and manifest["final"]["pred_return"] != 0
    ets_manifest = json.loads((root.model_dir("1m", "ets") / "manifest.json").read_text())
    assert np.isfinite(ets_manifest["final"]["pred_return"])
    # The constant-width random-walk intervals: the yardstick of the pinball skill.
    constant = pl.read_parquet(root.predictions("1m", "random_walk_constant"))
    assert constant.select("date", "y_pred").equals(rw.select("date", "y_pred"))
    assert_quantiles_are_ordered(constant)
    widths = (
        constant.with_columns(w=(pl.col("q90") / pl.col("q10")).log().round(9))
        .group_by("fold")
        .agg(pl.col("w").n_unique())
    )
    assert (widths["w"] == 1).all()  # constant width in log terms within each fold


def test_mlflow_gets_a_run_per_family_with_nested_fold_runs(export_root, tmp_path, mlflow_db):
    settings, root = fresh_root(export_root, tmp_path)
    tracker = Tracker.for_data_root(root.root, mlflow_db())
    tags = {"dagster.run_id": "run-123", "dagster.partition": "1m"}
    (out,) = training.train(root, settings, "1m", "lightgbm", SYSTEM, tracker, tags)
    assert out.tracked is not None
    client = tracker.client
    run = client.get_run(out.tracked.run_id)
    assert run.data.tags["dagster.run_id"] == "run-123"
    assert run.data.tags["dagster.partition"] == "1m"
    assert run.data.metrics["val_mape"] == pytest.approx(out.val_mape)
    assert run.data.params["model.seed"] == "42"
    assert run.data.params["walk_forward.first_test_date"] == "2009-07-01"
    children = client.search_runs(
        [out.tracked.experiment_id], f"tags.mlflow.parentRunId = '{out.tracked.run_id}'"
    )
    assert len(children) == len(out.manifest["folds"]) == 3
    by_fold = {int(c.data.params["fold"]): c for c in children}
    for fold in out.manifest["folds"]:
        child = by_fold[fold["fold"]]
        assert child.data.metrics["val_mape"] == pytest.approx(fold["val_mape"])
        assert child.data.params["test_start"] == fold["test"][0]
    artifacts = {a.path for a in client.list_artifacts(out.tracked.run_id, "model")}
    assert artifacts == {"model/manifest.json", "model/model.txt"}
    # Trained again on the same export: every fold is reused, so no fold is fitted and none
    # gets a child run; the parent counts them.
    (again,) = training.train(root, settings, "1m", "lightgbm", SYSTEM, tracker, tags)
    assert again.tracked is not None
    rerun = client.get_run(again.tracked.run_id)
    assert rerun.data.tags["cbi.folds_reused"] == "3" and rerun.data.tags["cbi.fold_runs"] == "0"
    assert not client.search_runs(
        [again.tracked.experiment_id], f"tags.mlflow.parentRunId = '{again.tracked.run_id}'"
    )
    assert rerun.data.metrics["val_mape"] == run.data.metrics["val_mape"]
    location = client.get_experiment(out.tracked.experiment_id).artifact_location
    assert location == (root.root.resolve() / "mlflow" / "artifacts").as_uri()
    assert out.tracked.url == (
        f"http://127.0.0.1:5000/#/experiments/{out.tracked.experiment_id}/runs/{out.tracked.run_id}"
    )


def test_tracking_uri_defaults_under_the_data_root_and_the_env_overrides(tmp_path):
    default = resolve_tracking_uri(tmp_path / "data", env={})
    assert default == f"sqlite:///{(tmp_path / 'data').resolve()}/mlflow/mlflow.db"
    env = {"MLFLOW_TRACKING_URI": "http://mlflow.internal:5000"}
    assert resolve_tracking_uri(tmp_path, env=env) == "http://mlflow.internal:5000"
    assert resolve_tracking_uri(tmp_path, "sqlite:///x.db", env=env) == "sqlite:///x.db"


def test_code_version_says_unknown_without_git(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    version = code_version.__wrapped__()
    assert version == {"package": metadata.version("cbi_pipeline"), "git_sha": "unknown"}


def test_missing_export_names_the_file_and_its_producer(tmp_path):
    settings = Settings(data_root=str(tmp_path))
    with pytest.raises(StorageError, match=r"zl_training_prod_allhistory_3m.parquet: not found"):
        training.train(DataRoot(tmp_path), settings, "3m", "xgboost", SYSTEM)


@pytest.mark.realdata
def test_real_file_folds_from_the_default_first_test_date(real_data, tmp_path):
    """The real 1995-2010 file ends 2010-09-07: one test block from 2010-01-04 at 1w..6m, while its
    12m labels end in 2009, which the split reports instead of inventing a test period."""
    settings = Settings(data_root=str(tmp_path), market_paths=(str(real_data),))
    root = DataRoot(tmp_path)
    tasks.write_raw(root, tasks.load_raw(settings))
    panel = tasks.build_panel(root, settings)
    for result in tasks.build_exports(root, settings, ["1w", "6m", "12m"], panel=panel):
        data = training_data(result.frame, result.horizon)
        spec = settings.walk_forward_spec(result.horizon)
        if result.horizon == "12m":
            with pytest.raises(WalkForwardError, match=r"labelled rows end at 2009-\d\d-\d\d"):
                plan_folds(data.dates, data.labelled, spec)
            continue
        (fold,) = plan_folds(data.dates, data.labelled, spec)
        assert str(data.dates[fold.test_rows[0]]) == "2010-01-04"
        assert fold.fit_rows.size > 3000


def small_env(monkeypatch):
    for key, value in SMALL.items():
        monkeypatch.setenv(f"CBI_{key.upper()}", str(value))


def test_cbi_train_prints_the_families_beside_the_random_walk(
    export_root, tmp_path, monkeypatch, capsys
):
    settings, root = fresh_root(export_root, tmp_path)
    small_env(monkeypatch)
    args = ["train", "--horizon", "1m", "--family", "baselines", "--no-mlflow", "--cores", "1"]
    assert main([*args, "--data-root", settings.data_root]) == 0
    out = capsys.readouterr().out
    assert "| 1m      | random_walk | 3     |" in out and "| drift" in out
    assert root.predictions("1m", "drift").exists()


def test_cbi_train_refuses_a_first_test_date_after_the_data(
    export_root, tmp_path, monkeypatch, capsys
):
    settings, _ = fresh_root(export_root, tmp_path)
    small_env(monkeypatch)
    code = main(
        [
            "train",
            "--family",
            "lightgbm",
            "--no-mlflow",
            "--data-root",
            settings.data_root,
            "--first-test-date",
            "2030-01-02",
        ]
    )
    assert code == 2
    assert "no labelled rows on or after first_test_date 2030-01-02" in capsys.readouterr().err
