"""The one Dagster code location of cbi_pipeline."""

from typing import Any

import dagster as dg

from cbi_pipeline.defs.assets.correlations import correlation_cache
from cbi_pipeline.defs.assets.data import market_panel, raw_market, training_export
from cbi_pipeline.defs.assets.diagnostics import pretraining_diagnostics
from cbi_pipeline.defs.assets.evaluation import champion, evaluation, forecast
from cbi_pipeline.defs.assets.models import baselines, lightgbm_model, xgboost_model
from cbi_pipeline.defs.assets.neural import gru_model, lstm_model
from cbi_pipeline.defs.checks import CHECKS
from cbi_pipeline.defs.executors import executor_from_env
from cbi_pipeline.defs.jobs import JOBS
from cbi_pipeline.defs.resources import HardwareResource, MlflowTracking, PipelineSettings
from cbi_pipeline.defs.schedules import SCHEDULES
from cbi_pipeline.defs.sensors import SENSORS
from cbi_pipeline.settings import Settings, settings_from_env

# Asset checks are listed with the assets so that every dg.materialize(ASSETS, ...) runs them.
ASSETS = [
    raw_market,
    market_panel,
    correlation_cache,
    training_export,
    pretraining_diagnostics,
    lightgbm_model,
    xgboost_model,
    lstm_model,
    gru_model,
    baselines,
    evaluation,
    champion,
    forecast,
    *CHECKS,
]


def build_resources(settings: Settings) -> dict[str, Any]:
    return {
        "pipeline": PipelineSettings.from_settings(settings),
        "hardware": HardwareResource(),
        "mlflow_tracking": MlflowTracking(),
    }


defs = dg.Definitions(
    assets=ASSETS,
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources=build_resources(settings_from_env()),
    executor=executor_from_env(),
)
