"""The forecast per horizon: what the desk reads every evening."""

import base64

import dagster as dg

from cbi_pipeline.defs.assets.promotion import champion
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import MlflowTracking, PipelineSettings
from cbi_pipeline.steps.forecast import make_forecast
from cbi_pipeline.store.models import current_champion
from cbi_pipeline.store.registry import Registry


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
    pointer = current_champion(root, horizon)
    if pointer is None:
        message = (
            f"No champion for {horizon}: no model has passed every gate, so no forecast is issued."
        )
        context.log.warning(message)
        return dg.MaterializeResult(metadata={"forecast": message, "champion": "none"})
    settings = pipeline.settings()
    fc = make_forecast(root, settings, horizon, pointer)
    row = fc.frame.row(0, named=True)
    tracker = mlflow_tracking.tracker(settings.data_root)
    run_id = Registry(tracker, settings.target_symbol).log_forecast(
        horizon, row, fc.chart_path, mlflow_tracking.run_tags(context)
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
