"""MLflow tracking of walk-forward training: one run per (horizon, family), one nested run per fold.

Default store: SQLite at ``<data_root>/mlflow/mlflow.db`` with artifacts under
``<data_root>/mlflow/artifacts``; ``MLFLOW_TRACKING_URI`` overrides it, and an explicit URI given
to the resource overrides both. ``make ui`` starts ``mlflow ui`` on that store at
``DEFAULT_UI_URL`` (``mlflow_ui_args``) beside Dagster, whose metadata links point there. Each
``{target}_{h}`` experiment carries a plain-words description (``experiment_description``). mlflow
is imported lazily (it costs ~1.5 s and the web UI reimports modules).

Everything is logged through ``MlflowClient`` in a few batched calls per run, and model files go in
as plain artifacts (no flavor ``log_model``, which spends seconds inferring pip requirements).
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cbi_pipeline.core.importance_plot import importance_png
from cbi_pipeline.core.vocabulary import (
    HORIZON_LABELS,
    TAG_FAMILY,
    TAG_FOLD,
    TAG_HORIZON,
    horizon_days,
)
from cbi_pipeline.store.root import is_local, is_url

DEFAULT_UI_URL = "http://127.0.0.1:5000"
MAX_PARAM_CHARS = 6000
# Feature importance: the top shares logged as metrics, the whole list as artifacts here.
IMPORTANCE_TOP = 15
IMPORTANCE_ARTIFACTS = "feature_importance"
# MLflow shows this tag as a run's or an experiment's description.
MLFLOW_NOTE = "mlflow.note.content"


@dataclass(frozen=True)
class TrackedRun:
    """Where a training run is recorded, with a link for ``mlflow ui``."""

    tracking_uri: str
    experiment_id: str
    run_id: str
    url: str
    fold_run_ids: tuple[str, ...]


def resolve_tracking_uri(
    data_root: str | os.PathLike[str], configured: str = "", env: Mapping[str, str] | None = None
) -> str:
    """An explicit URI, else ``MLFLOW_TRACKING_URI``, else SQLite under the data root (absolute)."""
    if configured:
        return configured
    env = os.environ if env is None else env
    if env.get("MLFLOW_TRACKING_URI"):
        return env["MLFLOW_TRACKING_URI"]
    if is_url(data_root):
        raise ValueError(
            f"data root {data_root} is an object store, where MLflow's SQLite file cannot live: "
            "set MLFLOW_TRACKING_URI (a tracking server or a database URL)"
        )
    db = Path(data_root).resolve() / "mlflow" / "mlflow.db"
    return f"sqlite:///{db}"


def default_artifact_location(data_root: str | os.PathLike[str], tracking_uri: str) -> str | None:
    """Artifacts next to the database for local stores; a tracking server decides for itself."""
    if urlparse(tracking_uri).scheme in ("http", "https", "databricks"):
        return None
    if is_url(data_root):
        return f"{str(data_root).rstrip('/')}/mlflow/artifacts"
    return (Path(data_root).resolve() / "mlflow" / "artifacts").as_uri()


@contextmanager
def local_copy(path: Path) -> Iterator[Path]:
    """``path`` itself when local; for an object-store file or flat folder, a temporary local
    copy (MLflow logs artifacts from local files)."""
    if is_local(path):
        yield path
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cbi-artifact-") as tmp:
        local = Path(tmp) / path.name
        if path.is_dir():
            local.mkdir()
            for child in path.iterdir():
                if child.is_file():
                    (local / child.name).write_bytes(child.read_bytes())
        else:
            local.write_bytes(path.read_bytes())
        yield local


def experiment_name(target_symbol: str, horizon: str) -> str:
    """One experiment per horizon, e.g. ``zl_1m``."""
    return f"{target_symbol.lower()}_{horizon}"


def experiment_description(name: str) -> str | None:
    """What the runs of a ``{target}_{h}`` experiment are, in plain words (None for any other
    name)."""
    target, _, horizon = name.rpartition("_")
    if not target or horizon not in HORIZON_LABELS:
        return None
    symbol, days = target.upper(), horizon_days(horizon)
    return "\n\n".join(
        [
            f"{symbol} futures price forecasts {horizon} ahead ({days} trading days).",
            "Runs here:",
            f"- `{{family}} {horizon}`: one model family trained walk-forward (parameters, "
            "out-of-fold MAPE, the model files and out-of-fold predictions), with a nested run "
            "per fold (its dates and validation MAPE).",
            f"- `evaluation {horizon}`: every family compared with the random walk on the same "
            "out-of-fold predictions (MAPE, skill, Sharpe, PSR, interval coverage, the gates), "
            "with the evaluation JSON and chart as artifacts.",
            f"- `forecast {horizon}`: tonight's forecast (point and quantiles) with its fan chart.",
            f"- `tune {{family}} {horizon}`: a hyperparameter search (cbi tune).",
            f"The registered model `{name}` holds the evaluated models: alias `candidate` is "
            "the latest evaluation's best family, alias `champion` the one promoted (gates "
            "passed, or a recorded override) that forecasts.",
        ]
    )


def mlflow_ui_args(
    data_root: str | os.PathLike[str],
    configured_uri: str = "",
    ui_url: str = DEFAULT_UI_URL,
    prepare: bool = False,
) -> list[str]:
    """``mlflow ui`` arguments for the store the pipeline logs to (``resolve_tracking_uri``) and
    its artifact root, listening where ``ui_url`` (the metadata links) points. ``prepare``: a
    SQLite store's folder and schema are created first, under the lock the pipeline's own
    processes take (the UI would otherwise migrate a new store while a run does)."""
    uri = resolve_tracking_uri(data_root, configured_uri)
    if prepare and uri.startswith("sqlite:///"):
        Tracker.for_data_root(data_root, configured_uri, ui_url).client  # noqa: B018 (migrates)
    url = urlparse(ui_url)
    args = ["--backend-store-uri", uri]
    artifacts = default_artifact_location(data_root, uri)
    if artifacts is not None:
        args += ["--default-artifact-root", artifacts]
    return [*args, "--host", url.hostname or "127.0.0.1", "--port", str(url.port or 5000)]


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) on ``path``, held for the block."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(ui_url: str, name: str, version: str) -> str:
    return f"{ui_url.rstrip('/')}/#/models/{name}/versions/{version}"


def _param(value: Any) -> str:
    text = (
        value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    )
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."


def _metric_key(name: str) -> str:
    """A feature name as MLflow accepts in a metric key: letters, digits, ``_ . -`` and spaces
    (others, slashes included, become ``_``, so that no key reads as a path)."""
    return re.sub(r"[^\w.\- ]", "_", name)


def importance_metrics(importance: Sequence[Mapping[str, Any]], timestamp: int) -> list[Any]:
    """``importance_share.<feature>`` for the ``IMPORTANCE_TOP`` largest shares, comparable
    across runs in the MLflow UI (a feature whose cleaned name repeats keeps its first share)."""
    from mlflow.entities import Metric

    out: dict[str, Any] = {}
    for row in importance[:IMPORTANCE_TOP]:
        key = f"importance_share.{_metric_key(str(row['feature']))}"
        out.setdefault(key, Metric(key, float(row["share"]), timestamp, 0))
    return list(out.values())


def importance_csv(importance: Sequence[Mapping[str, Any]]) -> str:
    """The manifest's ``feature_importance`` as CSV: rank, feature, gain, share."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["rank", "feature", "gain", "share"])
    for rank, row in enumerate(importance, start=1):
        writer.writerow([rank, row["feature"], repr(float(row["gain"])), repr(float(row["share"]))])
    return buffer.getvalue()


# SQLite stores this process has opened, by tracking URI (see ``Tracker.client``).
_SQLITE_CLIENTS: dict[str, Any] = {}


class Tracker:
    """Logs walk-forward training to one MLflow tracking store."""

    def __init__(
        self, tracking_uri: str, artifact_location: str | None, ui_url: str = DEFAULT_UI_URL
    ):
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location
        self.ui_url = ui_url
        self._client: Any = None

    @classmethod
    def for_data_root(
        cls,
        data_root: str | os.PathLike[str],
        configured_uri: str = "",
        ui_url: str = DEFAULT_UI_URL,
    ) -> Tracker:
        uri = resolve_tracking_uri(data_root, configured_uri)
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return cls(uri, default_artifact_location(data_root, uri), ui_url)

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            if not self.tracking_uri.startswith("sqlite:///"):
                self._client = MlflowClient(tracking_uri=self.tracking_uri)
                return self._client
            path = Path(self.tracking_uri.removeprefix("sqlite:///"))
            known = _SQLITE_CLIENTS.get(self.tracking_uri)
            if known is not None and path.exists():
                # This process already opened (and, if new, created) this store: every step of
                # an in-process cycle reuses the client instead of re-checking the schema.
                self._client = known
                return known
            # Creating a new store's schema is not safe across processes (two steps of one run
            # starting on a new store failed in alembic's migrations): one process at a time.
            with _file_lock(Path(str(path) + ".lock")):
                client = MlflowClient(tracking_uri=self.tracking_uri)
                client.search_registered_models(max_results=1)  # the registry's store too
            _SQLITE_CLIENTS[self.tracking_uri] = client
            self._client = client
        return self._client

    def experiment_id(self, name: str) -> str:
        """The experiment's id, created on first use (a concurrent creator is tolerated), with
        its description (``experiment_description``) set when it has none (one written in the
        MLflow UI is kept)."""
        from mlflow.exceptions import MlflowException

        description = experiment_description(name)
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            try:
                eid = str(
                    self.client.create_experiment(
                        name,
                        artifact_location=self.artifact_location,
                        tags=None if description is None else {MLFLOW_NOTE: description},
                    )
                )
            except MlflowException:
                experiment = self.client.get_experiment_by_name(name)
                if experiment is None:
                    raise
            else:
                return eid
        eid = str(experiment.experiment_id)
        if description is not None and not experiment.tags.get(MLFLOW_NOTE):
            self.client.set_experiment_tag(eid, MLFLOW_NOTE, description)
        return eid

    def log_walk_forward(
        self,
        experiment: str,
        manifest: Mapping[str, Any],
        model_dir: Path,
        predictions_path: Path,
        tags: Mapping[str, str] | None = None,
    ) -> TrackedRun:
        """A parent run with parameters, overall metrics and the model files; a child run per fold
        model fitted in this run (a fold the fold cache reused was logged by the run that fitted
        it; the parent's tags count both, and its ``fold_val_mape`` covers every fold).

        The manifest (``store.models.build_manifest``) is the single source of what is logged.
        Its ``feature_importance`` (tree families) goes in as the metrics
        ``importance_share.<feature>`` of the top ``IMPORTANCE_TOP`` features, the parameter
        ``feature_importance_top`` naming them, and the whole list as
        ``feature_importance/feature_importance.json`` (with the method) and ``.csv``.
        """
        from mlflow.entities import Metric, Param, RunTag

        client = self.client
        eid = self.experiment_id(experiment)
        family, horizon = str(manifest["family"]), str(manifest["horizon"])
        base_tags = {
            TAG_HORIZON: horizon,
            TAG_FAMILY: family,
            "cbi.code_version": f"{manifest['code_version']['package']}+{manifest['code_version']['git_sha']}",
            **(tags or {}),
        }
        run = client.create_run(eid, run_name=f"{family} {horizon}", tags=base_tags)
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        try:
            fold_ids = []
            reused = 0
            for fold in manifest["folds"]:
                # A child run per fold fitted in this run; a reused fold was logged by the run
                # that fitted it, and a closed-form family (random walk, drift, futures curve,
                # ensemble) fits no fold model: the parent's fold_val_mape covers every fold.
                status = (fold.get("cache") or {}).get("status")
                if status != "refit":
                    reused += status in ("reused", "predicted")
                    continue
                child = client.create_run(
                    eid,
                    run_name=f"{family} {horizon} fold {fold['fold']}",
                    tags={**base_tags, "mlflow.parentRunId": run_id, TAG_FOLD: str(fold["fold"])},
                )
                params = [Param("fold", str(fold["fold"]))]
                for role in ("fit", "validation", "test"):
                    if fold[role]:
                        params += [
                            Param(f"{role}_start", fold[role][0]),
                            Param(f"{role}_end", fold[role][1]),
                        ]
                    params.append(Param(f"{role}_rows", str(fold[f"{role}_rows"])))
                fold_metrics = [Metric("val_mape", float(fold["val_mape"]), now, 0)]
                for key in (
                    "trees",
                    "features",
                    "validation_score",
                    "drift",
                    "seconds",
                    "epochs",
                    "best_epoch",
                ):
                    if isinstance(fold.get(key), int | float):
                        fold_metrics.append(Metric(key, float(fold[key]), now, 0))
                # Neural families: per-epoch losses as stepped metrics (validation from epoch 0).
                for key, first in (("train_loss_curve", 1), ("validation_loss_curve", 0)):
                    name = key.removesuffix("_curve")
                    fold_metrics += [
                        Metric(name, float(v), now, step)
                        for step, v in enumerate(fold.get(key) or [], start=first)
                    ]
                client.log_batch(child.info.run_id, metrics=fold_metrics, params=params)
                client.set_terminated(child.info.run_id)
                fold_ids.append(child.info.run_id)

            run_params = {
                "family": family,
                "horizon": horizon,
                "folds": len(manifest["folds"]),
                "export_sha256": manifest["data"]["export_sha256"],
                "project_config": manifest.get("project_config") or "none",
                "features_candidates": manifest["feature_selection"]["candidates"],
                "max_features": manifest["feature_selection"]["max_features"],
                **{f"walk_forward.{k}": v for k, v in manifest["walk_forward"].items()},
                **{f"model.{k}": v for k, v in manifest["parameters"].items()},
            }
            metrics = [
                Metric("val_mape", float(manifest["val_mape"]), now, 0),
                Metric("random_walk_mape", float(manifest["random_walk_mape"]), now, 0),
                Metric("folds", float(len(manifest["folds"])), now, 0),
                Metric("seconds", float(manifest["seconds"]), now, 0),
            ]
            metrics += [
                Metric("fold_val_mape", float(f["val_mape"]), now, int(f["fold"]))
                for f in manifest["folds"]
            ]
            final_trees = manifest.get("final", {}).get("trees")
            if isinstance(final_trees, int):
                metrics.append(Metric("final_trees", float(final_trees), now, 0))
            final_epochs = manifest.get("final", {}).get("epochs")
            if isinstance(final_epochs, int):
                metrics.append(Metric("final_epochs", float(final_epochs), now, 0))
            importance = manifest.get("feature_importance")
            if "feature_importance_method" in manifest:
                run_params["feature_importance_method"] = manifest["feature_importance_method"]
            if importance:
                metrics += importance_metrics(importance, now)
                run_params["feature_importance_top"] = ", ".join(
                    str(row["feature"]) for row in importance[:IMPORTANCE_TOP]
                )
            client.log_batch(
                run_id,
                metrics=metrics,
                params=[Param(k, _param(v)) for k, v in run_params.items()],
                tags=[
                    RunTag("cbi.fold_runs", str(len(fold_ids))),
                    RunTag("cbi.folds_reused", str(reused)),
                ],
            )
            if importance:
                method = manifest.get("feature_importance_method")
                client.log_dict(
                    run_id,
                    {"method": method, "features": list(importance)},
                    f"{IMPORTANCE_ARTIFACTS}/feature_importance.json",
                )
                client.log_text(
                    run_id,
                    importance_csv(importance),
                    f"{IMPORTANCE_ARTIFACTS}/feature_importance.csv",
                )
                chart = importance_png(importance, f"{horizon} {family}: feature importance")
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "feature_importance.png"
                    path.write_bytes(chart)
                    client.log_artifact(run_id, str(path), IMPORTANCE_ARTIFACTS)
            with local_copy(model_dir) as local_dir, local_copy(predictions_path) as local_file:
                client.log_artifacts(run_id, str(local_dir), "model")
                client.log_artifact(run_id, str(local_file), "predictions")
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id)
        return TrackedRun(
            self.tracking_uri, eid, run_id, run_url(self.ui_url, eid, run_id), tuple(fold_ids)
        )
