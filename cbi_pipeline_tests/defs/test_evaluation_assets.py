"""evaluation -> gate checks -> champion -> forecast through Dagster, on hand-made predictions."""

import dagster as dg
import pytest

from cbi_pipeline.definitions import ASSETS, build_resources
from cbi_pipeline.defs.assets.promotion import outcome_text
from cbi_pipeline.steps.promotion import PromotionResult
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


def check_evaluations(result):
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_failing_gates_are_a_green_run_that_promotes_nothing_in_the_same_run_or_a_separate_one(
    state,
):
    """A failed gate is an outcome, not a breakage: its check fails with severity WARN, the run
    succeeds, and champion (which re-reads the gates from the evaluation) promotes nothing."""
    settings, root, export, price, _ = state
    predictions(root, export, "random_walk", price)
    predictions(root, export, "drift", price * 1.004)
    instance = dg.DagsterInstance.ephemeral()
    result = run(settings, ["evaluation", "champion", "forecast"], instance)
    assert result.success
    checks = check_evaluations(result)
    assert checks["candidate_beats_random_walk"].passed is False
    assert checks["candidate_beats_random_walk"].severity == dg.AssetCheckSeverity.WARN
    assert checks["candidate_meets_mape_threshold"].passed is True
    assert all(not e.blocking for e in result.get_asset_check_evaluations())
    assert result.get_failed_step_keys() == set()
    meta = result.asset_materializations_for_node("champion")[0].metadata
    assert meta["promoted"].value is False
    assert meta["champion"].value.startswith("none (no candidate passed every gate; failed: ")
    assert "skill_vs_random_walk" in meta["champion"].value
    assert meta["outcome"].value.startswith("no champion: no candidate passed every gate")
    assert not root.champion_pointer(H).exists()
    separate = run(settings, ["champion", "forecast"], instance)
    assert separate.success
    meta = separate.asset_materializations_for_node("champion")[0].metadata
    assert meta["promoted"].value is False and meta["champion"].value.startswith("none (")
    # No champion: the best benchmark's forecast is issued, labelled as such.
    fc = separate.asset_materializations_for_node("forecast")[0].metadata
    assert fc["source"].value == "benchmark"
    assert fc["issued_by"].value == f"benchmark ({fc['family'].value})"
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
    assert meta["outcome"].value == "promoted lightgbm (every gate passed)"
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


@pytest.mark.parametrize(
    ("promoted", "champion", "reason", "expected"),
    [
        (True, "ets", "every gate passed", ("ets", "promoted ets (every gate passed)")),
        (
            False,
            "ets",
            "gates failed: coverage_80; keeping ets",
            ("ets", "kept ets: gates failed: coverage_80"),
        ),
        (
            False,
            None,
            "gates failed: coverage_80; no champion",
            (
                "none (no candidate passed every gate; failed: coverage_80)",
                "no champion: no candidate passed every gate; failed: coverage_80; the forecast "
                "is the best benchmark's",
            ),
        ),
        (
            False,
            None,
            "diagnostics fail now: export_has_no_future_leak; no champion",
            (
                "none (diagnostics fail now: export_has_no_future_leak)",
                "no champion: diagnostics fail now: export_has_no_future_leak; the forecast is "
                "the best benchmark's",
            ),
        ),
    ],
)
def test_the_champion_metadata_says_whether_there_is_one_and_why(
    promoted, champion, reason, expected
):
    pointer = None if champion is None else {"family": champion}
    result = PromotionResult(H, promoted, champion if promoted else None, reason, pointer)
    assert outcome_text(result) == expected
