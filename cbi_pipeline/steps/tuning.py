"""Tuning over the data root (``cbi tune``), and the tuned parameters training reads back.

``tune`` scores one family's defaults and an Optuna study on the tuning folds of a horizon's
export (``core.tuning``: rows before the first test date only) and writes
``tuning/{h}/{family}.json`` atomically: the parameters training should overlay, the best and
baseline values, every trial, the search space, the seed, the tuning folds, the export's sha256
and a hash of the rows tuning read, and the code version. With a tracker the study is one MLflow
run in the horizon's experiment.

Training (``steps.models.train``) overlays the file's ``params`` on ``get_config_for_model``
when the file exists, and records ``tuned`` in the manifest. A file that is not valid JSON, or
that does not say what it should (format, horizon, family, parameters of the search space and
in range, trials, values, hashes), is an error naming it, never ignored. A file tuned with a
later first test date than training now uses is an error too (tuning read rows that are now
test rows). An export that changed since tuning is not: the nightly export grows by a row a day
while the rows before the first test date stay the same, so the file stays in use; the manifest
records whether the export and the tuning rows still match, and a change of the tuning rows
themselves (features redefined, history revised) is logged as a warning.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cbi_pipeline.core.hardware import SystemInfo
from cbi_pipeline.core.models.neural.spec import neural_spec
from cbi_pipeline.core.progress import Progress
from cbi_pipeline.core.tuning import (
    DEFAULT_BLOCKS,
    METRIC,
    TuningError,
    TuningResult,
    TuningSpec,
    check_params,
    neural_predictor,
    rows_sha256,
    space_as_dict,
    tree_predictor,
    tuning_rows,
)
from cbi_pipeline.core.tuning import tune as tune_study
from cbi_pipeline.core.vocabulary import TAG_FAMILY, TAG_HORIZON, TREE_FAMILIES
from cbi_pipeline.core.walkforward import (
    Fold,
    FoldPredictor,
    TrainingData,
    WalkForwardSpec,
    date_range,
    spec_as_dict,
)
from cbi_pipeline.settings import Settings
from cbi_pipeline.store.models import MANIFEST_FILE, LoadedExport, code_version, load_export
from cbi_pipeline.store.root import DataRoot, StorageError, read_json, write_json
from cbi_pipeline.store.tracking import Tracker, experiment_name, local_copy

TUNING_FORMAT = "cbi-tuning-v1"
TAG_KIND = "cbi.kind"
log = logging.getLogger(__name__)


def tuned_hyper(hyper: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The hardware config with tuned parameters in place of its own (the one overlay rule)."""
    return {**hyper, **params}


def predictor_builder(
    settings: Settings, family: str, hyper: Mapping[str, Any]
) -> Callable[[Mapping[str, Any]], FoldPredictor]:
    """Parameters -> a fold predictor built exactly as training builds the family's spec."""
    if family in TREE_FAMILIES:
        return lambda params: tree_predictor(settings.tree_spec(family, tuned_hyper(hyper, params)))
    return lambda params: neural_predictor(
        neural_spec(family, tuned_hyper(hyper, params), {"seed": settings.train_seed})
    )


@dataclass(frozen=True, eq=False)
class TuningOutput:
    horizon: str
    family: str
    path: Path
    payload: dict[str, Any]
    result: TuningResult
    run_id: str | None = None


def tune(
    root: DataRoot,
    settings: Settings,
    horizon: str,
    family: str,
    trials: int,
    system: SystemInfo,
    *,
    blocks: int = DEFAULT_BLOCKS,
    tracker: Tracker | None = None,
    tags: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> TuningOutput:
    """Tune one family for one horizon on the tuning folds and write ``tuning/{h}/{family}.json``."""
    spec = TuningSpec(family, trials, settings.train_seed, blocks)  # checks before any read
    wf_spec = settings.walk_forward_spec(horizon)
    loaded = load_export(root, settings, horizon)
    hyper = settings.model_params(family, horizon, system)  # as training: config file included
    result = tune_study(
        loaded.data, wf_spec, spec, predictor_builder(settings, family, hyper), progress
    )
    payload = tuning_payload(loaded, settings, wf_spec, hyper, result)
    path = write_json(payload, root.tuned_params(horizon, family))
    run_id = None
    if tracker is not None:
        run_id = log_study(
            tracker, experiment_name(settings.target_symbol, horizon), payload, path, tags
        )
    return TuningOutput(horizon, family, path, payload, result, run_id)


def tuning_payload(
    loaded: LoadedExport,
    settings: Settings,
    wf_spec: WalkForwardSpec,
    hyper: Mapping[str, Any],
    result: TuningResult,
) -> dict[str, Any]:
    data, plan = loaded.data, result.plan
    completed = [t for t in result.trials if t.value is not None]
    return {
        "format": TUNING_FORMAT,
        "horizon": data.horizon,
        "family": result.spec.family,
        "target_symbol": settings.target_symbol,
        "params": result.params,
        "selected": "best_trial" if result.improved else "defaults",
        "metric": METRIC,
        "best_value": result.best.value,
        "best_trial": result.best.number,
        "best_params": result.best.params,
        "baseline_value": result.baseline.value,
        "baseline_fold_values": result.baseline.fold_values,
        "trials": result.spec.trials,
        "completed": len(completed),
        "pruned": len(result.trials) - len(completed),
        "wall_seconds": result.seconds,
        "seed": result.spec.seed,
        "sampler": result.sampler,
        "pruner": result.pruner,
        "search_space": space_as_dict(result.spec.family),
        "base_parameters": dict(hyper),
        "first_test_date": plan.first_test_date.isoformat(),
        "rows": plan.rows,
        "tuning": {
            "blocks": plan.blocks,
            "rows": plan.rows,
            "last_row_date": str(data.dates[plan.rows - 1]),
            "last_label_date": str(data.dates[plan.rows - 1 + data.horizon_days]),
            "walk_forward": spec_as_dict(plan.spec),
            "folds": [fold_dates(data, f) for f in plan.folds],
        },
        "training_walk_forward": spec_as_dict(wf_spec),
        "settings": {
            "max_features": settings.max_features,
            "max_bin": settings.max_bin,
            "train_seed": settings.train_seed,
        },
        "data": {
            "export": str(loaded.path),
            "export_sha256": loaded.sha256,
            "tuning_data_sha256": rows_sha256(data, plan.rows),
            "export_rows": data.rows,
            "first_date": str(data.dates[0]),
            "last_date": str(data.dates[-1]),
        },
        "trial_log": [t.as_dict() for t in result.trials],
        "code_version": code_version(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def fold_dates(data: TrainingData, fold: Fold) -> dict[str, Any]:
    """A tuning fold's roles as date ranges, with its row counts."""
    return {
        "fold": fold.index,
        "fit": date_range(data, fold.fit_rows),
        "validation": date_range(data, fold.validation_rows),
        "test": date_range(data, fold.test_rows),
        "fit_rows": int(fold.fit_rows.size),
        "test_rows": int(fold.test_rows.size),
    }


def log_study(
    tracker: Tracker,
    experiment: str,
    payload: Mapping[str, Any],
    path: Path,
    tags: Mapping[str, str] | None = None,
) -> str:
    """One MLflow run for the study: its settings and best parameters, the best and baseline
    values, each completed trial's value as a stepped metric, and the JSON as an artifact."""
    client = tracker.client
    eid = tracker.experiment_id(experiment)
    family, horizon = str(payload["family"]), str(payload["horizon"])
    run = client.create_run(
        eid,
        run_name=f"tune {family} {horizon}",
        tags={TAG_HORIZON: horizon, TAG_FAMILY: family, TAG_KIND: "tuning", **(tags or {})},
    )
    run_id = str(run.info.run_id)
    try:
        params = {
            "trials": payload["trials"],
            "seed": payload["seed"],
            "selected": payload["selected"],
            "first_test_date": payload["first_test_date"],
            "tuning_first_test_date": payload["tuning"]["walk_forward"]["first_test_date"],
            "export_sha256": payload["data"]["export_sha256"],
            **{f"best.{k}": v for k, v in payload["best_params"].items()},
            **{f"space.{k}": str(v) for k, v in payload["search_space"].items()},
        }
        for key, value in params.items():
            client.log_param(run_id, key, str(value))
        for key in ("best_value", "baseline_value", "completed", "pruned", "wall_seconds"):
            client.log_metric(run_id, key, float(payload[key]))
        for trial in payload["trial_log"]:
            if trial["value"] is not None:
                client.log_metric(
                    run_id, "trial_value", float(trial["value"]), step=trial["number"]
                )
        with local_copy(path) as local:
            client.log_artifact(run_id, str(local), "tuning")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return run_id


# --- reading the tuned parameters back (training) ------------------------------------------------


def read_tuned(path: Path, horizon: str, family: str) -> dict[str, Any]:
    """A tuning file checked for what training relies on; anything else is an error naming it."""
    what = f"cbi tune --horizon {horizon} --family {family}"
    payload = read_json(path, what)
    if not isinstance(payload, dict):
        raise StorageError(f"{path}: expected a JSON object from {what}")
    problems = []
    expected = {"format": TUNING_FORMAT, "horizon": horizon, "family": family}
    problems += [
        f"{k} is {payload.get(k)!r}, expected {v!r}"
        for k, v in expected.items()
        if payload.get(k) != v
    ]
    if not isinstance(payload.get("params"), dict):
        problems.append(f"params is {payload.get('params')!r}, expected an object")
    trials = payload.get("trials")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        problems.append(f"trials is {trials!r}, expected an integer >= 1")
    for key in ("best_value", "baseline_value"):
        value = payload.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            problems.append(f"{key} is {value!r}, expected a finite number")
    rows = payload.get("rows")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        problems.append(f"rows is {rows!r}, expected an integer >= 1")
    try:
        dt.date.fromisoformat(str(payload.get("first_test_date")))
    except ValueError:
        problems.append(
            f"first_test_date is {payload.get('first_test_date')!r}, expected an ISO date"
        )
    data = payload.get("data")
    for key in ("export_sha256", "tuning_data_sha256"):
        if not isinstance(data, dict) or not isinstance(data.get(key), str):
            problems.append(f"data.{key} is missing, expected a sha256")
    if problems:
        raise StorageError(f"{path}: invalid tuning file: {'; '.join(problems)}; run {what} again")
    try:
        check_params(family, payload["params"], str(path))
    except TuningError as exc:
        raise StorageError(f"{exc}; run {what} again") from exc
    return payload


def load_tuned(
    root: DataRoot,
    loaded: LoadedExport,
    spec: WalkForwardSpec,
    family: str,
    progress: Progress | None = None,
) -> dict[str, Any] | None:
    """The manifest's ``tuned`` entry for the file of (horizon, family), None without one.

    The entry carries the parameters to overlay (``params``, empty when the defaults won).
    """
    data = loaded.data
    path = root.tuned_params(data.horizon, family)
    if not path.exists():
        return None
    payload = read_tuned(path, data.horizon, family)
    tuned_first = dt.date.fromisoformat(payload["first_test_date"])
    if tuned_first > spec.first_test_date:
        raise StorageError(
            f"{path}: tuned on the rows before {tuned_first}, but training now tests from "
            f"{spec.first_test_date}: tuning read rows of the test period; run cbi tune "
            f"--horizon {data.horizon} --family {family} again or remove the file"
        )
    rows, _ = tuning_rows(data.dates, tuned_first, data.horizon_days)
    same_rows = rows == payload["rows"] and (
        rows_sha256(data, rows) == payload["data"]["tuning_data_sha256"]
    )
    if not same_rows:
        message = (
            f"{path}: the {payload['rows']} rows before {tuned_first} that tuning read have "
            f"changed in {loaded.path} (now {rows} rows, another hash): using the tuned "
            "parameters anyway; run cbi tune again to tune on the current data"
        )
        log.warning(message)
        if progress is not None:
            progress(f"warning: {message}")
    return {
        "path": str(path),
        "params": dict(payload["params"]),
        "selected": payload.get("selected"),
        "trials": payload["trials"],
        "best_value": payload["best_value"],
        "baseline_value": payload["baseline_value"],
        "first_test_date": payload["first_test_date"],
        "export_sha256_match": payload["data"]["export_sha256"] == loaded.sha256,
        "tuning_data_match": same_rows,
        "created_at": payload.get("created_at"),
    }


def tuned_by_family(root: DataRoot, horizon: str, families: Iterable[str]) -> dict[str, Any]:
    """Per family, from its manifest: ``used`` (True when it trained with tuned parameters,
    False when not, None when it has no manifest) and the tuning file's figures."""
    out: dict[str, Any] = {}
    for family in families:
        path = root.model_dir(horizon, family) / MANIFEST_FILE
        if not path.exists():
            out[family] = {"used": None}
            continue
        manifest = read_json(path, f"{family} training")
        entry = manifest.get("tuned") if isinstance(manifest, dict) else None
        if not isinstance(entry, dict):
            out[family] = {"used": False}
            continue
        out[family] = {
            "used": bool(entry.get("params")),
            **{
                k: entry.get(k)
                for k in ("selected", "trials", "best_value", "baseline_value", "path")
            },
        }
    return out
