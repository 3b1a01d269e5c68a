"""The one Dagster code location of cbi_pipeline."""

from typing import Any

import dagster as dg

from cbi_pipeline.defs.assets.data import market_panel, raw_market, training_export
from cbi_pipeline.defs.resources import HardwareResource, PipelineSettings
from cbi_pipeline.settings import Settings, settings_from_env

ASSETS = [raw_market, market_panel, training_export]


def build_resources(settings: Settings) -> dict[str, Any]:
    return {
        "pipeline": PipelineSettings.from_settings(settings),
        "hardware": HardwareResource(),
    }


defs = dg.Definitions(assets=ASSETS, resources=build_resources(settings_from_env()))
