"""The scale-out instance (``deploy/dagster.yaml``: run, event-log and schedule storage on Postgres)
against a real PostgreSQL server on 127.0.0.1: a nightly schedule tick, the data run it requests
and the chain sensor's tick after it are stored in Postgres and read back, through the instance
and with plain SQL."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.run_status_sensor_definition import RunStatusSensorCursor
from dagster._core.definitions.sensor_definition import SensorType
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorTick,
    SensorInstigatorData,
    TickData,
    TickStatus,
)
from dagster._core.storage.tags import RUN_KEY_TAG, SCHEDULE_NAME_TAG
from dagster._core.test_utils import in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from cbi_pipeline.core.vocabulary import CYCLE_TAG
from cbi_pipeline.definitions import build_defs
from cbi_pipeline.defs.resources import PipelineSettings
from cbi_pipeline.defs.schedules import nightly_cycle
from cbi_pipeline.defs.sensors import cycle_chain
from cbi_pipeline.settings import Settings
from cbi_pipeline.store.correlations import latest_partition_key
from cbi_pipeline.store.root import DataRoot
from cbi_pipeline_tests.sample_cycle import SAMPLE_ENV, sample_settings
from cbi_pipeline_tests.scaleout.postgres_server import (
    PostgresServer,
    PostgresUnavailable,
    create_database,
    ensure_binaries,
    find_binaries,
    install_command,
)
from cbi_pipeline_tests.services import REPO

DEPLOY_YAML = REPO / "deploy" / "dagster.yaml"
DATABASE = "cbi_dagster"
# The deployment's step logs live under /var/lib/dagster; the copy keeps them in DAGSTER_HOME.
DEPLOY_COMPUTE_LOGS = "/var/lib/dagster/compute_logs"
TICK = dt.datetime(2026, 3, 9, 23, 30, tzinfo=dt.UTC)  # Monday 18:30 Chicago (CDT)
# Two years of the sample market: the data stage's real work in a few seconds.
SHORT_SAMPLE = {**SAMPLE_ENV, "CBI_SAMPLE_START": "2018-01-02", "CBI_SAMPLE_END": "2019-12-31"}


# --- finding (or installing) the server ------------------------------------------------------


def _tools(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for tool in ("initdb", "pg_ctl", "postgres"):
        (folder / tool).write_text("#!/bin/sh\n")
        (folder / tool).chmod(0o755)
    return folder


def test_the_binaries_are_found_on_path_before_the_debian_folders(tmp_path):
    on_path = _tools(tmp_path / "local" / "bin")
    lib = tmp_path / "lib"
    _tools(lib / "15" / "bin")
    assert find_binaries(f"/nonexistent:{on_path}", lib) == on_path


def test_the_newest_debian_version_is_taken_when_path_lacks_a_tool(tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "pg_ctl").write_text("#!/bin/sh\n")
    (partial / "pg_ctl").chmod(0o755)  # pg_ctl alone, without initdb and postgres: not a server
    lib = tmp_path / "lib"
    for version in ("9", "15", "13"):
        _tools(lib / version / "bin")
    (lib / "17" / "bin").mkdir(parents=True)  # an empty leftover folder
    assert find_binaries(str(partial), lib) == lib / "15" / "bin"
    assert find_binaries(str(partial), tmp_path / "none") is None


def test_installing_needs_apt_get_as_root():
    assert install_command("/usr/bin/apt-get", 0) == [
        "/usr/bin/apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        "postgresql",
    ]
    assert install_command(None, 0) is None
    assert install_command("/usr/bin/apt-get", 1000) is None


def test_missing_binaries_that_cannot_be_installed_say_so(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(PostgresUnavailable, match="needs apt-get as root"):
        ensure_binaries(str(tmp_path), tmp_path / "lib")


# --- the deployment's instance on a real server -------------------------------------------


def storage_env(config: dict) -> dict[str, str]:
    """The environment variable each Postgres connection field of the instance file reads."""
    fields = config["storage"]["postgres"]["postgres_db"]
    return {f: v["env"] for f, v in fields.items() if isinstance(v, dict) and "env" in v}


@pytest.fixture
def instance(
    postgres_server: PostgresServer, tmp_path, monkeypatch
) -> Iterator[dg.DagsterInstance]:
    """``deploy/dagster.yaml`` in a DAGSTER_HOME, its DAGSTER_PG_* variables pointing at a fresh
    database on the throwaway server."""
    create_database(postgres_server, DATABASE)
    text = DEPLOY_YAML.read_text(encoding="utf-8")
    env = storage_env(yaml.safe_load(text))
    assert set(env) == {"hostname", "port", "db_name", "username", "password"}
    values = {
        "hostname": postgres_server.host,
        "port": str(postgres_server.port),
        "db_name": DATABASE,
        "username": postgres_server.user,
        "password": "unused-with-trust-auth",
    }
    for field, variable in env.items():
        monkeypatch.setenv(variable, values[field])
    home = tmp_path / "dagster_home"
    home.mkdir()
    assert text.count(DEPLOY_COMPUTE_LOGS) == 1
    copy = text.replace(DEPLOY_COMPUTE_LOGS, str(home / "compute_logs"))
    (home / "dagster.yaml").write_text(copy, encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        yield instance


def _sql(server: PostgresServer, query: str, *args: object) -> list[tuple]:
    import psycopg2

    connection = psycopg2.connect(server.dsn(DATABASE))
    try:
        with connection.cursor() as cursor:
            cursor.execute(query, args)
            return list(cursor.fetchall())
    finally:
        connection.close()


def _tick(instance: dg.DagsterInstance, state: InstigatorState, timestamp: float) -> InstigatorTick:
    return instance.create_tick(
        TickData(
            instigator_origin_id=state.instigator_origin_id,
            instigator_name=state.instigator_name,
            instigator_type=state.instigator_type,
            status=TickStatus.STARTED,
            timestamp=timestamp,
            selector_id=state.selector_id,
        )
    )


def _sensor_data(cursor: str | None) -> SensorInstigatorData:
    return SensorInstigatorData(cursor=cursor, sensor_type=SensorType.RUN_STATUS)


def _sample(tmp_path: Path, monkeypatch) -> Settings:
    """The short sample over a data root, in the environment too (the code location reads it)."""
    root = tmp_path / "root"
    for key, value in {**SHORT_SAMPLE, "CBI_DATA_ROOT": str(root)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CBI_EXECUTOR", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return sample_settings(root, **SHORT_SAMPLE)


@pytest.mark.slow
def test_a_schedule_tick_its_data_run_and_the_chain_sensor_tick_are_stored_in_postgres(
    instance, postgres_server, tmp_path, monkeypatch
):
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    settings = _sample(tmp_path, monkeypatch)
    resources = {"pipeline": PipelineSettings.from_settings(settings)}
    definitions = build_defs(settings)

    # The schedule and the sensor as a loaded code location presents them (origin, selector).
    origin = LoadableTargetOrigin(
        module_name="cbi_pipeline.definitions", attribute="defs", working_directory=str(REPO)
    )
    with in_process_test_workspace(instance, origin) as workspace:
        (entry,) = workspace.get_code_location_entries().values()
        assert entry.code_location is not None, entry.load_error
        (repository,) = entry.code_location.get_repositories().values()
        # Both run by default: their state is declared in code, stored at their first tick.
        schedule = repository.get_schedule("nightly_cycle").get_current_instigator_state(None)
        sensor = repository.get_sensor("cycle_chain").get_current_instigator_state(None)
    assert schedule.status == sensor.status == InstigatorStatus.DECLARED_IN_CODE
    schedule = instance.add_instigator_state(schedule)

    # The sensor's first evaluation only starts its cursor at the latest run-status event.
    first = cycle_chain.evaluate_tick(
        dg.build_sensor_context(instance=instance, sensor_name="cycle_chain", resources=resources)
    )
    assert not first.run_requests and "Initiating cycle_chain" in (first.skip_message or "")
    assert first.cursor is not None
    assert RunStatusSensorCursor.from_json(first.cursor).record_id == -1  # an empty database
    started = _tick(instance, sensor, TICK.timestamp())
    instance.update_tick(
        started.with_status(TickStatus.SKIPPED, skip_reason=first.skip_message, cursor=first.cursor)
    )
    sensor = instance.add_instigator_state(sensor.with_data(_sensor_data(first.cursor)))

    # The schedule's tick requests the data run; the run executes on the Postgres instance.
    scheduled = nightly_cycle.evaluate_tick(
        dg.build_schedule_context(instance=instance, scheduled_execution_time=TICK)
    )
    (request,) = scheduled.run_requests or []
    assert request.run_key == "nightly-2026-03-09"
    assert request.tags == {CYCLE_TAG: "2026-03-09", SCHEDULE_NAME_TAG: "nightly_cycle"}
    schedule_tick = _tick(instance, schedule, TICK.timestamp())
    tags = {**request.tags, RUN_KEY_TAG: request.run_key}  # as the daemon tags it
    data_job = definitions.resolve_job_def(nightly_cycle.job_name)
    result = data_job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    assert result.success
    instance.update_tick(
        schedule_tick.with_status(TickStatus.SUCCESS).with_run_info(result.run_id, request.run_key)
    )

    # The run, its events and its materializations, read back through the instance.
    (run,) = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key}))
    assert (run.run_id, run.job_name, run.status) == (
        result.run_id,
        "data_job",
        dg.DagsterRunStatus.SUCCESS,
    )
    assert run.tags[CYCLE_TAG] == "2026-03-09"
    kinds = [e.dagster_event.event_type for e in instance.all_logs(run.run_id) if e.dagster_event]
    assert dg.DagsterEventType.RUN_START in kinds
    assert kinds[-1] == dg.DagsterEventType.RUN_SUCCESS
    assert kinds.count(dg.DagsterEventType.ASSET_MATERIALIZATION) == 2
    for asset in ("raw_market", "market_panel"):
        (record,) = instance.fetch_materializations(dg.AssetKey(asset), limit=5).records
        assert record.run_id == run.run_id
    assert (Path(os.environ["DAGSTER_HOME"]) / "compute_logs").is_dir()  # not /var/lib/dagster
    ticks = instance.get_ticks(schedule.instigator_origin_id, schedule.selector_id)
    assert [(t.status, t.run_ids, t.run_keys) for t in ticks] == [
        (TickStatus.SUCCESS, [run.run_id], [request.run_key])
    ]

    # The chain sensor's next tick reads the run's success from Postgres and requests the
    # correlation cache for the as-of date of the data's last day.
    second = cycle_chain.evaluate_tick(
        dg.build_sensor_context(
            instance=instance,
            cursor=first.cursor,
            sensor_name="cycle_chain",
            resources=resources,
            definitions=definitions,  # resolves the partitioned request against its job
        )
    )
    (chained,) = second.run_requests or []
    as_of = latest_partition_key(DataRoot(settings.data_root))
    assert (chained.job_name, chained.partition_key) == ("correlations_job", as_of)
    assert chained.run_key == f"{run.run_id}:correlations_job:{as_of}"
    assert chained.tags[CYCLE_TAG] == "2026-03-09"
    (success,) = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_SUCCESS, limit=5).records
    assert second.cursor is not None
    assert RunStatusSensorCursor.from_json(second.cursor).record_id == success.storage_id
    sensor_tick = _tick(instance, sensor, TICK.timestamp() + 30)
    instance.update_tick(
        sensor_tick.with_run_requests([chained], cursor=second.cursor).with_status(
            TickStatus.SUCCESS
        )
    )
    instance.update_instigator_state(sensor.with_data(_sensor_data(second.cursor)))
    latest, initial = instance.get_ticks(sensor.instigator_origin_id, sensor.selector_id)
    assert (initial.status, latest.status) == (TickStatus.SKIPPED, TickStatus.SUCCESS)
    assert latest.cursor == second.cursor
    assert [r.run_key for r in latest.tick_data.run_requests or []] == [chained.run_key]
    stored = instance.get_instigator_state(sensor.instigator_origin_id, sensor.selector_id)
    assert stored is not None and stored.instigator_data.cursor == second.cursor

    # The same rows, straight from the database.
    assert _sql(postgres_server, "SELECT status FROM runs WHERE run_id = %s", run.run_id) == [
        ("SUCCESS",)
    ]
    events = dict(
        _sql(
            postgres_server,
            "SELECT dagster_event_type, count(*) FROM event_logs WHERE run_id = %s"
            " GROUP BY dagster_event_type",
            run.run_id,
        )
    )
    assert events[dg.DagsterEventType.ASSET_MATERIALIZATION.value] == 2
    assert events[dg.DagsterEventType.RUN_SUCCESS.value] == 1  # stored as PIPELINE_SUCCESS
    keys = {k for (k,) in _sql(postgres_server, "SELECT asset_key FROM asset_keys")}
    assert {'["raw_market"]', '["market_panel"]'} <= keys
    ticks_sql = _sql(postgres_server, "SELECT type, status FROM job_ticks ORDER BY id")
    assert ticks_sql == [("SENSOR", "SKIPPED"), ("SCHEDULE", "SUCCESS"), ("SENSOR", "SUCCESS")]
    states = _sql(postgres_server, "SELECT job_type, status FROM jobs ORDER BY job_type")
    assert states == [("SCHEDULE", "DECLARED_IN_CODE"), ("SENSOR", "DECLARED_IN_CODE")]
