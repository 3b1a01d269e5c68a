"""Run the pipeline cycle through Dagster, one run per partition set, and report what it built.

``make demo`` and the nightly cycle use this: it materializes the asset graph in a persistent
Dagster instance (``<data_root>/dagster_home``) so the runs show in the web UI afterwards.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import polars as pl

from cbi_pipeline.core.export import export_filename, summarize_export
from cbi_pipeline.core.horizons import HORIZON_LABELS
from cbi_pipeline.errors import CycleError
from cbi_pipeline.settings import Settings
from cbi_pipeline.storage import DataRoot, read_parquet

log = logging.getLogger(__name__)

INSTANCE_YAML = Path(__file__).with_name("config") / "instance.yaml"
PID_TAG = "cbi/pid"


@dataclass(frozen=True)
class Stage:
    name: str
    assets: tuple[str, ...]
    partitioned: bool
    as_of: bool = False  # one run for the as-of partition of the data's last date


# One run per stage (per horizon for partitioned stages). Everything of one horizon runs in one
# run so that blocking asset checks stop that horizon's downstream steps.
STAGES: tuple[Stage, ...] = (
    Stage("data", ("raw_market", "market_panel"), partitioned=False),
    Stage("correlations", ("correlation_cache",), partitioned=False, as_of=True),
    Stage(
        "horizon",
        (
            "training_export",
            "pretraining_diagnostics",
            "lightgbm_model",
            "xgboost_model",
            "lstm_model",
            "gru_model",
            "baselines",
            "evaluation",
        ),
        partitioned=True,
    ),
    # Promotion re-reads the evaluation and the diagnostics itself, so it runs apart from the
    # gate checks: failing gates keep the previous champion and its forecast is still refreshed.
    Stage("promotion", ("champion", "forecast"), partitioned=True),
)

CHECK_FAILED = "DagsterAssetCheckFailedError"


@dataclass
class CycleReport:
    stage_seconds: dict[str, float] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    failed_checks: dict[str, list[str]] = field(default_factory=dict)  # "stage key" -> checks


def _outcome(result: dg.ExecuteInProcessResult, label: str) -> list[str]:
    """Failed check names of a run; any other step failure raises CycleError with its cause."""
    failed = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if data is not None and not getattr(data, "passed", True):
                failed.append(str(getattr(data, "check_name", "?")))
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        if error is not None and error.cls_name == CHECK_FAILED:
            continue
        cause = error.cause if error is not None and error.cause is not None else error
        message = cause.message.strip() if cause is not None else "unknown error"
        raise CycleError(f"{label}: step {event.step_key} failed: {message}")
    if not result.success and not failed:
        raise CycleError(f"{label}: run {result.run_id} failed")
    return failed


def ensure_instance(home: Path) -> dg.DagsterInstance:
    """A persistent instance under the data root (SQLite storage), created on first use."""
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML.read_text(encoding="utf-8"), encoding="utf-8")
    os.environ.setdefault("DAGSTER_HOME", str(home))
    return dg.DagsterInstance.from_config(str(home))


def release_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark runs of an earlier cycle whose process died (e.g. killed) as failed and free their
    concurrency slots, so a killed ``make demo`` never blocks the next one on the pool."""
    import psutil

    released = []
    started = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    for run in started:
        pid = run.tags.get(PID_TAG)
        if pid is None or psutil.pid_exists(int(pid)):
            continue
        instance.report_run_failed(run, f"process {pid} of this cycle run is gone")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released


def run_cycle(
    settings: Settings,
    instance: dg.DagsterInstance,
    horizons: tuple[str, ...] = HORIZON_LABELS,
    on_run: Callable[[str, str | None, float], None] | None = None,
    log_level: str = "CRITICAL",
) -> CycleReport:
    """Materialize every stage in order. A step that raises stops the cycle with CycleError;
    failing checks (diagnostics, gates) are normal outcomes, recorded in the report."""
    from cbi_pipeline.definitions import ASSETS, build_resources

    resources = build_resources(settings)
    report = CycleReport()
    for run_id in release_dead_runs(instance):
        log.warning("marked run %s of a killed cycle as failed", run_id)
    for stage in STAGES:
        start = time.perf_counter()
        keys: tuple[str | None, ...] = horizons if stage.partitioned else (None,)
        if stage.as_of:
            from cbi_pipeline.correlation_store import latest_partition_key

            keys = (latest_partition_key(DataRoot(settings.data_root)),)
        for key in keys:
            run_start = time.perf_counter()
            result = dg.materialize(
                ASSETS,
                selection=list(stage.assets),
                partition_key=key,
                instance=instance,
                resources=resources,
                tags={"cbi/stage": stage.name, PID_TAG: str(os.getpid())},
                run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
                raise_on_error=False,
            )
            label = f"{stage.name} {key or ''}".strip()
            failed = _outcome(result, label)
            if failed:
                report.failed_checks[label] = failed
            if on_run is not None:
                on_run(stage.name, key, time.perf_counter() - run_start)
            report.run_ids.append(result.run_id)
            log.info("stage %s %s: run %s ok", stage.name, key or "", result.run_id)
        report.stage_seconds[stage.name] = round(time.perf_counter() - start, 2)
    return report


def export_table(settings: Settings, horizons: tuple[str, ...] = HORIZON_LABELS) -> pl.DataFrame:
    """One row per horizon describing the export on disk."""
    root = DataRoot(settings.data_root)
    rows = []
    for h in horizons:
        path = root.export(export_filename(settings.target_symbol, settings.surface, h))
        s = summarize_export(read_parquet(path, "training_export"), h)
        rows.append(
            {
                "horizon": h,
                "rows": s.rows,
                "first": s.first_date,
                "last": s.last_date,
                "features": s.features,
                "labelled": s.labelled_rows,
                "null_share": s.null_share,
                "file": str(path),
            }
        )
    return pl.DataFrame(rows)
