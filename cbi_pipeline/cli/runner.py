"""Run the cycle in this process through Dagster, run by run, and report what it built.

``make demo`` and ``cbi cycle`` use this: it executes the code location's named jobs
(``data_job``, ``correlations_job``, ``horizon_job``, ``promotion_job``) in a persistent Dagster
instance (``<data_root>/dagster_home``), so the runs show in the web UI afterwards under those
jobs, where they can be re-executed. It runs the same jobs in the same order as the nightly chain
of sensors: both follow ``defs.stages.next_launches``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import dagster as dg
import psutil

from cbi_pipeline.cli.errors import CycleError
from cbi_pipeline.core.vocabulary import CYCLE_TAG, HORIZON_LABELS, PID_TAG, STAGE_TAG
from cbi_pipeline.definitions import build_defs
from cbi_pipeline.defs.schedules import cycle_id
from cbi_pipeline.defs.stages import (
    CHECK_FAILED,
    FIRST_STAGE,
    STAGE_BY_JOB,
    FinishedRun,
    Launch,
    next_launches,
)
from cbi_pipeline.settings import Settings
from cbi_pipeline.store.correlations import latest_partition_key
from cbi_pipeline.store.root import DataRoot

log = logging.getLogger(__name__)

INSTANCE_YAML = resources.files("cbi_pipeline") / "config" / "instance.yaml"


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
    job_config: Mapping[str, Mapping[str, Any]] | None = None,
    resources: Mapping[str, Any] | None = None,
    cycle: str | None = None,
) -> CycleReport:
    """Execute the cycle's named jobs run by run, in the order of the nightly chain. A step that
    raises stops the cycle with CycleError; failing checks (blocking diagnostics, non-blocking
    gates) are normal outcomes, recorded in the report. ``job_config`` adds run config per job
    name (e.g. smaller networks for ``horizon_job``); ``resources`` replace the code location's.
    Every run is tagged with its stage, ``cycle`` (default: today's date in Chicago, as the nightly
    schedule tags its runs) and this process's id."""
    # The executor is irrelevant here: execute_in_process runs every step in this process.
    location = build_defs(settings, env={})
    root = DataRoot(settings.data_root)
    report = CycleReport()
    tags = {
        CYCLE_TAG: cycle or cycle_id(dt.datetime.now(dt.UTC)),
        PID_TAG: str(os.getpid()),
    }
    for run_id in release_dead_runs(instance):
        log.warning("marked run %s of a killed cycle as failed", run_id)
    pending = [Launch(FIRST_STAGE.job, None, "cycle started")]
    while pending:
        launch = pending.pop(0)
        stage = STAGE_BY_JOB[launch.job]
        start = time.perf_counter()
        run_config = {
            **(job_config or {}).get(launch.job, {}),
            "loggers": {"console": {"config": {"log_level": log_level}}},
        }
        result = location.resolve_job_def(launch.job).execute_in_process(
            run_config=run_config,
            instance=instance,
            partition_key=launch.partition,
            tags={STAGE_TAG: stage.name, **tags},
            resources=resources,
            raise_on_error=False,
        )
        label = f"{stage.name} {launch.partition or ''}".strip()
        failed = _outcome(result, label)
        if failed:
            report.failed_checks[label] = failed
        seconds = time.perf_counter() - start
        if on_run is not None:
            on_run(stage.name, launch.partition, seconds)
        report.run_ids.append(result.run_id)
        report.stage_seconds[stage.name] = round(
            report.stage_seconds.get(stage.name, 0.0) + seconds, 2
        )
        log.info("stage %s: run %s ok", label, result.run_id)
        # _outcome raised on any other step failure: a failed run here failed on blocking checks.
        finished = FinishedRun(
            result.run_id, launch.job, launch.partition, result.success, not result.success
        )
        pending += next_launches(finished, lambda: latest_partition_key(root), horizons)
    return report
