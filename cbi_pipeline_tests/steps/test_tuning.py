"""Tuning over a data root: the file it writes, training reading it back (or refusing it), a
poisoned test period, the evaluation's record, MLflow and the CLI."""

import hashlib
import json
import logging
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.cli.main import main
from cbi_pipeline.core.export import feature_columns
from cbi_pipeline.core.hardware import detect_system
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps import evaluation
from cbi_pipeline.steps import models as training
from cbi_pipeline.steps.tuning import load_tuned, tune, tuned_by_family
from cbi_pipeline.store.models import load_export
from cbi_pipeline.store.root import DataRoot, StorageError, write_json
from cbi_pipeline.store.tracking import Tracker
from cbi_pipeline_tests.conftest import SMALL_WALK_FORWARD, tiny_export_settings

EXPORT = "zl_training_prod_allhistory_1m.parquet"
FIRST = "2009-07-01"
# 700 tiny rows from 2007-06-01: ~540 before the first test date, 3 tuning blocks of 63 rows.
SMALL = SMALL_WALK_FORWARD
SYSTEM = detect_system(cores=1, ram_gb=16, device="cpu")


@pytest.fixture(scope="module")
def export_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("tuning")
    return tiny_export_settings(base, **SMALL)


def fresh_root(settings: Settings, tmp_path, frame: pl.DataFrame | None = None):
    """A new data root holding only the 1m export (or ``frame`` in its place)."""
    src = DataRoot(settings.data_root).export(EXPORT)
    new = replace(settings, data_root=str(tmp_path / "root"))
    root = DataRoot(new.data_root)
    dst = root.export(EXPORT)
    dst.parent.mkdir(parents=True)
    if frame is None:
        dst.write_bytes(src.read_bytes())
    else:
        frame.write_parquet(dst)
    return new, root


@pytest.fixture(scope="module")
def tuned(export_root):
    return tune(DataRoot(export_root.data_root), export_root, "1m", "lightgbm", 3, SYSTEM)


def test_the_tuning_file_holds_the_study_and_only_rows_before_the_first_test_date(
    export_root, tuned
):
    root = DataRoot(export_root.data_root)
    assert tuned.path == root.tuned_params("1m", "lightgbm")
    stored = json.loads(tuned.path.read_text())
    assert stored == json.loads(json.dumps(tuned.payload, default=str))
    assert stored["format"] == "cbi-tuning-v1" and stored["seed"] == export_root.train_seed
    assert (
        stored["trials"] == 3 == stored["completed"] + stored["pruned"] == len(stored["trial_log"])
    )
    assert np.isfinite([stored["best_value"], stored["baseline_value"]]).all()
    assert stored["selected"] in ("best_trial", "defaults")
    assert stored["params"] == (stored["best_params"] if stored["selected"] == "best_trial" else {})
    assert set(stored["search_space"]) == {
        "num_leaves",
        "max_depth",
        "learning_rate",
        "min_child_samples",
        "feature_fraction",
        "lambda_l2",
    }
    export = root.export(EXPORT)
    assert stored["data"]["export_sha256"] == hashlib.sha256(export.read_bytes()).hexdigest()
    assert stored["code_version"]["package"] and stored["wall_seconds"] > 0
    t = stored["tuning"]
    assert len(t["folds"]) == 3 and t["walk_forward"]["first_test_date"] < FIRST
    assert max(d for f in t["folds"] for r in ("fit", "validation", "test") for d in f[r]) < FIRST
    assert t["last_label_date"] < FIRST


def test_training_overlays_the_tuned_parameters_and_says_so_in_the_manifest(
    export_root, tuned, tmp_path
):
    settings, root = fresh_root(export_root, tmp_path)
    (plain,) = training.train(root, settings, "1m", "lightgbm", SYSTEM)
    assert plain.manifest["tuned"] is None
    assert plain.manifest["parameters"]["num_leaves"] == 31
    payload = {**tuned.payload, "params": {"num_leaves": 7, "min_child_samples": 40}}
    path = write_json(payload, root.tuned_params("1m", "lightgbm"))
    (out,) = training.train(root, settings, "1m", "lightgbm", SYSTEM)
    entry = out.manifest["tuned"]
    assert entry["path"] == str(path) and entry["trials"] == 3
    assert entry["params"] == {"num_leaves": 7, "min_child_samples": 40}
    assert entry["best_value"] == tuned.payload["best_value"]
    assert entry["export_sha256_match"] and entry["tuning_data_match"]
    assert out.manifest["parameters"]["num_leaves"] == 7
    assert out.manifest["parameters"]["min_child_samples"] == 40
    assert out.manifest["parameters"]["max_depth"] == 6  # untuned keys keep the defaults
    assert json.loads((out.model_dir / "manifest.json").read_text())["tuned"] == entry
    assert tuned_by_family(root, "1m", ["lightgbm", "xgboost"]) == {
        "lightgbm": {
            "used": True,
            **{k: entry[k] for k in ("selected", "trials", "best_value", "baseline_value")},
            "path": str(path),
        },
        "xgboost": {"used": None},
    }


def test_the_evaluation_says_which_families_trained_with_tuned_parameters(
    export_root, tuned, tmp_path
):
    settings, root = fresh_root(export_root, tmp_path)
    write_json({**tuned.payload, "params": {"num_leaves": 9}}, root.tuned_params("1m", "lightgbm"))
    training.train(root, settings, "1m", "lightgbm", SYSTEM)
    training.train(root, settings, "1m", "baselines", SYSTEM)
    write_json({"passed": True, "checks": {}}, root.diagnostics("1m"))
    payload = evaluation.evaluate_root(root, "1m", settings=settings).payload
    assert payload["tuned"]["lightgbm"]["used"] is True
    assert payload["tuned"]["lightgbm"]["trials"] == 3
    assert payload["tuned"]["random_walk"] == {"used": False}
    assert set(payload["tuned"]) == set(payload["predictions"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "unreadable JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"format": "cbi-tuning-v1"}', "horizon is None, expected '1m'"),
        ("family", "family is 'xgboost', expected 'lightgbm'"),
        ("params", "lightgbm parameter num_leaves = 9999 is outside the search range"),
        ("value", "best_value is 'low', expected a finite number"),
    ],
)
def test_an_invalid_tuning_file_is_an_error_that_names_it(
    export_root, tuned, tmp_path, content, message
):
    settings, root = fresh_root(export_root, tmp_path)
    path = root.tuned_params("1m", "lightgbm")
    path.parent.mkdir(parents=True)
    edits = {
        "family": {"family": "xgboost"},
        "params": {"params": {"num_leaves": 9999}},
        "value": {"best_value": "low"},
    }
    if content in edits:
        path.write_text(json.dumps({**tuned.payload, **edits[content]}, default=str))
    else:
        path.write_text(content)
    with pytest.raises(StorageError) as info:
        training.train(root, settings, "1m", "lightgbm", SYSTEM)
    assert str(path) in str(info.value) and message in str(info.value)
    assert not root.predictions("1m", "lightgbm").exists()  # nothing trained on a bad file


def test_a_file_tuned_up_to_a_later_first_test_date_is_refused(export_root, tuned, tmp_path):
    settings, root = fresh_root(export_root, tmp_path)
    write_json(tuned.payload, root.tuned_params("1m", "lightgbm"))
    earlier = replace(settings, first_test_date="2009-04-01")
    with pytest.raises(StorageError, match="tuning read rows of the test period"):
        training.train(root, earlier, "1m", "lightgbm", SYSTEM)


def poisoned(frame: pl.DataFrame, first: str) -> pl.DataFrame:
    after = pl.col("date") >= pl.lit(first).str.to_date()
    return frame.with_columns(
        *[
            pl.when(after).then(None if i % 2 else 1e30).otherwise(pl.col(c)).alias(c)
            for i, c in enumerate(feature_columns(frame))
        ],
        *[pl.when(after).then(1e9).otherwise(pl.col(c)).alias(c) for c in ("price", "target_1m")],
    )


def test_a_poisoned_test_period_in_the_export_leaves_the_study_unchanged(
    export_root, tuned, tmp_path
):
    frame = pl.read_parquet(DataRoot(export_root.data_root).export(EXPORT))
    settings, root = fresh_root(export_root, tmp_path, poisoned(frame, FIRST))
    dirty = tune(root, settings, "1m", "lightgbm", 3, SYSTEM).payload
    clean = tuned.payload

    def scored(p):
        return [(t["number"], t["state"], t["params"], t["value"]) for t in p["trial_log"]]

    assert scored(dirty) == scored(clean)
    assert dirty["baseline_value"] == clean["baseline_value"]
    assert dirty["params"] == clean["params"] and dirty["best_value"] == clean["best_value"]
    assert dirty["data"]["tuning_data_sha256"] == clean["data"]["tuning_data_sha256"]
    assert dirty["data"]["export_sha256"] != clean["data"]["export_sha256"]


def test_a_grown_export_keeps_the_parameters_and_a_changed_history_warns(
    export_root, tuned, tmp_path, caplog
):
    frame = pl.read_parquet(DataRoot(export_root.data_root).export(EXPORT))
    # The export a few nights earlier: the rows before the first test date are the same.
    settings, root = fresh_root(export_root, tmp_path / "grown", frame.head(frame.height - 5))
    write_json(tuned.payload, root.tuned_params("1m", "lightgbm"))
    entry = load_tuned(
        root, load_export(root, settings, "1m"), settings.walk_forward_spec("1m"), "lightgbm"
    )
    assert entry is not None and entry["tuning_data_match"] and not entry["export_sha256_match"]
    assert not caplog.records
    # A revised history before the first test date: still used, with a warning that says so.
    feature = feature_columns(frame)[0]
    revised = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 100).then(pl.col(feature) * 2).otherwise(pl.col(feature))
    )
    settings, root = fresh_root(export_root, tmp_path / "revised", revised)
    write_json(tuned.payload, root.tuned_params("1m", "lightgbm"))
    lines = []
    with caplog.at_level(logging.WARNING, logger="cbi_pipeline.steps.tuning"):
        entry = load_tuned(
            root,
            load_export(root, settings, "1m"),
            settings.walk_forward_spec("1m"),
            "lightgbm",
            lines.append,
        )
    assert entry is not None and not entry["tuning_data_match"]
    assert entry["params"] == tuned.payload["params"]
    assert "have changed" in caplog.text and lines and "using the tuned parameters" in lines[0]


def test_the_study_is_logged_to_mlflow(export_root, tmp_path, mlflow_db):
    pytest.importorskip("mlflow")
    settings, root = fresh_root(export_root, tmp_path)
    tracker = Tracker.for_data_root(root.root, mlflow_db())
    out = tune(root, settings, "1m", "lightgbm", 2, SYSTEM, tracker=tracker)
    assert out.run_id is not None
    run = tracker.client.get_run(out.run_id)
    assert run.data.tags["cbi.kind"] == "tuning" and run.data.tags["cbi.family"] == "lightgbm"
    assert run.data.metrics["best_value"] == pytest.approx(out.payload["best_value"])
    assert run.data.metrics["baseline_value"] == pytest.approx(out.payload["baseline_value"])
    assert run.data.params["seed"] == "42" and run.data.params["trials"] == "2"
    artifacts = {a.path for a in tracker.client.list_artifacts(out.run_id, "tuning")}
    assert artifacts == {"tuning/lightgbm.json"}


def small_env(monkeypatch):
    for key, value in SMALL.items():
        monkeypatch.setenv(f"CBI_{key.upper()}", str(value))


def test_cbi_tune_prints_the_study_and_fails_precisely(export_root, tmp_path, monkeypatch, capsys):
    settings, root = fresh_root(export_root, tmp_path)
    small_env(monkeypatch)
    base = [
        "tune",
        "--horizon",
        "1m",
        "--no-mlflow",
        "--cores",
        "1",
        "--data-root",
        settings.data_root,
    ]
    assert main([*base, "--trials", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| 1m      | lightgbm | 2      |" in out
    assert str(root.tuned_params("1m", "lightgbm")) in out

    assert main([*base, "--trials", "0"]) == 2
    assert "trials must be an integer >= 1, got 0" in capsys.readouterr().err
    assert main([*base, "--trials", "2", "--first-test-date", "2008-06-02"]) == 2
    err = capsys.readouterr().err
    assert "no tuning folds: tuning needs 441 rows before the first test date 2008-06-02" in err
    with pytest.raises(SystemExit):
        main([*base, "--family", "prophet"])
    assert "invalid choice: 'prophet'" in capsys.readouterr().err
