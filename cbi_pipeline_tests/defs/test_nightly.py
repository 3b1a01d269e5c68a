"""The nightly schedule and the sensors that chain the cycle's runs, on real runs of tiny data."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._utils.schedules import cron_string_iterator

from cbi_pipeline.core.vocabulary import CYCLE_TAG, HORIZON_LABELS, STAGE_TAG
from cbi_pipeline.definitions import ASSETS, build_resources, defs
from cbi_pipeline.defs.jobs import JOBS
from cbi_pipeline.defs.resources import HardwareResource, PipelineSettings
from cbi_pipeline.defs.schedules import NIGHTLY_TIMEZONE, SCHEDULES, nightly_cycle
from cbi_pipeline.defs.sensors import SENSORS, cycle_chain, cycle_chain_after_failed_checks
from cbi_pipeline.defs.stages import STAGES, FinishedRun, Launch, next_launches, only_check_failures
from cbi_pipeline.settings import Settings
from cbi_pipeline.store.correlations import partition_key
from cbi_pipeline_tests.conftest import (
    business_days,
    tiny_training_settings,
)

UTC = dt.UTC
CHICAGO = ZoneInfo(NIGHTLY_TIMEZONE)


# --- schedule ------------------------------------------------------------------------------


def test_nightly_schedule_ticks_on_weekdays_at_1830_chicago_across_the_dst_change():
    assert nightly_cycle.execution_timezone == "America/Chicago"
    start = dt.datetime(2026, 3, 6, 12, 0, tzinfo=CHICAGO).timestamp()  # Friday before DST
    ticks = cron_string_iterator(start, nightly_cycle.cron_schedule, NIGHTLY_TIMEZONE)
    got = [next(ticks).astimezone(UTC) for _ in range(4)]
    assert got == [
        dt.datetime(2026, 3, 7, 0, 30, tzinfo=UTC),  # Fri 18:30 CST (UTC-6)
        dt.datetime(2026, 3, 9, 23, 30, tzinfo=UTC),  # Mon 18:30 CDT (UTC-5): no weekend ticks
        dt.datetime(2026, 3, 10, 23, 30, tzinfo=UTC),
        dt.datetime(2026, 3, 11, 23, 30, tzinfo=UTC),
    ]
    # After the CBOT settlement (13:15 Chicago) on every tick.
    assert all(t.astimezone(CHICAGO).time() == dt.time(18, 30) for t in got)


@pytest.mark.parametrize(
    ("tick_utc", "cycle"),
    [
        (dt.datetime(2026, 3, 7, 0, 30, tzinfo=UTC), "2026-03-06"),  # UTC date is the next day
        (dt.datetime(2026, 3, 9, 23, 30, tzinfo=UTC), "2026-03-09"),
    ],
)
def test_schedule_requests_the_data_job_tagged_with_the_chicago_date(tick_utc, cycle):
    context = dg.build_schedule_context(scheduled_execution_time=tick_utc)
    data = nightly_cycle.evaluate_tick(context)
    (request,) = data.run_requests
    assert nightly_cycle.job_name == "data_job"
    assert request.tags[CYCLE_TAG] == cycle
    assert request.run_key == f"nightly-{cycle}"
    assert request.partition_key is None


def test_jobs_cover_every_stage_with_their_partitions_and_checks():
    d = _definitions(Settings(data_root="unused"))
    for stage in STAGES:
        job = d.resolve_job_def(f"{stage.name}_job")
        assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == set(
            stage.assets
        )
        assert job.run_tags[STAGE_TAG] == stage.name
    assert d.resolve_job_def("data_job").partitions_def is None
    assert d.resolve_job_def("horizon_job").partitions_def.get_partition_keys() == list(
        HORIZON_LABELS
    )
    assert d.resolve_job_def("correlations_job").partitions_def == (
        defs().resolve_assets_def("correlation_cache").partitions_def
    )
    # The horizon job runs the blocking checks, so failing diagnostics stop training in the run.
    plan = [s.key for s in _plan(d, "horizon_job")]
    assert plan.index("diagnostics_checks") < plan.index("lightgbm_model")
    assert "gate_checks" in plan


def _plan(d: dg.Definitions, job: str):
    from dagster._core.execution.api import create_execution_plan

    return create_execution_plan(
        d.resolve_job_def(job), run_config={}, tags={"dagster/partition": "1w"}
    ).get_steps_to_execute_in_topo_order()


def test_the_code_location_runs_the_schedule_and_sensors_by_default():
    assert {s.name for s in defs().schedules} == {"nightly_cycle"}
    assert {s.name for s in defs().sensors} == {"cycle_chain", "cycle_chain_after_failed_checks"}
    assert nightly_cycle.default_status == dg.DefaultScheduleStatus.RUNNING
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in SENSORS)


# --- the chain, as a pure plan --------------------------------------------------------------


def run(job, partition=None, succeeded=True, checks_only=False):
    return FinishedRun("r1", job, partition, succeeded, checks_only, "2026-03-09")


AS_OF = "2026-03-06"


@pytest.mark.parametrize(
    ("finished", "expected"),
    [
        (run("data_job"), [("correlations_job", AS_OF)]),
        (run("data_job", succeeded=False), []),
        (run("correlations_job", AS_OF), [("horizon_job", "1w")]),
        (run("correlations_job", AS_OF, succeeded=False), []),
        (run("horizon_job", "1w"), [("promotion_job", "1w"), ("horizon_job", "1m")]),
        (
            run("horizon_job", "3m", succeeded=False, checks_only=True),
            [("promotion_job", "3m"), ("horizon_job", "6m")],
        ),
        (run("horizon_job", "6m", succeeded=False), [("horizon_job", "12m")]),
        (run("horizon_job", "12m"), [("promotion_job", "12m")]),
        (run("horizon_job", "12m", succeeded=False), []),
        (run("promotion_job", "12m"), []),
        (run("__ASSET_JOB"), []),
    ],
)
def test_next_launches_walk_the_cycle_stage_by_stage(finished, expected):
    launches = next_launches(finished, lambda: AS_OF)
    assert [(launch.job, launch.partition) for launch in launches] == expected


def test_a_whole_cycle_launches_every_stage_and_horizon_exactly_once():
    """Follow the plan from the data run to the end, every horizon run succeeding."""
    pending = [run("data_job")]
    launched: list[Launch] = []
    while pending:
        finished = pending.pop(0)
        for launch in next_launches(finished, lambda: AS_OF):
            launched.append(launch)
            pending.append(run(launch.job, launch.partition))
    expected = {("correlations_job", AS_OF)}
    expected |= {(job, h) for h in HORIZON_LABELS for job in ("horizon_job", "promotion_job")}
    assert sorted((x.job, x.partition) for x in launched) == sorted(expected)
    assert len(launched) == len(expected)


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        (["DagsterAssetCheckFailedError"], True),
        (["DagsterAssetCheckFailedError", "DagsterAssetCheckFailedError"], True),
        (["DagsterAssetCheckFailedError", "StorageError"], False),
        ([None], False),
        ([], False),  # a run that failed without a failed step (e.g. its process died)
    ],
)
def test_only_failing_checks_count_as_a_normal_outcome(errors, expected):
    assert only_check_failures(errors) is expected


# --- the chain on real runs -------------------------------------------------------------------


def _definitions(settings: Settings) -> dg.Definitions:
    resources = {**build_resources(settings), "hardware": HardwareResource(cores=1, device="cpu")}
    return dg.Definitions(
        assets=ASSETS, jobs=JOBS, schedules=SCHEDULES, sensors=SENSORS, resources=resources
    )


@pytest.fixture
def settings(tmp_path) -> Settings:
    return tiny_training_settings(tmp_path, refit_step_days=126, max_features=8, max_bin=16)


SMALL_NETS = {
    "ops": {
        f: {"config": {"hidden_size": 4, "max_epochs": 1, "patience": 1}}
        for f in ("lstm_model", "gru_model")
    }
}


def _sensor(sensor, result, instance, settings):
    event = result.get_run_success_event() if result.success else result.get_run_failure_event()
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"pipeline": PipelineSettings.from_settings(settings)},
    )
    return sensor(context)


def _execute(d, instance, request: dg.RunRequest, run_config=None):
    job = d.resolve_job_def(request.job_name)
    return job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        tags=request.tags,
        run_config=run_config or {},
        raise_on_error=False,
    )


def test_sensors_chain_real_runs_from_the_schedule_to_promotion(
    settings, tmp_path, monkeypatch, mlflow_db
):
    """Play the daemon: run what the schedule requests, then whatever the sensors request,
    through one horizon. The tiny random-walk data cannot beat the random walk, so the horizon's
    gate checks fail, which is a normal outcome: the run succeeds (the gates warn, they do not
    block), promotion runs and keeps no champion, and the chain goes on to the next horizon."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow_db(tmp_path / "root" / "mlflow" / "mlflow.db")
    d = _definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    tick = dt.datetime(2026, 3, 9, 23, 30, tzinfo=UTC)
    (request,) = nightly_cycle.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=tick)
    ).run_requests
    data = _execute(d, instance, dg.RunRequest(job_name="data_job", tags=request.tags))
    assert data.success

    # data -> the correlation cache of the as-of date of the data's last day
    (request,) = _sensor(cycle_chain, data, instance, settings)
    last_day = business_days(dt.date(2007, 6, 1), 700)[-1]
    assert request.job_name == "correlations_job"
    assert request.partition_key == partition_key(last_day)
    assert request.tags == {CYCLE_TAG: "2026-03-09"}
    assert request.run_key == f"{data.run_id}:correlations_job:{partition_key(last_day)}"
    correlations = _execute(d, instance, request)
    assert correlations.success

    # correlations -> the first horizon
    (request,) = _sensor(cycle_chain, correlations, instance, settings)
    assert (request.job_name, request.partition_key) == ("horizon_job", "1w")
    horizon = _execute(d, instance, request, SMALL_NETS)
    materialized = {
        e.asset_key.to_user_string() for e in horizon.get_asset_materialization_events()
    }
    assert {"training_export", "lightgbm_model", "lstm_model", "evaluation"} <= materialized
    assert horizon.success
    failed_checks = {
        e.check_name: e.severity for e in horizon.get_asset_check_evaluations() if not e.passed
    }
    assert failed_checks["candidate_beats_random_walk"] == dg.AssetCheckSeverity.WARN
    assert set(failed_checks.values()) == {dg.AssetCheckSeverity.WARN}  # only gates failed

    # a horizon whose gates failed (a green run) -> its promotion and the next horizon
    requests = _sensor(cycle_chain, horizon, instance, settings)
    assert [(r.job_name, r.partition_key) for r in requests] == [
        ("promotion_job", "1w"),
        ("horizon_job", "1m"),
    ]
    assert all(r.tags == {CYCLE_TAG: "2026-03-09"} for r in requests)
    promotion = _execute(d, instance, requests[0])
    assert promotion.success
    champion = promotion.asset_materializations_for_node("champion")[0].metadata
    assert champion["promoted"].value is False
    assert "gates failed" in champion["reason"].value
    # promotion ends its branch of the chain
    assert isinstance(_sensor(cycle_chain, promotion, instance, settings), dg.SkipReason)


def test_a_horizon_run_that_errors_skips_its_promotion_and_moves_on(settings):
    d = _definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    # Nothing was loaded: training_export fails on the missing panel (an error, not a check).
    failed = _execute(
        d, instance, dg.RunRequest(job_name="horizon_job", partition_key="3m", tags={})
    )
    assert not failed.success
    requests = _sensor(cycle_chain_after_failed_checks, failed, instance, settings)
    assert [(r.job_name, r.partition_key) for r in requests] == [("horizon_job", "6m")]
    assert requests[0].tags == {}
