"""Promotion per horizon: the champion that forecasts, moved only by passing gates or a recorded
override."""

import dagster as dg
from pydantic import Field

from cbi_pipeline.defs.assets.evaluation import evaluation
from cbi_pipeline.defs.errors import reports_input_errors
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import MlflowTracking, PipelineSettings
from cbi_pipeline.steps.promotion import Override, promote
from cbi_pipeline.store.registry import Registry


class ChampionConfig(dg.Config):
    """An explicit override promotes a family whatever the gates say; it is recorded."""

    override_family: str = Field(default="", description="Family to promote regardless of gates.")
    override_by: str = Field(default="", description="Who decided the override.")
    override_reason: str = Field(default="", description="Why the gates are overridden.")


@dg.asset(
    group_name="evaluation",
    deps=[evaluation],
    partitions_def=horizon_partitions,
    kinds={"mlflow"},
)
@reports_input_errors
def champion(
    context: dg.AssetExecutionContext,
    config: ChampionConfig,
    pipeline: PipelineSettings,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """The model that forecasts this horizon: the candidate is promoted (MLflow alias
    ``champion`` on ``zl_{h}``) only when every gate passed on the current evaluation and the
    diagnostics pass now, also when this runs apart from the checks; otherwise the previous
    champion stays. An override (who, why) is recorded in MLflow and here."""
    horizon = context.partition_key
    override = None
    if config.override_family:
        override = Override(config.override_family, config.override_by, config.override_reason)
    settings = pipeline.settings()
    registry = Registry(mlflow_tracking.tracker(settings.data_root), settings.target_symbol)
    result = promote(pipeline.root(), horizon, override, registry)
    champ = result.champion
    context.log.info(
        f"{horizon}: {'promoted ' + str(result.family) if result.promoted else 'no promotion'} "
        f"({result.reason})"
    )
    return dg.MaterializeResult(
        metadata={
            "promoted": result.promoted,
            "reason": result.reason,
            "champion": champ["family"] if champ else "none",
            "champion_mape": champ["mape"] if champ else None,
            "promoted_at": champ["promoted_at"] if champ else None,
            "override": dg.MetadataValue.json((champ or {}).get("override") or {}),
            "mlflow": dg.MetadataValue.json((champ or {}).get("mlflow") or {}),
        }
    )
