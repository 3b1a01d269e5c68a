"""Training steps over the data root, shared by the model assets and ``cbi train``.

One call trains one target (``lightgbm``, ``xgboost``, ``lstm``, ``gru`` or ``baselines``) for one
horizon on the purged walk-forward, then writes, each atomically: the out-of-fold predictions
``predictions/{h}/{family}.parquet``, the model files and ``manifest.json`` under
``models/{h}/{family}/``, and (with a tracker) one MLflow run per family with a nested run per
fold. Neural families also write the final model's JSON config (``model.json``: architecture,
features, scaler statistics, sequence length, weights hash) before the weights, so a crash between
files leaves a config whose weights hash does not match and loading fails loudly instead of mixing
two models. torch is imported only when a neural family trains.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from cbi_pipeline.core.curves.market import market_forecast
from cbi_pipeline.core.hardware import SystemInfo
from cbi_pipeline.core.intervals import CONSTANT, add_quantiles
from cbi_pipeline.core.models.baselines import final_drift, walk_forward_baseline
from cbi_pipeline.core.models.ets import ets_final_return
from cbi_pipeline.core.models.learners import TreeRun, walk_forward_ets, walk_forward_trees
from cbi_pipeline.core.models.neural.spec import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    neural_spec,
    spec_parameters,
)
from cbi_pipeline.core.models.trees import library_params
from cbi_pipeline.core.progress import Progress
from cbi_pipeline.core.vocabulary import (
    BASELINES,
    BASELINES_TARGET,
    DRIFT,
    ENSEMBLE,
    ETS,
    FUTURES_CURVE,
    INTERVAL_BENCHMARK,
    MODEL_FAMILIES,
    NEURAL_FAMILIES,
    RANDOM_WALK,
    TREE_FAMILIES,
    families_of,
)
from cbi_pipeline.core.walkforward import (
    TrainingData,
    WalkForwardResult,
    WalkForwardSpec,
    date_range,
    plan_folds,
    spec_as_dict,
)
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps.data import read_curve
from cbi_pipeline.steps.ensemble import train_ensemble
from cbi_pipeline.steps.tuning import load_tuned, tuned_hyper
from cbi_pipeline.store.foldcache import FileFoldStore
from cbi_pipeline.store.models import (
    MANIFEST_FILE,
    FamilyOutput,
    LoadedExport,
    build_manifest,
    load_export,
    write_family,
)
from cbi_pipeline.store.root import DataRoot, write_json, write_parquet
from cbi_pipeline.store.tracking import Tracker, experiment_name

# LightGBM's and XGBoost's OpenMP threads sleep while they wait instead of spinning. On a machine
# shared with other work, spinning threads starve each other: the 1m walk-forward ran 8-10x slower
# with 2 spinning threads under load, and no slower than 1 thread with passive waiting. It must be
# set before either library is first imported (both import lazily); an explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

FEATURE_SELECTION = (
    "top max_features by |Pearson correlation| with the label on the fold's fit rows"
)


def fold_store(
    root: DataRoot, settings: Settings, horizon: str, family: str
) -> FileFoldStore | None:
    """The family's fold cache under the data root, or None when ``fold_cache`` is 0."""
    return FileFoldStore(root, horizon, family) if settings.fold_cache else None


def _train_trees(
    root: DataRoot,
    settings: Settings,
    loaded: LoadedExport,
    spec: WalkForwardSpec,
    family: str,
    hyper: Mapping[str, Any],
    progress: Progress | None,
    tuned: Mapping[str, Any] | None = None,
) -> FamilyOutput:
    start = time.perf_counter()
    tspec = settings.tree_spec(family, hyper)
    data = loaded.data
    folds = plan_folds(data.dates, data.labelled, spec)
    run: TreeRun = walk_forward_trees(
        data,
        folds,
        tspec,
        progress,
        fold_store(root, settings, data.horizon, family),
        spec_as_dict(spec),
    )
    model_bytes = run.final.to_bytes()
    seconds = time.perf_counter() - start
    manifest = build_manifest(
        loaded,
        settings,
        spec,
        run.result,
        seconds,
        model_file=run.final.file_name,
        model_bytes=model_bytes,
        features=list(run.final.features),
        parameters={
            **library_params(tspec),
            "n_estimators": tspec.rounds,
            "early_stopping_rounds": tspec.patience,
        },
        final={
            "fit": date_range(data, run.final_rows),
            "rows": int(run.final_rows.size),
            "trees": run.final.trees,
            "trees_from": f"early stopping on fold {run.result.folds[-1].fold} (the last fold)",
        },
        feature_selection={
            "method": FEATURE_SELECTION,
            "max_features": tspec.max_features,
            "candidates": len(data.features),
        },
    )
    manifest["tuned"] = None if tuned is None else dict(tuned)  # cbi tune's file, if used
    manifest["fold_cache"] = run.cache
    # Gain per feature of the final model (every labelled row), largest first.
    manifest["feature_importance"] = run.final.feature_importance()
    manifest["feature_importance_method"] = run.final.importance_method
    return write_family(
        root, data.horizon, calibrated(run.result, data, settings), manifest, model_bytes
    )


def calibrated(
    result: WalkForwardResult, data: TrainingData, settings: Settings
) -> WalkForwardResult:
    """The family's out-of-fold predictions with their quantile columns (``core.intervals``)."""
    return dataclasses.replace(
        result, predictions=add_quantiles(result.predictions, data, settings.interval_spec())
    )


def _train_baselines(
    root: DataRoot,
    settings: Settings,
    loaded: LoadedExport,
    spec: WalkForwardSpec,
    progress: Progress | None,
) -> list[FamilyOutput]:
    data = loaded.data
    folds = plan_folds(data.dates, data.labelled, spec)
    labelled = date_range(data, data.labelled.nonzero()[0])
    finals = {
        RANDOM_WALK: {"pred_return": 0.0, "rule": "predicted price = price at the origin"},
        DRIFT: {
            "pred_return": final_drift(data),
            "rule": "mean h-step log return of every labelled row",
            "fit": labelled,
        },
        ETS: {
            "pred_return": ets_final_return(data),
            "rule": "AutoETS on log prices fitted on all history, h steps from the last row",
            "fit": date_range(data, np.arange(data.rows)),
        },
    }
    implied, curve_final = market_forecast_rows(root, settings, loaded)
    if implied is None:
        remove_family(root, data.horizon, FUTURES_CURVE)
    else:
        finals[FUTURES_CURVE] = curve_final
    outputs = []
    for family in (f for f in BASELINES if f in finals):
        start = time.perf_counter()
        cache = None
        if family == ETS:
            store = fold_store(root, settings, data.horizon, family)
            result, cache = walk_forward_ets(data, folds, progress, store, spec_as_dict(spec))
        else:
            result = walk_forward_baseline(data, folds, family, progress, implied)
        seconds = time.perf_counter() - start
        manifest = build_manifest(
            loaded,
            settings,
            spec,
            result,
            seconds,
            model_file=None,
            model_bytes=None,
            features=[],
            parameters={},
            final=finals[family],
            feature_selection={
                "method": "none",
                "max_features": 0,
                "candidates": len(data.features),
            },
        )
        # ETS folds come from the fold cache; the others are closed-form, computed every time.
        manifest["fold_cache"] = cache
        outputs.append(
            write_family(root, data.horizon, calibrated(result, data, settings), manifest, None)
        )
        if family == RANDOM_WALK:
            # The yardstick of the pinball skill: the random walk with constant-width intervals.
            constant = add_quantiles(
                result.predictions,
                data,
                dataclasses.replace(settings.interval_spec(), scale=CONSTANT),
            ).with_columns(pl.lit(INTERVAL_BENCHMARK).alias("family"))
            write_parquet(constant, root.predictions(data.horizon, INTERVAL_BENCHMARK))
    return outputs


def market_forecast_rows(
    root: DataRoot, settings: Settings, loaded: LoadedExport
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """With a curve under the data root: the market's forecast log return for every export row
    (NaN where it falls back to the random walk) and the ``final`` entry of the futures_curve
    manifest (the forecast from the last row). Without one: None and {}."""
    curve = read_curve(root)
    if curve is None:
        return None, {}
    data, frame = loaded.data, loaded.frame
    rule = settings.front_rule
    forecast = market_forecast(
        curve,
        settings.target_symbol,
        frame["date"],
        frame["price"],
        data.horizon_days,
        rule,
        settings.roll_spec(),
    )
    implied = forecast["pred_return"].fill_null(np.nan).to_numpy().astype(np.float64)
    last = forecast.row(-1, named=True)
    fell_back = last["pred_return"] is None
    return implied, {
        "pred_return": 0.0 if fell_back else float(last["pred_return"]),
        "rule": (
            f"price at the origin of the contract that will be front (rule: {rule}) "
            f"{data.horizon_days} weekdays later; the random walk where none is quoted"
        ),
        "contract": last["contract"],
        "target_date": str(last["target_date"]),
        "fell_back": fell_back,
        "fallback_rows": int(np.isnan(implied).sum()),
        "rows": int(implied.size),
    }


def remove_family(root: DataRoot, horizon: str, family: str) -> None:
    """Remove a family's predictions and manifest (the futures_curve of an earlier run with a
    curve, once the data has none): else evaluation and ensemble would read them as current."""
    root.predictions(horizon, family).unlink(missing_ok=True)
    (root.model_dir(horizon, family) / MANIFEST_FILE).unlink(missing_ok=True)


def _train_neural(
    root: DataRoot,
    settings: Settings,
    loaded: LoadedExport,
    wf_spec: WalkForwardSpec,
    family: str,
    hyper: Mapping[str, Any],
    overrides: Mapping[str, Any] | None,
    progress: Progress | None,
    tuned: Mapping[str, Any] | None = None,
    workers: int = 1,
) -> FamilyOutput:
    # imports torch: only when a network trains
    from cbi_pipeline.core.models.neural.learner import walk_forward_neural

    start = time.perf_counter()
    data = loaded.data
    spec = neural_spec(family, hyper, {"seed": settings.train_seed, **dict(overrides or {})})
    folds = plan_folds(data.dates, data.labelled, wf_spec)
    run = walk_forward_neural(
        data,
        folds,
        spec,
        progress,
        fold_store(root, settings, data.horizon, family),
        spec_as_dict(wf_spec),
        workers,
    )
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
    model_config = run.final.config(
        {
            "family": family,
            "horizon": data.horizon,
            "horizon_days": data.horizon_days,
            "label": "log(target / price): the h-step log return",
            "training": {**spec_parameters(spec), **final},
        }
    )
    seconds = time.perf_counter() - start
    manifest = build_manifest(
        loaded,
        settings,
        wf_spec,
        run.result,
        seconds,
        model_file=WEIGHTS_FILE,
        model_bytes=weights,
        features=list(run.final.features),
        parameters={**spec_parameters(spec), "device_used": run.device},
        final=final,
        feature_selection={
            "method": FEATURE_SELECTION,
            "max_features": spec.max_features,
            "candidates": len(data.features),
        },
    )
    manifest["config_file"] = CONFIG_FILE
    manifest["fold_cache"] = run.cache
    manifest["tuned"] = None if tuned is None else dict(tuned)  # cbi tune's file, if used
    manifest["feature_importance"] = None
    manifest["feature_importance_method"] = (
        "none: a recurrent network has no split gain, and a permutation importance on the last "
        "fold's validation slice would be in-sample for the final model, which is fitted on "
        "every labelled row, that slice included (the fold models that held it out are not kept)"
    )
    write_json(model_config, root.model_dir(data.horizon, family) / CONFIG_FILE)
    return write_family(
        root, data.horizon, calibrated(run.result, data, settings), manifest, weights
    )


def train(
    root: DataRoot,
    settings: Settings,
    horizon: str,
    target: str,
    system: SystemInfo,
    tracker: Tracker | None = None,
    tags: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> list[FamilyOutput]:
    """Train one target for one horizon on the purged walk-forward and write every output.

    ``target`` is a model family (hyperparameters from ``get_config_for_model`` on ``system``
    with the configuration file's over them, ``Settings.model_params``;
    for the neural families ``overrides``, None values ignored, replace any of them, e.g.
    ``{"hidden_size": 64, "num_layers": 2, "dropout": 0.1}``) or ``baselines``. With a tracker,
    each family gets an MLflow run with nested fold runs.
    """
    families_of(target)
    if target in MODEL_FAMILIES and target not in settings.enabled_families():
        # Disabled by the configuration file: no outputs, and none left from an earlier run
        # for the evaluation and the ensemble to read as current.
        remove_family(root, horizon, target)
        return []
    spec = settings.walk_forward_spec(horizon)
    loaded = load_export(root, settings, horizon)
    if target == BASELINES_TARGET:
        outputs = _train_baselines(root, settings, loaded, spec, progress)
    elif target == ENSEMBLE:
        outputs = [train_ensemble(root, settings, loaded, progress)]
    elif target in TREE_FAMILIES:
        hyper = settings.model_params(target, horizon, system)
        tuned = load_tuned(root, loaded, spec, target, progress)  # tuning/{h}/{family}.json
        hyper = tuned_hyper(hyper, tuned["params"] if tuned else {})
        outputs = [_train_trees(root, settings, loaded, spec, target, hyper, progress, tuned)]
    else:
        assert target in NEURAL_FAMILIES
        hyper = settings.model_params(target, horizon, system)
        tuned = load_tuned(root, loaded, spec, target, progress)  # tuning/{h}/{family}.json
        hyper = tuned_hyper(hyper, tuned["params"] if tuned else {})
        outputs = [
            _train_neural(
                root,
                settings,
                loaded,
                spec,
                target,
                hyper,
                overrides,
                progress,
                tuned,
                workers=system.cores,  # folds fitted at once, one torch thread each
            )
        ]
    if tracker is None:
        return outputs
    experiment = experiment_name(settings.target_symbol, horizon)
    return [
        dataclasses.replace(
            out,
            tracked=tracker.log_walk_forward(
                experiment, out.manifest, out.model_dir, out.predictions_path, tags
            ),
        )
        for out in outputs
    ]


def fold_table(output: FamilyOutput) -> pl.DataFrame:
    """One row per fold for metadata and terminals: test range, rows, trees (tree models) or
    epochs, best epoch and validation loss (networks), and MAPE."""
    rows = []
    for f in output.manifest["folds"]:
        row: dict[str, Any] = {
            "fold": f["fold"],
            "test": f"{f['test'][0]}..{f['test'][1]}",
            "test_rows": f["test_rows"],
            "fit_rows": f["fit_rows"],
        }
        if "trees" in f:
            row["trees"] = f["trees"]
        if "epochs" in f:
            row |= {
                "epochs": f["epochs"],
                "best_epoch": f["best_epoch"],
                "validation_loss": f["validation_score"],
            }
        row["mape_pct"] = round(f["val_mape"], 4)
        if "epochs" in f:
            row["seconds"] = f["seconds"]
        if "cache" in f:
            cache = f["cache"]
            row["fold_cache"] = cache["status"] + (
                f": {cache['reason']}" if cache["status"] == "refit" else ""
            )
        rows.append(row)
    return pl.DataFrame(rows)
