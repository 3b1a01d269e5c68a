"""Neural training over a data root: outputs, stored model, MLflow fold curves, ``cbi train``."""

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.cli.main import main
from cbi_pipeline.core.hardware import detect_system
from cbi_pipeline.core.intervals import STORED_PREDICTION_COLUMNS
from cbi_pipeline.core.vocabulary import families_of
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps.models import train
from cbi_pipeline.store.models import load_export, load_neural_model
from cbi_pipeline.store.root import DataRoot, StorageError
from cbi_pipeline_tests.conftest import (
    assert_quantiles_are_ordered,
    tiny_export_settings,
)

# 700 tiny rows (2007-06-01 .. 2010-02): 3 folds from 2009-07-01 at 1m.
SMALL = {
    "first_test_date": "2009-07-01",
    "refit_step_days": 63,
    "validation_rows": 63,
    "min_train_rows": 126,
    "max_features": 16,
}
SYSTEM = detect_system(cores=1, ram_gb=16, device="cpu")
TINY_NET = {"hidden_size": 8, "max_epochs": 2, "max_features": 4, "sequence_length": 10}


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    base = tmp_path_factory.mktemp("neural")
    return tiny_export_settings(base, **SMALL)


def test_train_neural_writes_the_contract_and_a_loadable_model(settings):
    root = DataRoot(settings.data_root)
    lines: list[str] = []
    (out,) = train(root, settings, "1m", "gru", SYSTEM, progress=lines.append, overrides=TINY_NET)
    predictions = pl.read_parquet(root.predictions("1m", "gru"))
    assert tuple(predictions.columns) == STORED_PREDICTION_COLUMNS
    assert_quantiles_are_ordered(predictions)
    assert (predictions["family"] == "gru").all() and predictions["fold"].n_unique() == 3
    model_dir = root.model_dir("1m", "gru")
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["model_file"] == "model.pt" and manifest["config_file"] == "model.json"
    assert manifest["parameters"]["hidden_size"] == 8 and manifest["parameters"]["threads"] == 1
    assert manifest["parameters"]["device_used"] == "cpu"
    assert [f["epochs"] <= 2 for f in manifest["folds"]] == [True] * 3
    assert manifest["final"]["epochs"] == manifest["folds"][-1]["best_epoch"]
    # Progress reached the caller: epoch lines with both losses, fold lines, the final model.
    assert any("fold 2/3 epoch 1/2: train loss" in s and "validation loss" in s for s in lines)
    assert any(s.startswith("1m gru final model:") for s in lines)
    # The stored model rebuilds from its JSON config and weights_only state_dict.
    loaded = load_neural_model(model_dir)
    assert list(loaded.features) == manifest["features"]
    assert loaded.arch.hidden_size == 8 and loaded.sequence_length == 10
    data = load_export(root, settings, "1m").data
    last = np.array([data.rows - 1])
    assert np.isfinite(loaded.predict(data, last)).all()
    assert out.tracked is None and out.val_mape == pytest.approx(manifest["val_mape"])


def test_a_missing_or_mismatched_model_fails_naming_the_file(settings, tmp_path):
    with pytest.raises(StorageError, match=r"model\.json: not found"):
        load_neural_model(tmp_path)
    root = DataRoot(settings.data_root)
    train(root, settings, "1m", "lstm", SYSTEM, overrides=TINY_NET)
    model_dir = root.model_dir("1m", "lstm")
    (model_dir / "model.pt").write_bytes((model_dir / "model.pt").read_bytes() + b"\0")
    with pytest.raises(ValueError, match=r"lstm/model\.pt .*weights do not match"):
        load_neural_model(model_dir)


def test_cbi_train_runs_a_neural_family(settings, monkeypatch, capsys):
    monkeypatch.setenv("CBI_VALIDATION_ROWS", "63")
    monkeypatch.setenv("CBI_MIN_TRAIN_ROWS", "126")
    monkeypatch.setenv("CBI_MAX_FEATURES", "8")
    code = main(
        [
            "train",
            "--family",
            "lstm",
            "--horizon",
            "1m",
            "--data-root",
            settings.data_root,
            "--first-test-date",
            "2009-07-01",
            "--refit-step",
            "63",
            "--no-mlflow",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "1m lstm:" in out and "models/1m/lstm" in out
    assert (DataRoot(settings.data_root).model_dir("1m", "lstm") / "model.json").exists()
    assert families_of("gru") == ("gru",)


def test_loading_the_definitions_does_not_import_torch():
    code = "import sys, cbi_pipeline.definitions; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"
