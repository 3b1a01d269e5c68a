"""Scale-out on a real distributed engine: the training assets on a ``dask.distributed``
LocalCluster (127.0.0.1) through dagster-dask's executor, launched by the ``dagster`` CLI against a
persistent instance, give the same predictions as an in-process run."""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cbi_pipeline_tests.sample_cycle import HORIZON, SAMPLE_ENV, TRAINING
from cbi_pipeline_tests.services import BIN, LOOPBACK, REPO, service_env, write_instance_yaml

pytestmark = pytest.mark.slow

H = HORIZON
FAMILIES = ("random_walk", "drift", "lightgbm")


@pytest.fixture
def distributed(sample_cycle_root, tmp_path, monkeypatch) -> Path:
    """A copy of the sample cycle's data root without the training outputs."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "dask"
    shutil.copytree(sample_cycle_root, root)
    shutil.rmtree(root / "predictions")
    for family in FAMILIES:
        shutil.rmtree(root / "models" / H / family)
    return root


def test_training_on_a_dask_cluster_matches_the_in_process_run(
    sample_cycle_root, distributed, tmp_path, monkeypatch
):
    from dask.distributed import Client, LocalCluster

    local = sample_cycle_root  # trained in-process with the same settings

    # Workers load the code location themselves: they need the same CBI_* settings.
    for key, value in {**SAMPLE_ENV, "CBI_DATA_ROOT": str(distributed)}.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "dagster_home"
    write_instance_yaml(home)  # dagster-dask needs a persistent instance
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host=LOOPBACK,
        dashboard_address=None,
    )
    try:
        with Client(cluster) as client:
            worker_pids = set(client.run(os.getpid).values())
            assert len(worker_pids) == 2 and os.getpid() not in worker_pids
            env = service_env(
                **SAMPLE_ENV,
                CBI_DATA_ROOT=str(distributed),
                CBI_EXECUTOR="dask",
                CBI_DASK_SCHEDULER=cluster.scheduler_address,
                DAGSTER_HOME=str(home),
            )
            cmd = [
                str(BIN / "dagster"),
                "asset",
                "materialize",
                "-m",
                "cbi_pipeline.definitions",
                "--select",
                ",".join(TRAINING),
                "--partition",
                H,
            ]
            done = subprocess.run(
                cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, done.stderr[-4000:]
    finally:
        cluster.close()

    # The run is recorded in the persistent instance, and its steps ran in the Dask workers.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (record,) = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        starts = instance.all_logs(
            record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START
        )
        step_pids = {e.dagster_event.step_key: e.dagster_event.pid for e in starts}
        (run_start,) = instance.all_logs(
            record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_START
        )
    assert set(step_pids) == set(TRAINING)
    assert set(step_pids.values()) <= worker_pids, (step_pids, worker_pids)
    assert run_start.dagster_event.pid not in worker_pids  # the orchestrator stayed outside

    # Same out-of-fold predictions and the same final model, byte for byte.
    for family in FAMILIES:
        path = Path("predictions", H, f"{family}.parquet")
        expected = pl.read_parquet(local / path)
        assert expected.height > 500
        assert_frame_equal(pl.read_parquet(distributed / path), expected, check_exact=True)
    manifests = [
        json.loads((root / "models" / H / "lightgbm" / "manifest.json").read_text())
        for root in (local, distributed)
    ]
    assert manifests[0]["model_sha256"] == manifests[1]["model_sha256"]
    model = distributed / "models" / H / "lightgbm" / manifests[1]["model_file"]
    assert hashlib.sha256(model.read_bytes()).hexdigest() == manifests[1]["model_sha256"]
