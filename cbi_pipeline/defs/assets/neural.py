"""Neural model assets: LSTM and GRU on the same purged walk-forward as the tree models.

Both run in the ``accelerator`` concurrency pool, so with a pool limit of 1 only one neural step
uses the GPU (or the CPU's cores) at a time, whatever the executor runs in parallel. torch is
imported only inside the training step, never when the definitions load.
"""

from typing import Any

import dagster as dg
from pydantic import Field

from cbi_pipeline import neural_training
from cbi_pipeline.defs.assets.models import MODEL_DEPS
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import HardwareResource, MlflowTracking, PipelineSettings
from cbi_pipeline.report import markdown_table

ACCELERATOR_POOL = "accelerator"


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


def _train(
    context: dg.AssetExecutionContext,
    family: str,
    config: NeuralConfig,
    pipeline: PipelineSettings,
    hardware: HardwareResource,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    horizon = context.partition_key
    out = neural_training.train_neural(
        pipeline.root(),
        pipeline.settings(),
        horizon,
        family,
        hardware.system,
        tracker=mlflow_tracking.tracker(pipeline.data_root),
        tags={"dagster.run_id": context.run.run_id, "dagster.partition": horizon},
        progress=context.log.info,
        overrides=config.model_dump(),
    )
    folds = out.manifest["folds"]
    final = out.manifest["final"]
    metadata: dict[str, Any] = {
        "val_mape": round(out.val_mape, 4),
        "random_walk_mape": round(out.random_walk_mape, 4),
        "folds": len(folds),
        "test_range": f"{folds[0]['test'][0]} .. {folds[-1]['test'][1]}",
        "predicted_rows": out.result.predictions.height,
        "seconds": round(out.seconds, 2),
        "device": final["device"],
        "precision": final["precision"],
        "epochs_per_fold": dg.MetadataValue.json([f["epochs"] for f in folds]),
        "final_epochs": final["epochs"],
        "features": len(out.manifest["features"]),
        "parameters": dg.MetadataValue.json(out.manifest["parameters"]),
        "folds_table": dg.MetadataValue.md(markdown_table(neural_training.neural_fold_table(out))),
        "predictions_path": dg.MetadataValue.path(str(out.predictions_path)),
        "manifest_path": dg.MetadataValue.path(str(out.model_dir / "manifest.json")),
    }
    if out.model_path is not None:
        metadata["model_path"] = dg.MetadataValue.path(str(out.model_path))
    if out.tracked is not None:
        metadata["mlflow_run_id"] = out.tracked.run_id
        metadata["mlflow_url"] = dg.MetadataValue.url(out.tracked.url)
    context.log.info(
        f"{horizon} {family}: walk-forward MAPE {out.val_mape:.3f}% (random walk "
        f"{out.random_walk_mape:.3f}%) over {len(folds)} folds on {final['device']}"
    )
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name="models",
    deps=MODEL_DEPS,
    partitions_def=horizon_partitions,
    kinds={"pytorch", "mlflow"},
    pool=ACCELERATOR_POOL,
)
def lstm_model(
    context: dg.AssetExecutionContext,
    config: NeuralConfig,
    pipeline: PipelineSettings,
    hardware: HardwareResource,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """An LSTM predicting the h-step log return from the last ``sequence_length`` days of
    features (selected and standardised on each fold's fit rows), trained on the purged
    expanding walk-forward with regime weights and early stopping on each fold's validation
    slice. Writes ``predictions/{h}/lstm.parquet`` and the final model as
    ``models/{h}/lstm/model.pt`` (state_dict) + ``model.json`` (config) with ``manifest.json``;
    tracked in MLflow with one nested run per fold. Runs in the ``accelerator`` pool."""
    return _train(context, "lstm", config, pipeline, hardware, mlflow_tracking)


@dg.asset(
    group_name="models",
    deps=MODEL_DEPS,
    partitions_def=horizon_partitions,
    kinds={"pytorch", "mlflow"},
    pool=ACCELERATOR_POOL,
)
def gru_model(
    context: dg.AssetExecutionContext,
    config: NeuralConfig,
    pipeline: PipelineSettings,
    hardware: HardwareResource,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """A GRU on the same sequences, folds and training rules as ``lstm_model``. Writes
    ``predictions/{h}/gru.parquet`` and ``models/{h}/gru/model.pt`` + ``model.json`` with
    ``manifest.json``; tracked in MLflow with one nested run per fold. Runs in the
    ``accelerator`` pool."""
    return _train(context, "gru", config, pipeline, hardware, mlflow_tracking)
