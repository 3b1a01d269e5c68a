"""Evaluation per horizon: where models earn (or fail to earn) trust."""

import dagster as dg

from cbi_pipeline.core.vocabulary import MODEL_ASSETS
from cbi_pipeline.defs.errors import reports_input_errors
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import MlflowTracking, PipelineSettings
from cbi_pipeline.steps.evaluation import evaluate_root, summary_markdown, summary_text
from cbi_pipeline.store.registry import Registry


@dg.asset(
    group_name="evaluation",
    deps=[*MODEL_ASSETS.values(), "pretraining_diagnostics"],
    partitions_def=horizon_partitions,
    kinds={"polars", "mlflow"},
)
@reports_input_errors
def evaluation(
    context: dg.AssetExecutionContext, pipeline: PipelineSettings, mlflow_tracking: MlflowTracking
) -> dg.MaterializeResult:
    """Every family and baseline compared on the same out-of-fold walk-forward predictions
    (``evaluations/{h}.json``): MAPE, sMAPE, MAE, RMSE, skill and MASE against the random walk,
    hit rate, a non-overlapping Sharpe net of costs with its PSR, by regime, quarter, crop season
    and fold. The candidate is the best skill (ties to the simpler model); the gate checks on
    this asset say whether it has earned promotion."""
    horizon = context.partition_key
    root = pipeline.root()
    settings = pipeline.settings()
    out = evaluate_root(root, horizon, gate_spec=settings.gate_spec(horizon), settings=settings)
    registry = Registry(mlflow_tracking.tracker(settings.data_root), settings.target_symbol)
    run_id, url = registry.log_evaluation(horizon, out.payload, mlflow_tracking.run_tags(context))
    payload = out.payload
    context.log.info(summary_text(payload))
    return dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.md(summary_markdown(payload)),
            "candidate": str(payload["candidate"]),
            "promotable": payload["promotable"],
            "families": dg.MetadataValue.json(sorted(payload["families"])),
            "path": dg.MetadataValue.path(str(out.path)),
            "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(url),
        }
    )
