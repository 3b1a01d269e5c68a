"""Promotion per horizon: the champion that forecasts, moved only by passing gates or a recorded
override."""

import dagster as dg
from pydantic import Field

from cbi_pipeline.defs.assets.evaluation import evaluation
from cbi_pipeline.defs.errors import reports_input_errors
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import MlflowTracking, PipelineSettings
from cbi_pipeline.steps.promotion import Override, PromotionResult, promote
from cbi_pipeline.store.registry import Registry


class ChampionConfig(dg.Config):
    """An explicit override promotes a family whatever the gates say; it is recorded."""

    override_family: str = Field(default="", description="Family to promote regardless of gates.")
    override_by: str = Field(default="", description="Who decided the override.")
    override_reason: str = Field(default="", description="Why the gates are overridden.")


def outcome_text(result: PromotionResult) -> tuple[str, str]:
    """The catalog's ``champion`` value (the family, or ``none (why)``) and one line saying what
    this run did: promoted, kept the previous champion, or left the horizon without one."""
    champ = result.champion
    if result.promoted and champ is not None:
        return str(champ["family"]), f"promoted {champ['family']} ({result.reason})"
    if champ is not None:
        why = result.reason.removesuffix(f"; keeping {champ['family']}")
        return str(champ["family"]), f"kept {champ['family']}: {why}"
    why = result.reason.removesuffix("; no champion")
    if why.startswith("gates failed: "):
        why = f"no candidate passed every gate; failed: {why.removeprefix('gates failed: ')}"
    return f"none ({why})", f"no champion: {why}; the forecast is the best benchmark's"


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
    """The model that forecasts this horizon, or none: the candidate is promoted (MLflow alias
    ``champion`` on ``zl_{h}``) only when every gate passed on the current evaluation and the
    diagnostics pass now, also when this runs apart from the checks; otherwise the previous
    champion stays, and a horizon that never had one has none (metadata ``champion: none (...)``,
    and the forecast is the best benchmark's). An override (who, why) is recorded in MLflow and
    here."""
    horizon = context.partition_key
    override = None
    if config.override_family:
        override = Override(config.override_family, config.override_by, config.override_reason)
    settings = pipeline.settings()
    registry = Registry(mlflow_tracking.tracker(settings.data_root), settings.target_symbol)
    result = promote(pipeline.root(), horizon, override, registry)
    champ = result.champion
    name, outcome = outcome_text(result)
    context.log.info(f"{horizon}: {outcome}")
    return dg.MaterializeResult(
        metadata={
            "outcome": outcome,
            "promoted": result.promoted,
            "reason": result.reason,
            "champion": name,
            "champion_mape": champ["mape"] if champ else None,
            "promoted_at": champ["promoted_at"] if champ else None,
            "override": dg.MetadataValue.json((champ or {}).get("override") or {}),
            "mlflow": dg.MetadataValue.json((champ or {}).get("mlflow") or {}),
        }
    )
