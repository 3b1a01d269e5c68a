"""What dagster-mlflow's ``mlflow_tracking`` resource does with assets, on the real library.

It is not wired into the definitions (README, "Models, metrics and gates"): these tests pin the
part that works and each reason it cannot carry this project's runs, so that they fail, and the
decision is revisited, when an upgrade changes the behaviour.
"""

import inspect
import subprocess
import sys
import textwrap
import warnings

import dagster as dg
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from cbi_pipeline.store.tracking import Tracker

with warnings.catch_warnings():  # the library is beta, and says so on import
    warnings.simplefilter("ignore", dg.BetaWarning)
    from dagster_mlflow import end_mlflow_on_run_finished, mlflow_tracking

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")
EXPERIMENT = "zl_dagster_runs"


@pytest.fixture
def uri(mlflow_db, monkeypatch):
    """A fresh store; mlflow's process-wide tracking URI and active run restored after."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield mlflow_db()
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None unsets it (and the env var)


def resource(uri: str) -> dg.ResourceDefinition:
    return mlflow_tracking.configured({"experiment_name": EXPERIMENT, "mlflow_tracking_uri": uri})


@dg.asset(required_resource_keys={"mlflow"})
def first(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    run = mlflow.active_run()
    return dg.MaterializeResult(metadata={"mlflow_run": run.info.run_id if run else ""})


@dg.asset(required_resource_keys={"mlflow"}, deps=[first])
def second(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    run = mlflow.active_run()
    return dg.MaterializeResult(metadata={"mlflow_run": run.info.run_id if run else ""})


@dg.asset(required_resource_keys={"mlflow"})
def failing(context: dg.AssetExecutionContext) -> None:
    raise RuntimeError("training failed")


def mlflow_runs(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        str(m.metadata["mlflow_run"].value)
        for node in ("first", "second")
        for m in result.asset_materializations_for_node(node)
    ]


def runs_of(uri: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    return client.search_runs([experiment.experiment_id])


def test_the_assets_of_one_dagster_run_share_one_mlflow_run_tagged_with_its_id(uri):
    """What works: an asset requiring the resource runs inside one MLflow run per Dagster run."""
    result = dg.materialize([first, second], resources={"mlflow": resource(uri)})
    assert result.success
    ids = mlflow_runs(result)
    (run,) = runs_of(uri)
    assert ids == [run.info.run_id] * 2
    assert run.data.tags["dagster_run_id"] == result.run_id
    assert run.info.run_name == "__ephemeral_asset_job__"  # the job's name, not the asset's


def test_a_second_dagster_run_in_the_same_process_joins_the_first_ones_mlflow_run(uri):
    """Limitation: ``cbi cycle`` and ``make demo`` materialize run after run in one process. The
    first run's MLflow run stays active there, the next resource init swallows mlflow's 'already
    active' error and logs into it, and re-tags it with the new Dagster run's id."""
    resources = {"mlflow": resource(uri)}
    one = dg.materialize([first, second], resources=resources)
    two = dg.materialize([first, second], resources=resources)
    assert one.run_id != two.run_id
    (run,) = runs_of(uri)
    assert mlflow_runs(one) == mlflow_runs(two) == [run.info.run_id] * 2
    assert run.data.tags["dagster_run_id"] == two.run_id
    assert run.info.status == "RUNNING"


def test_a_failed_asset_leaves_the_mlflow_run_running_and_materialize_takes_no_hook(uri):
    """Limitation: the resource's teardown looks for the error in ``sys.exc_info()``, but Dagster
    has already handled the step's exception, so nothing ends the run; the hook that would
    (``end_mlflow_on_run_finished``) attaches to jobs, and ``dg.materialize`` takes none."""
    result = dg.materialize([failing], resources={"mlflow": resource(uri)}, raise_on_error=False)
    assert not result.success
    (run,) = runs_of(uri)
    assert run.info.status == "RUNNING"
    assert "hooks" not in inspect.signature(dg.materialize).parameters


def test_the_end_hook_works_on_an_asset_job(uri):
    """What works: ``define_asset_job(hooks=...)`` ends the run when the job's last step ends."""
    job = dg.define_asset_job("trained", [first, second], hooks={end_mlflow_on_run_finished})
    defs = dg.Definitions(assets=[first, second], jobs=[job], resources={"mlflow": resource(uri)})
    assert defs.resolve_job_def("trained").execute_in_process().success
    (run,) = runs_of(uri)
    assert run.info.status == "FINISHED"
    assert mlflow.active_run() is None


def test_the_resource_sets_the_tracking_uri_of_the_whole_process(uri, tmp_path):
    """Limitation: ``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI`` in the process'
    environment, which then overrides this project's default store (``<data_root>/mlflow``)
    for every later run in the process."""
    assert Tracker.for_data_root(tmp_path / "data").tracking_uri.endswith("/data/mlflow/mlflow.db")
    assert dg.materialize([first], resources={"mlflow": resource(uri)}).success
    assert Tracker.for_data_root(tmp_path / "data").tracking_uri == uri


@pytest.mark.slow
def test_a_failed_step_process_ends_the_mlflow_run_as_finished(uri):
    """Limitation: the resource means to stop mlflow ending the shared run when a step's process
    exits (``atexit.unregister(mlflow.end_run)``), but mlflow 3 registers ``_safe_end_run``
    instead, so each step process of the multiprocess executor ends it, as FINISHED, even after
    the step failed (and the next step's process reopens it)."""
    script = textwrap.dedent(
        f"""
        import warnings
        warnings.simplefilter("ignore")
        import dagster as dg, mlflow
        from cbi_pipeline_tests.defs.test_dagster_mlflow import failing, resource
        result = dg.materialize(
            [failing], resources={{"mlflow": resource({uri!r})}}, raise_on_error=False
        )
        assert not result.success
        assert mlflow.active_run() is not None  # still RUNNING when the process exits
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=120)
    (run,) = runs_of(uri)
    assert run.info.status == "FINISHED"
