"""evaluation -> gate checks -> champion -> forecast through Dagster, on hand-made predictions."""

import dagster as dg
import pytest

from cbi_pipeline.definitions import ASSETS, build_resources
from cbi_pipeline.store.registry import Registry
from cbi_pipeline.store.tracking import Tracker
from cbi_pipeline_tests.steps.test_evaluation import H, good_predictions, predictions
from cbi_pipeline_tests.steps.test_evaluation import state as state


@pytest.fixture(autouse=True)
def local_mlflow(monkeypatch, state, mlflow_db):
    """The default store under the data root, pre-migrated (the schema takes seconds)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow_db(state[1].path("mlflow", "mlflow.db"))


def run(settings, selection, instance, config=None):
    return dg.materialize(
        ASSETS,
        selection=selection,
        partition_key=H,
        instance=instance,
        resources=build_resources(settings),
        raise_on_error=False,
        run_config=config,
    )


def checks_of(result):
    return {
        e.event_specific_data.check_name: e.event_specific_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_failing_gates_block_promotion_in_the_same_run_and_in_a_separate_one(state):
    settings, root, export, price, _ = state
    predictions(root, export, "random_walk", price)
    predictions(root, export, "drift", price * 1.004)
    instance = dg.DagsterInstance.ephemeral()
    result = run(settings, ["evaluation", "champion", "forecast"], instance)
    checks = checks_of(result)
    assert checks["candidate_beats_random_walk"] is False
    assert checks["candidate_meets_mape_threshold"] is True
    assert not result.success
    assert not result.asset_materializations_for_node("champion")  # skipped by the blocking check
    separate = run(settings, ["champion", "forecast"], instance)
    assert separate.success
    meta = separate.asset_materializations_for_node("champion")[0].metadata
    assert meta["promoted"].value is False and meta["champion"].value == "none"
    # No champion: the best benchmark's forecast is issued, labelled as such.
    fc = separate.asset_materializations_for_node("forecast")[0].metadata
    assert fc["source"].value == "benchmark"
    assert root.forecast(H).exists()


def test_passing_gates_promote_with_an_mlflow_alias_and_forecast(state):
    settings, root, export, price, y_true = state
    predictions(root, export, "random_walk", price)
    predictions(root, export, "lightgbm", good_predictions(price, y_true))
    # the forecast of a tree champion needs a model file: use drift's rule via the manifest
    predictions(root, export, "drift", good_predictions(price, y_true) * 1.0005)
    instance = dg.DagsterInstance.ephemeral()
    result = run(settings, ["evaluation", "champion"], instance)
    assert result.success, checks_of(result)
    assert all(checks_of(result).values())
    meta = result.asset_materializations_for_node("champion")[0].metadata
    assert meta["promoted"].value is True and meta["champion"].value == "lightgbm"
    registry = Registry(Tracker.for_data_root(settings.data_root))
    version = registry.champion_version(H)
    assert version is not None and version["cbi.family"] == "lightgbm"


def test_override_is_recorded(state):
    settings, root, export, price, _ = state
    predictions(root, export, "random_walk", price)
    predictions(root, export, "drift", price * 1.004)
    instance = dg.DagsterInstance.ephemeral()
    run(settings, ["evaluation"], instance)
    config = {
        "ops": {
            "champion": {
                "config": {
                    "override_family": "drift",
                    "override_by": "ana",
                    "override_reason": "desk decision",
                }
            }
        }
    }
    result = run(settings, ["champion", "forecast"], instance, config)
    assert result.success
    meta = result.asset_materializations_for_node("champion")[0].metadata
    assert meta["promoted"].value is True
    assert meta["override"].value == {"by": "ana", "reason": "desk decision"}
    version = Registry(Tracker.for_data_root(settings.data_root)).champion_version(H)
    assert version["cbi.override_by"] == "ana" and version["cbi.override_reason"] == "desk decision"
    assert root.forecast(H).exists()
