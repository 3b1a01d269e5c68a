"""LSTM / GRU training over the data root, shared by ``lstm_model``, ``gru_model`` and ``cbi train``.

Same folds, outputs and tracking as the tree families (``training``): the out-of-fold predictions
``predictions/{h}/{family}.parquet``; under ``models/{h}/{family}/`` the final model's
``state_dict`` (``model.pt``), its JSON config (``model.json``: architecture, features, scaler
statistics, sequence length, weights hash) and ``manifest.json``; one MLflow run per (horizon,
family) with a nested run per fold (``val_mape``, epochs, loss curves). Every file is written
atomically; the config goes first, so a crash between files leaves a config whose weights hash
does not match and loading fails loudly instead of mixing two models.

torch is imported only when a function here runs (the Dagster definitions import this module).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from cbi_pipeline.core.hardware import SystemInfo, get_config_for_model
from cbi_pipeline.core.walkforward import date_range, plan_folds
from cbi_pipeline.settings import Settings
from cbi_pipeline.storage import DataRoot, StorageError, read_json, write_json
from cbi_pipeline.tracking import Tracker, experiment_name
from cbi_pipeline.training import (
    FEATURE_SELECTION,
    NEURAL_FAMILIES,
    FamilyOutput,
    _write,
    build_manifest,
    load_export,
    walk_forward_spec,
)

if TYPE_CHECKING:
    from cbi_pipeline.core.models.neural import NeuralModel

CONFIG_FILE = "model.json"


def train_neural(
    root: DataRoot,
    settings: Settings,
    horizon: str,
    family: str,
    system: SystemInfo,
    tracker: Tracker | None = None,
    tags: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> FamilyOutput:
    """Train one neural family for one horizon on the purged walk-forward and write every output.

    Batch size, sequence length, architecture, device and precision come from
    ``get_config_for_model(family, horizon, system)``; ``overrides`` (None values ignored)
    replace any of them (e.g. ``{"hidden_size": 64, "num_layers": 2, "dropout": 0.1}``).
    """
    from cbi_pipeline.core.models import neural

    if family not in NEURAL_FAMILIES:
        raise ValueError(f"unknown neural family {family!r}; expected one of {NEURAL_FAMILIES}")
    start = time.perf_counter()
    wf_spec = walk_forward_spec(settings, horizon)
    loaded = load_export(root, settings, horizon)
    data = loaded.data
    spec = neural.neural_spec(
        family,
        get_config_for_model(family, horizon, system),
        {"seed": settings.train_seed, **dict(overrides or {})},
    )
    folds = plan_folds(data.dates, data.labelled, wf_spec)
    run = neural.walk_forward_neural(data, folds, spec, progress)
    weights = run.final.weights_bytes()
    last_fold = run.result.folds[-1]
    final = {
        "fit": date_range(data, run.final_rows),
        "rows": int(run.final_rows.size),
        "epochs": run.final_history.epochs,
        "epochs_from": f"early stopping on fold {last_fold.fold} (the last fold): best epoch "
        f"{last_fold.info['best_epoch']}",
        "warm_start_from": f"fold {last_fold.fold}" if spec.warm_start else None,
        "train_loss_curve": [round(v, 6) for v in run.final_history.train_loss],
        "device": run.device,
        "precision": run.final.precision,
    }
    config = run.final.config(
        {
            "family": family,
            "horizon": horizon,
            "horizon_days": data.horizon_days,
            "label": "log(target / price): the h-step log return",
            "training": {**neural.spec_parameters(spec), **final},
        }
    )
    seconds = time.perf_counter() - start
    manifest = build_manifest(
        loaded,
        settings,
        wf_spec,
        run.result,
        seconds,
        model_file=neural.WEIGHTS_FILE,
        model_bytes=weights,
        features=list(run.final.features),
        parameters={**neural.spec_parameters(spec), "device_used": run.device},
        final=final,
        feature_selection={
            "method": FEATURE_SELECTION,
            "max_features": spec.max_features,
            "candidates": len(data.features),
        },
    )
    manifest["config_file"] = CONFIG_FILE
    write_json(config, root.model_dir(horizon, family) / CONFIG_FILE)
    out = _write(root, horizon, run.result, manifest, weights)
    if tracker is None:
        return out
    tracked = tracker.log_walk_forward(
        experiment_name(settings.target_symbol, horizon),
        out.manifest,
        out.model_dir,
        out.predictions_path,
        tags,
    )
    return dataclasses.replace(out, tracked=tracked)


def load_neural_model(model_dir: Path) -> NeuralModel:
    """Rebuild the stored final model of ``models/{h}/{family}/`` (weights read weights_only)."""
    from cbi_pipeline.core.models import neural

    config_path = model_dir / CONFIG_FILE
    config = read_json(config_path, "lstm_model / gru_model")
    if not isinstance(config, dict):
        raise StorageError(f"{config_path}: expected a JSON object")
    weights_path = model_dir / str(config.get("weights_file", neural.WEIGHTS_FILE))
    if not weights_path.exists():
        raise StorageError(f"{weights_path}: not found (named by {config_path})")
    return neural.model_from_files(
        config, weights_path.read_bytes(), f"{weights_path} (config {config_path})"
    )


def neural_fold_table(output: FamilyOutput) -> pl.DataFrame:
    """One row per fold: test range, fit rows, epochs run, best epoch, validation loss, MAPE."""
    return pl.DataFrame(
        [
            {
                "fold": f["fold"],
                "test": f"{f['test'][0]}..{f['test'][1]}",
                "fit_rows": f["fit_rows"],
                "epochs": f["epochs"],
                "best_epoch": f["best_epoch"],
                "validation_loss": f["validation_score"],
                "mape_pct": round(f["val_mape"], 4),
                "seconds": f["seconds"],
            }
            for f in output.manifest["folds"]
        ]
    )
