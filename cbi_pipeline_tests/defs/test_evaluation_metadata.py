"""The evaluation asset's numbers and chart, in Dagster and in MLflow, over a tiny root."""

import base64
import math

import dagster as dg
import polars as pl
import pytest

from cbi_pipeline.core.evaluation_plots import aligned_predictions, headline_numbers
from cbi_pipeline.store.registry import CANDIDATE_ALIAS, Registry
from cbi_pipeline.store.tracking import MLFLOW_NOTE, Tracker, experiment_description
from cbi_pipeline_tests.defs.test_evaluation_assets import run
from cbi_pipeline_tests.steps.test_evaluation import H, good_predictions, predictions
from cbi_pipeline_tests.steps.test_evaluation import state as state

PNG = b"\x89PNG\r\n\x1a\n"
NUMBERS = (
    "candidate_mape",
    "random_walk_mape",
    "skill",
    "sharpe",
    "psr",
    "coverage_80",
    "coverage_90",
)


@pytest.fixture(autouse=True)
def local_mlflow(monkeypatch, state, mlflow_db):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow_db(state[1].path("mlflow", "mlflow.db"))


def test_evaluation_has_float_numbers_a_chart_and_a_registered_candidate(state):
    settings, root, export, price, y_true = state
    predictions(root, export, "random_walk", price)
    predictions(root, export, "lightgbm", good_predictions(price, y_true))
    instance = dg.DagsterInstance.ephemeral()
    result = run(settings, ["evaluation"], instance)
    assert result.success
    meta = result.asset_materializations_for_node("evaluation")[0].metadata
    for key in NUMBERS:
        assert isinstance(meta[key], dg.FloatMetadataValue), key
        assert isinstance(meta[key].value, float) and math.isfinite(meta[key].value), key
    assert "futures_curve_mape" not in meta  # no curve in this data
    assert meta["candidate_mape"].value < meta["random_walk_mape"].value
    assert meta["skill"].value > 0
    chart = meta["chart"].value
    prefix = "![evaluation](data:image/png;base64,"
    assert chart.startswith(prefix) and base64.b64decode(chart[len(prefix) : -1])[:8] == PNG
    assert meta["chart_path"].value == str(root.evaluation_plot(H))
    assert root.evaluation_plot(H).read_bytes()[:8] == PNG

    tracker = Tracker.for_data_root(settings.data_root)
    client, registry = tracker.client, Registry(tracker)
    version = registry.alias_version(H, CANDIDATE_ALIAS)
    assert version is not None and version["cbi.family"] == "lightgbm"
    assert meta["mlflow_candidate"].value["version"] == version["version"]
    assert meta["mlflow_model"].value.endswith(f"/#/models/zl_{H}/versions/{version['version']}")
    assert registry.champion_version(H) is None  # only promotion sets the champion
    run_id = meta["mlflow_run_id"].value
    assert version["cbi.evaluation_run"] == run_id
    artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert artifacts == {f"evaluation/{H}.json", f"evaluation/{H}.png"}
    experiment = client.get_experiment(client.get_run(run_id).info.experiment_id)
    assert experiment.name == f"zl_{H}"
    assert experiment.tags[MLFLOW_NOTE] == experiment_description(f"zl_{H}")

    promoted = run(settings, ["champion"], instance)
    assert promoted.success
    champion = registry.champion_version(H)
    assert champion is not None and champion["cbi.family"] == "lightgbm"
    assert registry.alias_version(H, CANDIDATE_ALIAS)["version"] == version["version"]


def test_headline_numbers_are_floats_and_leave_out_what_was_not_computed():
    payload = {
        "candidate": "drift",
        "futures_curve": {"fallback_rows": 0, "rows": 10, "fallback_share": 0.0, "rule": "x"},
        "families": {
            "random_walk": {"overall": {"mape": 3}},
            "futures_curve": {"overall": {"mape": 2.9}},
            "drift": {
                "overall": {"mape": 2.5, "skill": 0.1, "sharpe": None, "psr": float("nan")},
                "probabilistic": {"overall": {"coverage": {"80": 0.8, "90": 0.9}}},
            },
        },
    }
    assert headline_numbers(payload) == {
        "random_walk_mape": 3.0,
        "candidate_mape": 2.5,
        "skill": 0.1,
        "coverage_80": 0.8,
        "coverage_90": 0.9,
        "futures_curve_mape": 2.9,
    }
    assert headline_numbers({**payload, "candidate": None, "futures_curve": None}) == {
        "random_walk_mape": 3.0
    }


def test_the_chart_compares_the_two_families_on_shared_dates():
    rw = pl.DataFrame({"date": [3, 1, 2], "y_true": [10.0, 11.0, 12.0], "y_pred": [9.0, 9.5, 9.8]})
    cand = pl.DataFrame({"date": [2, 3], "y_pred": [12.1, 10.2], "q10": [11.0, 9.0]})
    rows = aligned_predictions(cand, rw)
    assert rows["date"].to_list() == [2, 3] and rows["cand_pred"].to_list() == [12.1, 10.2]
    assert rows["cand_lo"].null_count() == 2  # q90 missing: no band
    with pytest.raises(ValueError, match="candidate predictions lack y_pred"):
        aligned_predictions(cand.drop("y_pred"), rw)
