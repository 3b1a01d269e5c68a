"""The forecast per horizon: what the desk reads every evening."""

import base64

import dagster as dg

from cbi_pipeline.core.intervals import INTERVALS
from cbi_pipeline.defs.assets.promotion import champion
from cbi_pipeline.defs.errors import reports_input_errors
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import MlflowTracking, PipelineSettings
from cbi_pipeline.steps.forecast import make_forecast
from cbi_pipeline.store.registry import Registry


@dg.asset(
    group_name="evaluation",
    deps=[champion],
    partitions_def=horizon_partitions,
    kinds={"polars", "mlflow"},
)
@reports_input_errors
def forecast(
    context: dg.AssetExecutionContext, pipeline: PipelineSettings, mlflow_tracking: MlflowTracking
) -> dg.MaterializeResult:
    """Tonight's forecast from the latest date (``forecasts/{h}.parquet``, appended to
    ``forecasts/log.parquet``): a point and nine quantile prices (2.5% .. 97.5%) calibrated on
    out-of-fold residuals, issued every night. It is the champion's when one is promoted,
    otherwise the best benchmark's (the baseline with the lowest out-of-fold pinball loss),
    labelled as such with the gates that kept the candidate out: metadata ``issued_by`` says
    whose (``champion (lightgbm)``, ``benchmark (random_walk)``), ``source`` champion or
    benchmark; with a fan chart of recent prices, out-of-fold predictions and the 50/80/95%
    bands."""
    horizon = context.partition_key
    settings = pipeline.settings()
    fc = make_forecast(pipeline.root(), settings, horizon)
    row = fc.frame.row(0, named=True)
    tracker = mlflow_tracking.tracker(settings.data_root)
    run_id = Registry(tracker, settings.target_symbol).log_forecast(
        horizon, row, fc.chart_path, mlflow_tracking.run_tags(context)
    )
    lo80, hi80 = (row[q] for q in INTERVALS[0.8])
    lo90, hi90 = (row[q] for q in INTERVALS[0.9])
    numbers = (
        f"{row['forecast_price']:.2f} on {row['target_date']} (from {row['price']:.2f} on "
        f"{row['origin_date']}, {row['pred_return']:+.2%}); 80% interval {lo80:.2f} .. "
        f"{hi80:.2f}, 90% interval {lo90:.2f} .. {hi90:.2f}"
    )
    context.log.info(f"{horizon}: {fc.label}; {numbers}")
    encoded = base64.b64encode(fc.chart_path.read_bytes()).decode("ascii")
    return dg.MaterializeResult(
        metadata={
            "forecast": dg.MetadataValue.md(f"**{fc.label}**\n\n{numbers}"),
            "issued_by": f"{fc.source} ({fc.family})",
            "source": fc.source,
            "family": fc.family,
            "forecast_price": row["forecast_price"],
            "lower_80": lo80,
            "upper_80": hi80,
            "lower_90": lo90,
            "upper_90": hi90,
            "origin_date": str(row["origin_date"]),
            "target_date": str(row["target_date"]),
            "chart": dg.MetadataValue.md(f"![forecast](data:image/png;base64,{encoded})"),
            "path": dg.MetadataValue.path(str(fc.path)),
            "mlflow_run_id": run_id,
        }
    )
