"""Model assets: the baselines, LightGBM, XGBoost, LSTM and GRU on the same purged walk-forward,
per horizon. Each calls ``steps.models.train`` for its target and reports the same metadata.

The neural assets run in the ``accelerator`` concurrency pool, so with a pool limit of 1 only one
neural step uses the GPU (or the CPU's cores) at a time, whatever the executor runs in parallel.
torch is imported only inside their training step, never when the definitions load.
"""

import base64
from typing import Any

import dagster as dg
from pydantic import Field

from cbi_pipeline.core.importance_plot import importance_png
from cbi_pipeline.core.tables import markdown_table
from cbi_pipeline.core.vocabulary import (
    BASELINES_TARGET,
    ENSEMBLE,
    GRU,
    LIGHTGBM,
    LSTM,
    MODEL_ASSETS,
    NEURAL_FAMILIES,
    XGBOOST,
)
from cbi_pipeline.defs.assets.data import training_export
from cbi_pipeline.defs.assets.diagnostics import pretraining_diagnostics
from cbi_pipeline.defs.errors import reports_input_errors
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import HardwareResource, MlflowTracking, PipelineSettings
from cbi_pipeline.steps.models import fold_table, train
from cbi_pipeline.store.foldcache import fold_cache_line
from cbi_pipeline.store.models import FamilyOutput
from cbi_pipeline.store.tracking import IMPORTANCE_TOP

ACCELERATOR_POOL = "accelerator"
# Training waits for the horizon's diagnostics: a failing blocking check skips it in the same run.
MODEL_DEPS = [training_export, pretraining_diagnostics]


class NeuralConfig(dg.Config):
    """Overrides of the hardware config's network settings for one run; empty = its defaults."""

    hidden_size: int | None = Field(default=None, description="Recurrent units per layer.")
    num_layers: int | None = Field(default=None, description="Stacked recurrent layers.")
    dropout: float | None = Field(
        default=None, description="Dropout between layers and before the head, in [0, 1)."
    )
    max_epochs: int | None = Field(default=None, description="Most epochs per fold.")
    patience: int | None = Field(default=None, description="Early-stopping patience (epochs).")
    learning_rate: float | None = Field(default=None, description="Adam learning rate.")
    warm_start: bool | None = Field(
        default=None, description="Start each fold from the previous fold's weights."
    )


def importance_table(
    importance: list[dict[str, Any]], top: int = IMPORTANCE_TOP
) -> dg.TableMetadataValue:
    """The ``top`` features of a manifest's ``feature_importance``, largest gain first."""
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("rank", "int"),
            dg.TableColumn("feature", "string"),
            dg.TableColumn("share", "float", description="share of the final model's gain"),
            dg.TableColumn("gain", "float", description="total gain of its splits"),
        ]
    )
    records = [
        dg.TableRecord(
            {
                "rank": rank,
                "feature": str(row["feature"]),
                "share": round(float(row["share"]), 4),
                "gain": float(f"{float(row['gain']):.6g}"),
            }
        )
        for rank, row in enumerate(importance[:top], start=1)
    ]
    return dg.MetadataValue.table(records, schema)


def family_metadata(out: FamilyOutput) -> dict[str, Any]:
    """What one family's training shows in the UI: MAPE beside the random walk's, folds, trees or
    epochs, the fold table, the top features by gain, the files and the MLflow run."""
    folds = out.manifest["folds"]
    final = out.manifest["final"]
    entry: dict[str, Any] = {
        "val_mape": round(out.val_mape, 4),
        "random_walk_mape": round(out.random_walk_mape, 4),
        "folds": len(folds),
        "test_range": f"{folds[0]['test'][0]} .. {folds[-1]['test'][1]}",
        "predicted_rows": out.result.predictions.height,
        "seconds": round(out.seconds, 2),
        "folds_table": dg.MetadataValue.md(markdown_table(fold_table(out))),
        "predictions_path": dg.MetadataValue.path(str(out.predictions_path)),
        "manifest_path": dg.MetadataValue.path(str(out.model_dir / "manifest.json")),
    }
    cache = out.manifest.get("fold_cache")
    if cache:
        entry["fold_cache"] = fold_cache_line(cache)
        entry["folds_reused"] = cache["reused_folds"] + cache["predicted_folds"]
        entry["folds_refit"] = cache["refit_folds"]
        if cache["refit"]:
            entry["refit_reasons"] = dg.MetadataValue.json(cache["refit"])
    if out.trees:
        entry["trees_per_fold"] = dg.MetadataValue.json(out.trees)
        entry["final_trees"] = final["trees"]
    if out.epochs:
        entry["epochs_per_fold"] = dg.MetadataValue.json(out.epochs)
        entry["final_epochs"] = final["epochs"]
        entry["device"] = final["device"]
        entry["precision"] = final["precision"]
        entry["parameters"] = dg.MetadataValue.json(out.manifest["parameters"])
    if out.manifest["features"]:
        entry["features"] = len(out.manifest["features"])
    if out.manifest.get("feature_importance"):
        entry["feature_importance"] = importance_table(out.manifest["feature_importance"])
        chart = importance_png(
            out.manifest["feature_importance"], f"{out.horizon} {out.family}: feature importance"
        )
        encoded = base64.b64encode(chart).decode("ascii")
        entry["feature_importance_chart"] = dg.MetadataValue.md(
            f"![feature importance](data:image/png;base64,{encoded})"
        )
    if "feature_importance_method" in out.manifest:
        entry["feature_importance_method"] = out.manifest["feature_importance_method"]
    if out.model_path is not None:
        entry["model_path"] = dg.MetadataValue.path(str(out.model_path))
    if out.tracked is not None:
        entry["mlflow_run_id"] = out.tracked.run_id
        entry["mlflow_url"] = dg.MetadataValue.url(out.tracked.url)
    return entry


def _train(
    context: dg.AssetExecutionContext,
    target: str,
    pipeline: PipelineSettings,
    hardware: HardwareResource,
    mlflow_tracking: MlflowTracking,
    config: NeuralConfig | None = None,
) -> dg.MaterializeResult:
    horizon = context.partition_key
    settings = pipeline.settings()
    outputs = train(
        pipeline.root(),
        settings,
        horizon,
        target,
        hardware.system,
        tracker=mlflow_tracking.tracker(settings.data_root),
        tags=mlflow_tracking.run_tags(context),
        progress=context.log.info,
        overrides=config.model_dump() if config is not None else None,
    )
    metadata: dict[str, Any] = {}
    if not outputs:  # the configuration file does not enable this family
        enabled = ", ".join(settings.enabled_families())
        message = (
            f"{horizon} {target}: not enabled by {settings.project_config().path} "
            f"(families = {enabled}); its earlier outputs were removed"
        )
        context.log.info(message)
        return dg.MaterializeResult(metadata={"disabled": message})
    for out in outputs:
        # One asset holds both baselines: their entries are prefixed with the family name.
        prefix = "" if len(outputs) == 1 else f"{out.family}/"
        metadata.update({prefix + k: v for k, v in family_metadata(out).items()})
        device = f" on {out.manifest['final']['device']}" if out.epochs else ""
        context.log.info(
            f"{horizon} {out.family}: walk-forward MAPE {out.val_mape:.3f}% "
            f"(random walk {out.random_walk_mape:.3f}%) over {len(out.manifest['folds'])} folds"
            + device
        )
    return dg.MaterializeResult(metadata=metadata)


DESCRIPTIONS = {
    BASELINES_TARGET: """The yardsticks on the same folds: the random walk (no change: the predicted
price is the origin's price), drift (the mean h-step log return of each fold's training rows),
ets (exponential smoothing of log prices) and, when the data has a futures curve, futures_curve
(the market's own forecast: today's price of the contract that will be front at the horizon).
Writes ``predictions/{h}/{family}.parquet`` for each; a model must beat the random walk to earn
promotion.""",
    LIGHTGBM: """LightGBM predicting the h-step log return, trained on the purged expanding
walk-forward (regime-weighted, early-stopped on the end of each fold's training rows, features
selected on the fold's fit rows). Writes the out-of-fold predictions
``predictions/{h}/lightgbm.parquet`` and the final model (all labelled rows) as
``models/{h}/lightgbm/model.txt`` with its ``manifest.json``; tracked in MLflow with one nested
run per fold.""",
    XGBOOST: """XGBoost (hist) predicting the h-step log return on the same purged folds as
LightGBM. Writes ``predictions/{h}/xgboost.parquet`` and ``models/{h}/xgboost/model.json`` with
its ``manifest.json``; tracked in MLflow with one nested run per fold.""",
    LSTM: """An LSTM predicting the h-step log return from the last ``sequence_length`` days of
features (selected and standardised on each fold's fit rows), trained on the purged expanding
walk-forward with regime weights and early stopping on each fold's validation slice. Writes
``predictions/{h}/lstm.parquet`` and the final model as ``models/{h}/lstm/model.pt``
(state_dict) + ``model.json`` (config) with ``manifest.json``; tracked in MLflow with one nested
run per fold. Runs in the ``accelerator`` pool.""",
    ENSEMBLE: """The combination of every other family's out-of-fold forecasts, the random walk
among them: simplex weights fitted at each fold only on earlier folds' out-of-fold errors whose
labels ended before the fold's origin, shrunk toward the random walk while the evidence is thin.
It competes as a candidate like any family. Writes ``predictions/{h}/ensemble.parquet`` and
``models/{h}/ensemble/manifest.json`` (weights per fold, final weights and tonight's forecast).""",
    GRU: """A GRU on the same sequences, folds and training rules as ``lstm_model``. Writes
``predictions/{h}/gru.parquet`` and ``models/{h}/gru/model.pt`` + ``model.json`` with
``manifest.json``; tracked in MLflow with one nested run per fold. Runs in the ``accelerator``
pool.""",
}
KINDS = {
    BASELINES_TARGET: {"polars", "mlflow"},
    LIGHTGBM: {"lightgbm", "mlflow"},
    XGBOOST: {"xgboost", "mlflow"},
    LSTM: {"pytorch", "mlflow"},
    GRU: {"pytorch", "mlflow"},
    ENSEMBLE: {"polars", "mlflow"},
}


def model_asset(target: str) -> dg.AssetsDefinition:
    """The asset that trains one target (named as in ``vocabulary.MODEL_ASSETS``); the neural
    ones take a ``NeuralConfig`` in the launchpad and run in the ``accelerator`` pool."""
    spec: dict[str, Any] = {
        "name": MODEL_ASSETS[target],
        "group_name": "models",
        # The ensemble combines the other families' out-of-fold forecasts: it runs after them.
        "deps": MODEL_DEPS
        if target != ENSEMBLE
        else [*MODEL_DEPS, *(a for t, a in MODEL_ASSETS.items() if t != ENSEMBLE)],
        "partitions_def": horizon_partitions,
        "kinds": KINDS[target],
        "description": DESCRIPTIONS[target],
    }
    if target in NEURAL_FAMILIES:

        @dg.asset(**spec, pool=ACCELERATOR_POOL)
        @reports_input_errors
        def neural_asset(
            context: dg.AssetExecutionContext,
            config: NeuralConfig,
            pipeline: PipelineSettings,
            hardware: HardwareResource,
            mlflow_tracking: MlflowTracking,
        ) -> dg.MaterializeResult:
            return _train(context, target, pipeline, hardware, mlflow_tracking, config)

        return neural_asset

    @dg.asset(**spec)
    @reports_input_errors
    def model(
        context: dg.AssetExecutionContext,
        pipeline: PipelineSettings,
        hardware: HardwareResource,
        mlflow_tracking: MlflowTracking,
    ) -> dg.MaterializeResult:
        return _train(context, target, pipeline, hardware, mlflow_tracking)

    return model


baselines = model_asset(BASELINES_TARGET)
lightgbm_model = model_asset(LIGHTGBM)
xgboost_model = model_asset(XGBOOST)
lstm_model = model_asset(LSTM)
gru_model = model_asset(GRU)
ensemble_model = model_asset(ENSEMBLE)

MODEL_ASSET_DEFS = [baselines, lightgbm_model, xgboost_model, lstm_model, gru_model, ensemble_model]
