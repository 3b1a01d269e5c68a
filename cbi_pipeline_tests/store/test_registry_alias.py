"""The registered model per horizon: ``candidate`` at every evaluation, ``champion`` only on
promotion; experiment descriptions; the arguments ``make ui`` starts ``mlflow ui`` with."""

from pathlib import Path

import pytest

from cbi_pipeline.store.registry import CANDIDATE_ALIAS, CHAMPION_ALIAS, Registry
from cbi_pipeline.store.tracking import (
    DEFAULT_UI_URL,
    MLFLOW_NOTE,
    Tracker,
    default_artifact_location,
    experiment_description,
    mlflow_ui_args,
    resolve_tracking_uri,
)

REPO = Path(__file__).resolve().parents[2]


def payload(candidate: str | None, promotable: bool = False) -> dict:
    families = {"random_walk": {"overall": {"mape": 2.5}}}
    if candidate:
        families[candidate] = {"overall": {"mape": 2.0}}
    return {"candidate": candidate, "promotable": promotable, "families": families}


@pytest.fixture
def registry(tmp_path, mlflow_db) -> Registry:
    return Registry(Tracker(mlflow_db(), (tmp_path / "artifacts").as_uri()), "ZL")


def test_an_evaluation_registers_its_candidate_without_touching_champion(registry, tmp_path):
    out = registry.set_candidate("1w", payload("drift"), str(tmp_path / "models/1w/drift"))
    assert out is not None and out["model"] == "zl_1w" and out["alias"] == CANDIDATE_ALIAS
    version = registry.alias_version("1w", CANDIDATE_ALIAS)
    assert version is not None and version["version"] == out["version"]
    assert version["cbi.family"] == "drift" and version["cbi.promotable"] == "false"
    assert registry.champion_version("1w") is None
    mv = registry.tracker.client.get_model_version("zl_1w", out["version"])
    assert mv.source == str(tmp_path / "models/1w/drift")  # no training run tracked


def test_promotion_sets_champion_beside_the_candidate(registry, tmp_path):
    cand = registry.set_candidate("1m", payload("drift", True), str(tmp_path / "m"))
    champ = registry.set_champion(
        "1m", "drift", {"mape": 2.0, "model_dir": "models/1m/champion", "override": None}
    )
    assert champ["alias"] == CHAMPION_ALIAS and champ["version"] != cand["version"]
    assert registry.alias_version("1m", CANDIDATE_ALIAS)["version"] == cand["version"]
    assert registry.champion_version("1m")["version"] == champ["version"]


def test_the_candidate_version_comes_from_the_training_run(registry, tmp_path):
    client = registry.tracker.client
    eid = registry.tracker.experiment_id("zl_3m")
    run = client.create_run(eid, tags={"cbi.family": "lightgbm", "cbi.horizon": "3m"})
    evaluation = client.create_run(eid, run_name="evaluation 3m")
    out = registry.set_candidate(
        "3m", payload("lightgbm"), str(tmp_path / "m"), evaluation.info.run_id
    )
    mv = client.get_model_version("zl_3m", out["version"])
    assert mv.run_id == run.info.run_id and mv.source == f"runs:/{run.info.run_id}/model"
    assert mv.tags["cbi.evaluation_run"] == evaluation.info.run_id
    tags = client.get_run(evaluation.info.run_id).data.tags
    assert tags["cbi.candidate_version"] == f"zl_3m/{out['version']}"


def test_no_candidate_removes_a_stale_candidate_alias(registry, tmp_path):
    assert registry.set_candidate("6m", payload(None), "") is None  # no model yet: nothing to do
    registry.set_candidate("6m", payload("drift"), str(tmp_path / "m"))
    assert registry.set_candidate("6m", payload(None), "") is None
    assert registry.alias_version("6m", CANDIDATE_ALIAS) is None


def test_horizon_experiments_carry_a_description(registry):
    client = registry.tracker.client
    eid = registry.tracker.experiment_id("zl_12m")
    note = client.get_experiment(eid).tags[MLFLOW_NOTE]
    assert note == experiment_description("zl_12m")
    assert "ZL futures" in note and "`evaluation 12m`" in note and "`candidate`" in note
    # an experiment created before descriptions existed gets one on next use
    old = client.create_experiment("zl_1w")
    assert MLFLOW_NOTE not in client.get_experiment(old).tags
    assert registry.tracker.experiment_id("zl_1w") == old
    assert client.get_experiment(old).tags[MLFLOW_NOTE] == experiment_description("zl_1w")
    assert experiment_description("scratch") is None
    assert MLFLOW_NOTE not in client.get_experiment(registry.tracker.experiment_id("x")).tags


def test_mlflow_ui_serves_the_pipelines_store_where_the_links_point(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = mlflow_ui_args(tmp_path)
    uri = resolve_tracking_uri(tmp_path)
    assert args == [
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        default_artifact_location(tmp_path, uri),
        "--host",
        "127.0.0.1",
        "--port",
        "5000",
    ]
    assert DEFAULT_UI_URL == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:8080")
    assert mlflow_ui_args(tmp_path)[:2] == ["--backend-store-uri", "http://tracking:8080"]


def test_make_ui_starts_mlflow_beside_dagster_and_stops_it_with_a_trap():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\nui:", 1)[1].split("\n\n", 1)[0]
    assert "mlflow_ui_args" in recipe and "mlflow ui" in recipe
    assert "trap" in recipe and "dagster dev" in recipe
    assert recipe.index("mlflow ui") < recipe.index("dagster dev")
