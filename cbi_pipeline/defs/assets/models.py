"""Model assets: LightGBM, XGBoost and the baselines on the purged walk-forward, per horizon."""

from typing import Any

import dagster as dg

from cbi_pipeline import training
from cbi_pipeline.defs.assets.data import training_export
from cbi_pipeline.defs.assets.diagnostics import pretraining_diagnostics
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import HardwareResource, MlflowTracking, PipelineSettings
from cbi_pipeline.report import markdown_table


def _train(
    context: dg.AssetExecutionContext,
    target: str,
    pipeline: PipelineSettings,
    hardware: HardwareResource,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    horizon = context.partition_key
    outputs = training.train(
        pipeline.root(),
        pipeline.settings(),
        horizon,
        target,
        hardware.system,
        tracker=mlflow_tracking.tracker(pipeline.data_root),
        tags={"dagster.run_id": context.run.run_id, "dagster.partition": horizon},
        progress=context.log.info,
    )
    metadata: dict[str, Any] = {}
    for out in outputs:
        # One asset holds both baselines: their entries are prefixed with the family name.
        prefix = "" if len(outputs) == 1 else f"{out.family}/"
        entry: dict[str, Any] = {
            "val_mape": round(out.val_mape, 4),
            "random_walk_mape": round(out.random_walk_mape, 4),
            "folds": len(out.manifest["folds"]),
            "test_range": f"{out.manifest['folds'][0]['test'][0]} .. {out.manifest['folds'][-1]['test'][1]}",
            "predicted_rows": out.result.predictions.height,
            "seconds": round(out.seconds, 2),
            "folds_table": dg.MetadataValue.md(markdown_table(training.fold_table(out))),
            "predictions_path": dg.MetadataValue.path(str(out.predictions_path)),
            "manifest_path": dg.MetadataValue.path(str(out.model_dir / "manifest.json")),
        }
        if out.trees:
            entry["trees_per_fold"] = dg.MetadataValue.json(out.trees)
            entry["final_trees"] = out.manifest["final"]["trees"]
            entry["features"] = len(out.manifest["features"])
        if out.model_path is not None:
            entry["model_path"] = dg.MetadataValue.path(str(out.model_path))
        if out.tracked is not None:
            entry["mlflow_run_id"] = out.tracked.run_id
            entry["mlflow_url"] = dg.MetadataValue.url(out.tracked.url)
        metadata.update({prefix + k: v for k, v in entry.items()})
        context.log.info(
            f"{horizon} {out.family}: walk-forward MAPE {out.val_mape:.3f}% "
            f"(random walk {out.random_walk_mape:.3f}%) over {len(out.manifest['folds'])} folds"
        )
    return dg.MaterializeResult(metadata=metadata)


# Training waits for the horizon's diagnostics: a failing blocking check skips it in the same run.
MODEL_DEPS = [training_export, pretraining_diagnostics]


@dg.asset(
    group_name="models",
    deps=MODEL_DEPS,
    partitions_def=horizon_partitions,
    kinds={"lightgbm", "mlflow"},
)
def lightgbm_model(
    context: dg.AssetExecutionContext,
    pipeline: PipelineSettings,
    hardware: HardwareResource,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """LightGBM predicting the h-step log return, trained on the purged expanding walk-forward
    (regime-weighted, early-stopped on the end of each fold's training rows, features selected on
    the fold's fit rows). Writes the out-of-fold predictions ``predictions/{h}/lightgbm.parquet``
    and the final model (all labelled rows) as ``models/{h}/lightgbm/model.txt`` with its
    ``manifest.json``; tracked in MLflow with one nested run per fold."""
    return _train(context, "lightgbm", pipeline, hardware, mlflow_tracking)


@dg.asset(
    group_name="models",
    deps=MODEL_DEPS,
    partitions_def=horizon_partitions,
    kinds={"xgboost", "mlflow"},
)
def xgboost_model(
    context: dg.AssetExecutionContext,
    pipeline: PipelineSettings,
    hardware: HardwareResource,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """XGBoost (hist) predicting the h-step log return on the same purged folds as LightGBM.
    Writes ``predictions/{h}/xgboost.parquet`` and ``models/{h}/xgboost/model.json`` with its
    ``manifest.json``; tracked in MLflow with one nested run per fold."""
    return _train(context, "xgboost", pipeline, hardware, mlflow_tracking)


@dg.asset(
    group_name="models",
    deps=MODEL_DEPS,
    partitions_def=horizon_partitions,
    kinds={"polars", "mlflow"},
)
def baselines(
    context: dg.AssetExecutionContext,
    pipeline: PipelineSettings,
    hardware: HardwareResource,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """The yardsticks on the same folds: the random walk (no change: the predicted price is the
    origin's price) and drift (the mean h-step log return of each fold's training rows). Writes
    ``predictions/{h}/random_walk.parquet`` and ``predictions/{h}/drift.parquet``; a model must
    beat the random walk to earn promotion."""
    return _train(context, "baselines", pipeline, hardware, mlflow_tracking)
