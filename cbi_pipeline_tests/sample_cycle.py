"""One horizon's cycle on a small sample, built once per session for the tests that need a fully
populated data root (reliability drills, the object-store comparison). The fixture is registered
in the package conftest; this module imports Dagster only when the cycle runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cbi_pipeline.settings import Settings

# A small sample and a short walk-forward: five test blocks of 126 days from 2018.
SAMPLE_ENV = {
    "CBI_SAMPLE_START": "2016-01-04",
    "CBI_SAMPLE_END": "2019-12-31",
    "CBI_FIRST_TEST_DATE": "2018-01-02",
    "CBI_REFIT_STEP_DAYS": "126",
    "CBI_VALIDATION_ROWS": "63",
    "CBI_MIN_TRAIN_ROWS": "252",
}
HORIZON = "1w"
TRAINING = ["baselines", "lightgbm_model"]
OVERRIDE = {
    "ops": {
        "champion": {
            "config": {
                "override_family": "lightgbm",
                "override_by": "test suite",
                "override_reason": "a champion to protect (the gates rightly fail)",
            }
        }
    }
}


def sample_settings(root: str | Path, **extra: str) -> Settings:
    from cbi_pipeline.settings import settings_from_env

    return settings_from_env(env={**SAMPLE_ENV, "CBI_DATA_ROOT": str(root), **extra})


def run_sample_cycle(settings: Settings) -> None:
    """Data, correlation cache, export, diagnostics, baselines and LightGBM, evaluation (its gates
    fail on the sample: a normal outcome), LightGBM promoted by a recorded override, forecast."""
    import dagster as dg

    from cbi_pipeline.definitions import ASSETS, build_resources
    from cbi_pipeline.store.correlations import latest_partition_key
    from cbi_pipeline.store.root import DataRoot

    resources = build_resources(settings)
    instance = dg.DagsterInstance.ephemeral()

    def run(selection, partition=None, config=None, must_pass=True):
        result = dg.materialize(
            ASSETS,
            selection=selection,
            partition_key=partition,
            resources=resources,
            instance=instance,
            run_config=config or {},
            raise_on_error=False,
        )
        done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        errors = [e.step_failure_data.error for e in result.get_step_failure_events()]
        assert set(selection) <= done, [e.to_string() for e in errors if e is not None]
        assert result.success or not must_pass

    run(["raw_market", "market_panel"])
    run(["correlation_cache"], latest_partition_key(DataRoot(settings.data_root)))
    run(["training_export", "pretraining_diagnostics", *TRAINING], HORIZON)
    run(["evaluation"], HORIZON, must_pass=False)
    run(["champion", "forecast"], HORIZON, OVERRIDE)


@pytest.fixture(scope="session")
def sample_cycle_root(tmp_path_factory, empty_mlflow_store) -> Path:
    """A local data root after ``run_sample_cycle`` (with its own MLflow store). Copy it before
    changing anything."""
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    root = tmp_path_factory.mktemp("sample-cycle") / "root"
    (root / "mlflow").mkdir(parents=True)
    shutil.copyfile(empty_mlflow_store, root / "mlflow" / "mlflow.db")
    try:
        run_sample_cycle(sample_settings(root))
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return root
