"""The one Dagster code location of cbi_pipeline.

``defs`` is loaded lazily (``@dg.definitions``): the ``CBI_*`` settings and the executor are read
when Dagster loads the code location, not when this module is imported.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from cbi_pipeline.defs.assets.correlations import cache_freshness, correlation_cache
from cbi_pipeline.defs.assets.data import market_panel, raw_market, training_export
from cbi_pipeline.defs.assets.diagnostics import pretraining_diagnostics
from cbi_pipeline.defs.assets.evaluation import evaluation
from cbi_pipeline.defs.assets.forecast import forecast
from cbi_pipeline.defs.assets.models import MODEL_ASSET_DEFS
from cbi_pipeline.defs.assets.promotion import champion
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
    *MODEL_ASSET_DEFS,
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


def build_defs(settings: Settings, env: Mapping[str, str] | None = None) -> dg.Definitions:
    """The code location for these settings (the cache's freshness policy follows
    ``cache_max_age_days``) and the executor ``CBI_EXECUTOR`` in ``env`` asks for."""
    freshness = cache_freshness(settings.cache_max_age_days)
    cache = correlation_cache.map_asset_specs(
        lambda spec: spec.replace_attributes(freshness_policy=freshness)
    )
    assets = [cache if a is correlation_cache else a for a in ASSETS]
    return dg.Definitions(
        assets=assets,
        jobs=JOBS,
        schedules=SCHEDULES,
        sensors=SENSORS,
        resources=build_resources(settings),
        executor=executor_from_env(env),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What ``dagster dev`` and the daemon load: settings from the ``CBI_*`` environment."""
    return build_defs(settings_from_env())
