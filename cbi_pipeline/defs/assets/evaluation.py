"""Evaluation, promotion and forecast per horizon: where models earn (or fail to earn) trust."""

import base64

import dagster as dg
from pydantic import Field

from cbi_pipeline import evaluate, forecasting
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import MlflowTracking, PipelineSettings
from cbi_pipeline.registry import Registry

MODEL_ASSETS = ["baselines", "lightgbm_model", "xgboost_model", "lstm_model", "gru_model"]


@dg.asset(
    group_name="evaluation",
    deps=[*MODEL_ASSETS, "pretraining_diagnostics"],
    partitions_def=horizon_partitions,
    kinds={"polars", "mlflow"},
)
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
    out = evaluate.evaluate_root(root, horizon)
    registry = Registry(mlflow_tracking.tracker(pipeline.data_root), pipeline.target_symbol)
    run_id, url = registry.log_evaluation(
        horizon, out.payload, {"dagster.run_id": context.run.run_id, "dagster.partition": horizon}
    )
    payload = out.payload
    context.log.info(evaluate.summary_text(payload))
    return dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.md(evaluate.summary_markdown(payload)),
            "candidate": str(payload["candidate"]),
            "promotable": payload["promotable"],
            "families": dg.MetadataValue.json(sorted(payload["families"])),
            "path": dg.MetadataValue.path(str(out.path)),
            "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(url),
        }
    )


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
        override = evaluate.Override(
            config.override_family, config.override_by, config.override_reason
        )
    registry = Registry(mlflow_tracking.tracker(pipeline.data_root), pipeline.target_symbol)
    result = evaluate.promote(pipeline.root(), horizon, override, registry)
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


@dg.asset(
    group_name="evaluation",
    deps=[champion],
    partitions_def=horizon_partitions,
    kinds={"polars", "mlflow"},
)
def forecast(
    context: dg.AssetExecutionContext, pipeline: PipelineSettings, mlflow_tracking: MlflowTracking
) -> dg.MaterializeResult:
    """The champion's forecast from the latest date (``forecasts/{h}.parquet``): price, h-step
    return and a 90% interval from conformal quantiles of its out-of-fold residuals, with a chart
    of recent prices, out-of-fold predictions and the forecast. No champion: no forecast, said
    plainly."""
    horizon = context.partition_key
    root = pipeline.root()
    pointer = evaluate.current_champion(root, horizon)
    if pointer is None:
        message = (
            f"No champion for {horizon}: no model has passed every gate, so no forecast is issued."
        )
        context.log.warning(message)
        return dg.MaterializeResult(metadata={"forecast": message, "champion": "none"})
    fc = forecasting.make_forecast(root, pipeline.settings(), horizon, pointer)
    row = fc.frame.row(0, named=True)
    tracker = mlflow_tracking.tracker(pipeline.data_root)
    run_id = Registry(tracker, pipeline.target_symbol).log_forecast(
        horizon, row, fc.chart_path, {"dagster.run_id": context.run.run_id}
    )
    encoded = base64.b64encode(fc.chart_path.read_bytes()).decode("ascii")
    text = (
        f"**{fc.family}** forecasts {row['forecast_price']:.2f} on {row['target_date']} "
        f"(from {row['price']:.2f} on {row['origin_date']}, {row['pred_return']:+.2%}); "
        f"90% interval {row['lower']:.2f} .. {row['upper']:.2f}"
    )
    context.log.info(f"{horizon}: {text}")
    return dg.MaterializeResult(
        metadata={
            "forecast": dg.MetadataValue.md(text),
            "champion": fc.family,
            "forecast_price": row["forecast_price"],
            "lower": row["lower"],
            "upper": row["upper"],
            "chart": dg.MetadataValue.md(f"![forecast](data:image/png;base64,{encoded})"),
            "path": dg.MetadataValue.path(str(fc.path)),
            "mlflow_run_id": run_id,
        }
    )
