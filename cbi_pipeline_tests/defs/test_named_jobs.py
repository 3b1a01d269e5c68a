"""The in-process cycle (``make demo``, ``cbi cycle``) runs the code location's named jobs, so its
runs are the jobs' history in the UI; failed gates leave those runs green."""

import dagster as dg
import pytest

from cbi_pipeline.cli.runner import INSTANCE_YAML, ensure_instance, run_cycle
from cbi_pipeline.core.vocabulary import CYCLE_TAG, GATE_CHECKS, PID_TAG, STAGE_TAG
from cbi_pipeline.definitions import build_resources, defs
from cbi_pipeline.defs.resources import HardwareResource
from cbi_pipeline.store.root import DataRoot
from cbi_pipeline_tests.conftest import tiny_training_settings

SMALL_NETS = {
    "horizon_job": {
        "ops": {
            f: {"config": {"hidden_size": 4, "max_epochs": 1, "patience": 1}}
            for f in ("lstm_model", "gru_model")
        }
    }
}
NO_COMPUTE_LOGS = """
compute_logs:
  module: dagster._core.storage.noop_compute_log_manager
  class: NoOpComputeLogManager
"""
JOBS = {"data_job": "data", "correlations_job": "correlations"}
JOBS |= {"horizon_job": "horizon", "promotion_job": "promotion"}


@pytest.fixture
def cycle(tmp_path, monkeypatch, mlflow_db):
    """One small cycle (one horizon, tiny networks) in a persistent instance under the root."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "root" / "dagster_home"))
    settings = tiny_training_settings(tmp_path, refit_step_days=126, max_features=8, max_bin=16)
    mlflow_db(tmp_path / "root" / "mlflow" / "mlflow.db")
    root = DataRoot(settings.data_root)
    # The demo's instance config, without capturing each step's stdout (seconds a run here).
    root.dagster_home.mkdir(parents=True)
    (root.dagster_home / "dagster.yaml").write_text(INSTANCE_YAML.read_text() + NO_COMPUTE_LOGS)
    instance = ensure_instance(root.dagster_home)
    resources = {**build_resources(settings), "hardware": HardwareResource(cores=1, device="cpu")}
    report = run_cycle(
        settings, instance, ("1w",), job_config=SMALL_NETS, resources=resources, cycle="demo-1"
    )
    return instance, report, root


def test_a_cycle_runs_the_named_jobs_green_and_its_failed_gates_only_warn_and_block_promotion(
    cycle,
):
    instance, report, root = cycle
    runs = instance.get_runs()
    assert sorted(r.run_id for r in runs) == sorted(report.run_ids)
    assert sorted(r.job_name for r in runs) == sorted(JOBS)
    assert all(r.job_name != "__ephemeral_asset_job__" for r in runs)
    for r in runs:
        assert r.tags[STAGE_TAG] == JOBS[r.job_name]
        assert r.tags[CYCLE_TAG] == "demo-1" and r.tags[PID_TAG].isdigit()
        # A job of the code location: the UI can re-execute it from its Jobs page.
        assert defs().resolve_job_def(r.job_name).name == r.job_name
    # Failed gates are outcomes: every run of the cycle succeeded.
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert set(report.stage_seconds) == set(JOBS.values())
    assert instance.root_directory == str(root.dagster_home.resolve())

    # The horizon run is green although its gates failed: they warn, and nothing is promoted.
    (horizon,) = instance.get_runs(filters=dg.RunsFilter(job_name="horizon_job"))
    events = instance.all_logs(horizon.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = [e.get_dagster_event().event_specific_data for e in events]
    failed = {e.check_name: e for e in evaluations if not e.passed}
    assert "candidate_beats_random_walk" in failed  # tiny random-walk data cannot beat it
    assert set(failed) <= set(GATE_CHECKS.values())  # the diagnostics passed
    assert all(e.severity == dg.AssetCheckSeverity.WARN and not e.blocking for e in failed.values())
    assert sorted(report.failed_checks["horizon 1w"]) == sorted(failed)
    # promotion re-read the gates from the evaluation: no champion, the benchmark forecasts
    assert not root.champion_pointer("1w").exists()
    (promotion,) = instance.get_runs(filters=dg.RunsFilter(job_name="promotion_job"))
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("champion")), limit=1
    ).records
    meta = records[0].asset_materialization.metadata
    assert records[0].run_id == promotion.run_id
    assert meta["promoted"].value is False and meta["champion"].value.startswith("none (")
    forecast = instance.fetch_materializations(dg.AssetKey("forecast"), limit=1).records[0]
    issued = forecast.asset_materialization.metadata["issued_by"].value
    assert issued.startswith("benchmark (") and root.forecast("1w").exists()
