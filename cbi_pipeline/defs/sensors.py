"""The nightly chain: run-status sensors that launch each stage of the cycle when the one before
it finishes, so the daemon completes a whole cycle unattended after ``nightly_cycle`` fires. What
follows a run is ``defs.stages.next_launches``, the plan the in-process cycle follows too.
"""

import dagster as dg

from cbi_pipeline.core.vocabulary import CYCLE_TAG, PARTITION_TAG
from cbi_pipeline.defs.jobs import correlations_job, data_job, horizon_job, promotion_job
from cbi_pipeline.defs.resources import PipelineSettings
from cbi_pipeline.defs.stages import FinishedRun, Launch, next_launches, only_check_failures
from cbi_pipeline.store.correlations import latest_partition_key


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
    description=(
        "Runs the nightly cycle step by step: when the market data is rebuilt it builds the "
        "correlation cache for the data's last date, then each horizon in turn (1w, 1m, 3m, 6m, "
        "12m: training table, diagnostics, models, evaluation), and after each horizon its "
        "promotion and forecast."
    ),
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
    description=(
        "Keeps the nightly cycle going when a horizon's run fails: it moves on to the next "
        "horizon, and when only the pre-training diagnostics failed (failed promotion gates "
        "leave the run green) it still runs that horizon's promotion, which keeps the previous "
        "champion and refreshes its forecast."
    ),
)
def cycle_chain_after_failed_checks(
    context: dg.RunFailureSensorContext, pipeline: PipelineSettings
):
    """A horizon run that failed: go on to the next horizon, and to promotion (which keeps the
    previous champion) when only blocking checks failed: the diagnostics (gate checks do not
    block, so a horizon whose gates fail succeeds and is chained by ``cycle_chain``)."""
    errors = [
        event.step_failure_data.error.cls_name if event.step_failure_data.error else None
        for event in context.get_step_failure_events()
    ]
    checks_only = only_check_failures(errors)
    if not checks_only:
        context.log.warning(f"run {context.dagster_run.run_id} failed: {errors}; no promotion")
    return _result(context, _finished(context, succeeded=False, checks_only=checks_only), pipeline)


SENSORS = [cycle_chain, cycle_chain_after_failed_checks]
