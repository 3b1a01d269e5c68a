from pathlib import Path

import dagster as dg
import pytest
import yaml

from cbi_pipeline.defs.executors import ExecutorConfigError, executor_from_env

REPO = Path(__file__).resolve().parents[2]


def test_no_setting_keeps_dagsters_default_executor():
    assert executor_from_env({}) is None
    assert executor_from_env({"CBI_EXECUTOR": "default"}) is None
    assert executor_from_env({"CBI_EXECUTOR": "in_process"}) is dg.in_process_executor
    assert executor_from_env({"CBI_EXECUTOR": " Multiprocess "}) is dg.multiprocess_executor


def test_dask_connects_to_the_named_scheduler_or_starts_a_local_cluster():
    existing = executor_from_env(
        {"CBI_EXECUTOR": "dask", "CBI_DASK_SCHEDULER": "tcp://10.0.0.5:8786"}
    )
    assert existing is not None and existing.name == "dask"
    assert _configured(existing) == {"cluster": {"existing": {"address": "tcp://10.0.0.5:8786"}}}
    local = executor_from_env({"CBI_EXECUTOR": "dask", "CBI_DASK_WORKERS": "3"})
    assert local is not None
    cluster = _configured(local)["cluster"]["local"]
    assert cluster["n_workers"] == 3 and cluster["host"] == "127.0.0.1"


def _configured(executor: dg.ExecutorDefinition) -> dict:
    """The config a ``.configured(...)`` executor hands to dagster-dask's executor."""
    resolved = executor.config_schema.resolve_config({})
    assert resolved.success, resolved.errors
    return resolved.value["config"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CBI_EXECUTOR": "celery"}, "CBI_EXECUTOR='celery': expected one of"),
        ({"CBI_EXECUTOR": "dask", "CBI_DASK_WORKERS": "0"}, "CBI_DASK_WORKERS='0'"),
        ({"CBI_EXECUTOR": "dask", "CBI_DASK_WORKERS": "two"}, "CBI_DASK_WORKERS='two'"),
    ],
)
def test_a_bad_executor_setting_is_refused_with_its_value(env, message):
    with pytest.raises(ExecutorConfigError, match=message):
        executor_from_env(env)


def test_the_deploy_instance_file_is_a_valid_postgres_instance_config(monkeypatch, tmp_path):
    """deploy/dagster.yaml validates against Dagster's instance schema and names importable
    Postgres storage; its settings come from the DAGSTER_PG_* variables."""
    from dagster._core.instance.config import dagster_instance_config

    text = (REPO / "deploy" / "dagster.yaml").read_text()
    (tmp_path / "dagster.yaml").write_text(text)
    for key, value in {
        "DAGSTER_PG_HOST": "db.internal",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_PG_USER": "dagster",
        "DAGSTER_PG_PASSWORD": "secret",
    }.items():
        monkeypatch.setenv(key, value)
    config, _ = dagster_instance_config(str(tmp_path))
    pg = config["storage"]["postgres"]["postgres_db"]
    assert pg["hostname"] == {"env": "DAGSTER_PG_HOST"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert yaml.safe_load(text)["telemetry"] == {"enabled": False}
    import dagster_postgres

    assert dagster_postgres.DagsterPostgresStorage.__name__ == "DagsterPostgresStorage"
