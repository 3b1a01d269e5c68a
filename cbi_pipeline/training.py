"""Training steps over the data root, shared by the model assets and ``cbi train``.

One call trains one target (``lightgbm``, ``xgboost`` or ``baselines``) for one horizon on the
purged walk-forward, then writes, each atomically: the out-of-fold predictions
``predictions/{h}/{family}.parquet``, the native model file and ``manifest.json`` under
``models/{h}/{family}/``, and (with a tracker) the MLflow runs.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from cbi_pipeline.core.export import export_filename
from cbi_pipeline.core.hardware import SystemInfo, get_config_for_model
from cbi_pipeline.core.horizons import horizon_days, target_column
from cbi_pipeline.core.models.baselines import BASELINES, final_drift, walk_forward_baseline
from cbi_pipeline.core.models.trees import (
    TREE_FAMILIES,
    TreeRun,
    TreeSpec,
    library_params,
    walk_forward_trees,
)
from cbi_pipeline.core.walkforward import (
    TrainingData,
    WalkForwardResult,
    WalkForwardSpec,
    date_range,
    plan_folds,
    spec_as_dict,
    training_data,
)
from cbi_pipeline.settings import Settings
from cbi_pipeline.storage import DataRoot, StorageError, write_bytes, write_json, write_parquet
from cbi_pipeline.tracking import TrackedRun, Tracker, experiment_name

# LightGBM's and XGBoost's OpenMP threads sleep while they wait instead of spinning. On a machine
# shared with other work, spinning threads starve each other: the 1m walk-forward ran 8-10x slower
# with 2 spinning threads under load, and no slower than 1 thread with passive waiting. It must be
# set before either library is first imported (both import lazily); an explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TRAIN_TARGETS = ("lightgbm", "xgboost", "baselines", "lstm", "gru")
NEURAL_FAMILIES = ("lstm", "gru")  # trained by neural_training (torch imported only there)
FEATURE_SELECTION = (
    "top max_features by |Pearson correlation| with the label on the fold's fit rows"
)


def families_of(target: str) -> tuple[str, ...]:
    """The families one training target produces (``baselines`` -> random_walk and drift)."""
    if target == "baselines":
        return BASELINES
    if target in TREE_FAMILIES or target in NEURAL_FAMILIES:
        return (target,)
    raise ValueError(f"unknown training target {target!r}; expected one of {TRAIN_TARGETS}")


def walk_forward_spec(settings: Settings, horizon: str) -> WalkForwardSpec:
    try:
        first = dt.date.fromisoformat(settings.first_test_date)
    except ValueError:
        raise ValueError(
            f"first_test_date {settings.first_test_date!r} is not an ISO date (YYYY-MM-DD)"
        ) from None
    return WalkForwardSpec(
        horizon_days=horizon_days(horizon),
        first_test_date=first,
        refit_step=settings.refit_step_days,
        validation_rows=settings.validation_rows,
        min_train_rows=settings.min_train_rows,
    )


def tree_spec(settings: Settings, family: str, hyper: Mapping[str, Any]) -> TreeSpec:
    return TreeSpec(
        family=family,
        hyper=dict(hyper),
        max_features=settings.max_features,
        max_bin=settings.max_bin,
        seed=settings.train_seed,
    )


@functools.cache
def code_version() -> dict[str, str]:
    """The package version and the git commit of the checkout ('unknown' where there is none)."""
    try:
        package = metadata.version("cbi_pipeline")
    except metadata.PackageNotFoundError:
        package = "unknown"
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        sha = out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        sha = "unknown"
    return {"package": package, "git_sha": sha}


@dataclass(frozen=True, eq=False)
class LoadedExport:
    path: Path
    sha256: str
    frame: pl.DataFrame
    data: TrainingData


def load_export(root: DataRoot, settings: Settings, horizon: str) -> LoadedExport:
    """Read the horizon's export once, hash its bytes, validate it into arrays."""
    path = root.export(export_filename(settings.target_symbol, settings.surface, horizon))
    if not path.exists():
        raise StorageError(f"{path}: not found; materialize training_export[{horizon}] first")
    raw = path.read_bytes()
    try:
        frame = pl.read_parquet(io.BytesIO(raw))
    except Exception as exc:  # polars raises several types for corrupt files
        raise StorageError(f"{path}: unreadable parquet ({type(exc).__name__}: {exc})") from exc
    return LoadedExport(
        path, hashlib.sha256(raw).hexdigest(), frame, training_data(frame, horizon, str(path))
    )


@dataclass(frozen=True, eq=False)
class FamilyOutput:
    """What one family's training wrote, and where it is tracked."""

    horizon: str
    family: str
    result: WalkForwardResult
    manifest: dict[str, Any]
    predictions_path: Path
    model_dir: Path
    model_path: Path | None
    tracked: TrackedRun | None = None

    @property
    def val_mape(self) -> float:
        return float(self.manifest["val_mape"])

    @property
    def random_walk_mape(self) -> float:
        return float(self.manifest["random_walk_mape"])

    @property
    def trees(self) -> list[int]:
        return [int(f["trees"]) for f in self.manifest["folds"] if "trees" in f]

    @property
    def seconds(self) -> float:
        return float(self.manifest["seconds"])


def build_manifest(
    loaded: LoadedExport,
    settings: Settings,
    spec: WalkForwardSpec,
    result: WalkForwardResult,
    seconds: float,
    *,
    model_file: str | None,
    model_bytes: bytes | None,
    features: list[str],
    parameters: Mapping[str, Any],
    final: Mapping[str, Any],
    feature_selection: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything needed to reproduce and audit one family's training (DESIGN §2 models/)."""
    data, frame = loaded.data, loaded.frame
    return {
        "family": result.family,
        "horizon": data.horizon,
        "horizon_days": data.horizon_days,
        "target_symbol": settings.target_symbol,
        "label": f"log({target_column(data.horizon)} / price)",
        "model_file": model_file,
        "model_sha256": hashlib.sha256(model_bytes).hexdigest()
        if model_bytes is not None
        else None,
        "features": features,
        "feature_selection": dict(feature_selection),
        "parameters": dict(parameters),
        "walk_forward": spec_as_dict(spec),
        "data": {
            "export": str(loaded.path),
            "export_sha256": loaded.sha256,
            "rows": data.rows,
            "labelled_rows": int(data.labelled.sum()),
            "first_date": str(data.dates[0]),
            "last_date": str(data.dates[-1]),
            "as_of": str(frame["as_of"].max()) if "as_of" in frame.columns else None,
        },
        "code_version": code_version(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "val_mape": result.val_mape,
        "random_walk_mape": result.random_walk_mape,
        "folds": [f.as_dict() for f in result.folds],
        "final": dict(final),
    }


def _write(
    root: DataRoot,
    horizon: str,
    result: WalkForwardResult,
    manifest: dict[str, Any],
    model_bytes: bytes | None,
) -> FamilyOutput:
    family = result.family
    predictions_path = write_parquet(result.predictions, root.predictions(horizon, family))
    model_dir = root.model_dir(horizon, family)
    model_path = None
    if model_bytes is not None:
        model_path = write_bytes(model_bytes, model_dir / str(manifest["model_file"]))
    write_json(manifest, model_dir / "manifest.json")
    return FamilyOutput(horizon, family, result, manifest, predictions_path, model_dir, model_path)


def _train_trees(
    root: DataRoot,
    settings: Settings,
    loaded: LoadedExport,
    spec: WalkForwardSpec,
    family: str,
    hyper: Mapping[str, Any],
    progress: Callable[[str], None] | None,
) -> FamilyOutput:
    start = time.perf_counter()
    tspec = tree_spec(settings, family, hyper)
    data = loaded.data
    folds = plan_folds(data.dates, data.labelled, spec)
    run: TreeRun = walk_forward_trees(data, folds, tspec, progress)
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
    return _write(root, data.horizon, run.result, manifest, model_bytes)


def _train_baselines(
    root: DataRoot,
    settings: Settings,
    loaded: LoadedExport,
    spec: WalkForwardSpec,
    progress: Callable[[str], None] | None,
) -> list[FamilyOutput]:
    data = loaded.data
    folds = plan_folds(data.dates, data.labelled, spec)
    labelled = date_range(data, data.labelled.nonzero()[0])
    finals = {
        "random_walk": {"pred_return": 0.0, "rule": "predicted price = price at the origin"},
        "drift": {
            "pred_return": final_drift(data),
            "rule": "mean h-step log return of every labelled row",
            "fit": labelled,
        },
    }
    outputs = []
    for family in BASELINES:
        start = time.perf_counter()
        result = walk_forward_baseline(data, folds, family, progress)
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
        outputs.append(_write(root, data.horizon, result, manifest, None))
    return outputs


def train(
    root: DataRoot,
    settings: Settings,
    horizon: str,
    target: str,
    system: SystemInfo,
    tracker: Tracker | None = None,
    tags: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[FamilyOutput]:
    """Train one target for one horizon on the purged walk-forward and write every output.

    ``target`` is a tree family (hyperparameters from ``get_config_for_model`` on ``system``) or
    ``baselines``. With a tracker, each family gets an MLflow run with nested fold runs.
    ``lstm`` and ``gru`` go to ``neural_training.train_neural`` (same folds and outputs).
    """
    families_of(target)
    if target in NEURAL_FAMILIES:
        from cbi_pipeline.neural_training import train_neural

        return [train_neural(root, settings, horizon, target, system, tracker, tags, progress)]
    spec = walk_forward_spec(settings, horizon)
    loaded = load_export(root, settings, horizon)
    if target == "baselines":
        outputs = _train_baselines(root, settings, loaded, spec, progress)
    else:
        hyper = get_config_for_model(target, horizon, system)
        outputs = [_train_trees(root, settings, loaded, spec, target, hyper, progress)]
    if tracker is None:
        return outputs
    experiment = experiment_name(settings.target_symbol, horizon)
    tracked = []
    for out in outputs:
        run = tracker.log_walk_forward(
            experiment, out.manifest, out.model_dir, out.predictions_path, tags
        )
        tracked.append(
            FamilyOutput(
                out.horizon,
                out.family,
                out.result,
                out.manifest,
                out.predictions_path,
                out.model_dir,
                out.model_path,
                run,
            )
        )
    return tracked


def fold_table(output: FamilyOutput) -> pl.DataFrame:
    """One row per fold: test range, fit rows, trees (models) and MAPE, for metadata and terminals."""
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
        row["mape_pct"] = round(f["val_mape"], 4)
        rows.append(row)
    return pl.DataFrame(rows)
