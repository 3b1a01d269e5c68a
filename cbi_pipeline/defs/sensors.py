"""The nightly chain: run-status sensors that launch each stage of the cycle when the one before
it finishes, so the daemon completes a whole cycle unattended after ``nightly_cycle`` fires.

data_job -> correlations_job[as-of date of the panel's last day] -> horizon_job[1w]
-> promotion_job[1w] + horizon_job[1m] -> ... -> promotion_job[12m]

Horizons run one after another (as ``make demo`` does): a laptop trains one horizon's models at
a time; on a distributed executor each horizon's steps still run in parallel. A horizon run that
fails only because blocking checks failed (diagnostics or gates: a normal outcome) still goes on
to promotion, where ``champion`` re-reads the evaluation and the diagnostics and keeps the
previous champion unless every gate passed; a horizon run that fails for any other reason skips
that horizon's promotion, and the chain moves on to the next horizon either way.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dagster as dg

from cbi_pipeline.core.horizons import HORIZON_LABELS
from cbi_pipeline.defs.jobs import (
    CYCLE_TAG,
    correlations_job,
    data_job,
    horizon_job,
    promotion_job,
)
from cbi_pipeline.defs.resources import PipelineSettings

CHECK_FAILED = "DagsterAssetCheckFailedError"
PARTITION_TAG = "dagster/partition"


@dataclass(frozen=True)
class FinishedRun:
    """What the chain needs to know about a finished run of one of the cycle's jobs."""

    run_id: str
    job: str
    partition: str | None
    succeeded: bool
    only_checks_failed: bool = False  # failed, and every failed step is a failing blocking check
    cycle: str | None = None


@dataclass(frozen=True)
class Launch:
    job: str
    partition: str
    reason: str


def next_launches(
    run: FinishedRun,
    as_of_key: Callable[[], str],
    horizons: Sequence[str] = HORIZON_LABELS,
) -> list[Launch]:
    """The runs that follow a finished run of the cycle (pure: the sensors turn them into
    RunRequests). ``as_of_key`` gives the as-of partition of the data's last date."""
    if run.job in (data_job.name, correlations_job.name) and not run.succeeded:
        return []
    if run.job == data_job.name:
        return [Launch(correlations_job.name, as_of_key(), "raw data and panel rebuilt")]
    if run.job == correlations_job.name:
        return [Launch(horizon_job.name, horizons[0], f"correlation cache {run.partition} built")]
    if run.job != horizon_job.name or run.partition is None or run.partition not in horizons:
        return []
    launches = []
    if run.succeeded or run.only_checks_failed:
        why = "every check passed" if run.succeeded else "checks failed; champion re-checks"
        launches.append(
            Launch(promotion_job.name, run.partition, f"horizon {run.partition}: {why}")
        )
    position = list(horizons).index(run.partition)
    if position + 1 < len(horizons):
        launches.append(
            Launch(horizon_job.name, horizons[position + 1], f"after horizon {run.partition}")
        )
    return launches


def only_check_failures(errors: Sequence[str | None]) -> bool:
    """True when a failed run's step failures are all failing blocking checks (and there is one)."""
    return bool(errors) and all(cls == CHECK_FAILED for cls in errors)


def _requests(run: FinishedRun, launches: list[Launch]) -> list[dg.RunRequest]:
    tags = {CYCLE_TAG: run.cycle} if run.cycle else {}
    return [
        dg.RunRequest(
            run_key=f"{run.run_id}:{launch.job}:{launch.partition}",
            job_name=launch.job,
            partition_key=launch.partition,
            tags=tags,
        )
        for launch in launches
    ]


def _finished(
    context: dg.RunStatusSensorContext, succeeded: bool, checks_only: bool
) -> FinishedRun:
    run = context.dagster_run
    return FinishedRun(
        run_id=run.run_id,
        job=run.job_name,
        partition=run.tags.get(PARTITION_TAG),
        succeeded=succeeded,
        only_checks_failed=checks_only,
        cycle=run.tags.get(CYCLE_TAG),
    )


def _result(context: dg.RunStatusSensorContext, run: FinishedRun, pipeline: PipelineSettings):
    from cbi_pipeline.correlation_store import latest_partition_key

    launches = next_launches(run, lambda: latest_partition_key(pipeline.root()))
    for launch in launches:
        context.log.info(
            f"{run.job} {run.partition or ''} -> {launch.job} {launch.partition} ({launch.reason})"
        )
    if not launches:
        return dg.SkipReason(f"{run.job} {run.partition or ''}: nothing follows it in the cycle")
    return _requests(run, launches)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="cycle_chain",
    monitored_jobs=[data_job, correlations_job, horizon_job],
    request_jobs=[correlations_job, horizon_job, promotion_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def cycle_chain(context: dg.RunStatusSensorContext, pipeline: PipelineSettings):
    """When a stage of the cycle succeeds, launch the next: correlations after the data, the
    first horizon after the correlations, and after each horizon its promotion and the next
    horizon."""
    return _result(context, _finished(context, succeeded=True, checks_only=False), pipeline)


@dg.run_failure_sensor(
    name="cycle_chain_after_failed_checks",
    monitored_jobs=[horizon_job],
    request_jobs=[horizon_job, promotion_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def cycle_chain_after_failed_checks(
    context: dg.RunFailureSensorContext, pipeline: PipelineSettings
):
    """A horizon run that failed: go on to the next horizon, and to promotion (which keeps the
    previous champion) when only blocking checks failed (diagnostics or gates)."""
    errors = [
        event.step_failure_data.error.cls_name if event.step_failure_data.error else None
        for event in context.get_step_failure_events()
    ]
    checks_only = only_check_failures(errors)
    if not checks_only:
        context.log.warning(f"run {context.dagster_run.run_id} failed: {errors}; no promotion")
    return _result(context, _finished(context, succeeded=False, checks_only=checks_only), pipeline)


SENSORS = [cycle_chain, cycle_chain_after_failed_checks]
