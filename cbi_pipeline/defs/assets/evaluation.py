"""Evaluation per horizon: where models earn (or fail to earn) trust."""

import base64
from typing import Any

import dagster as dg

from cbi_pipeline.core.evaluation_plots import headline_numbers
from cbi_pipeline.core.vocabulary import MODEL_ASSETS
from cbi_pipeline.defs.errors import reports_input_errors
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import MlflowTracking, PipelineSettings
from cbi_pipeline.steps.evaluation import evaluate_root, summary_markdown, summary_text
from cbi_pipeline.store.registry import Registry
from cbi_pipeline.store.tracking import model_version_url


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
    this asset say whether it has earned promotion. The chart (``evaluations/{h}.png``) shows
    the candidate and the random walk against the actual prices, and MAPE and skill by regime;
    the headline numbers are charted per partition (the Metadata section's Plots toggle). In MLflow the candidate is
    registered on ``zl_{h}`` under the alias ``candidate`` (``champion`` moves only on
    promotion), and the evaluation run holds the JSON and the chart."""
    horizon = context.partition_key
    root = pipeline.root()
    settings = pipeline.settings()
    out = evaluate_root(root, horizon, settings=settings)  # the gates of settings.gate_spec
    payload = out.payload
    tracker = mlflow_tracking.tracker(settings.data_root)
    registry = Registry(tracker, settings.target_symbol)
    run_id, url = registry.log_evaluation(
        horizon, payload, mlflow_tracking.run_tags(context), artifacts=(out.path, out.plot_path)
    )
    cand = payload["candidate"]
    registered = registry.set_candidate(
        horizon, payload, str(root.model_dir(horizon, str(cand))) if cand else "", run_id
    )
    context.log.info(summary_text(payload))
    encoded = base64.b64encode(out.plot_path.read_bytes()).decode("ascii")
    metadata: dict[str, Any] = {
        "summary": dg.MetadataValue.md(summary_markdown(payload)),
        "candidate": str(cand),
        "promotable": payload["promotable"],
        **{k: dg.MetadataValue.float(v) for k, v in headline_numbers(payload).items()},
        "families": dg.MetadataValue.json(sorted(payload["families"])),
        "chart": dg.MetadataValue.md(f"![evaluation](data:image/png;base64,{encoded})"),
        "chart_path": dg.MetadataValue.path(str(out.plot_path)),
        "path": dg.MetadataValue.path(str(out.path)),
        "mlflow_run_id": run_id,
        "mlflow_run": dg.MetadataValue.url(url),
        "mlflow_candidate": dg.MetadataValue.json(registered or {}),
    }
    if registered:
        metadata["mlflow_model"] = dg.MetadataValue.url(
            model_version_url(tracker.ui_url, registered["model"], registered["version"])
        )
    return dg.MaterializeResult(metadata=metadata)
