"""The nightly schedule: the cycle starts every weekday evening after the CBOT settlement.

CBOT soybean oil (ZL) settles at 13:15 Chicago time and the exchange publishes final settlement
prices in the afternoon; the cycle starts at 18:30 Chicago time (daylight saving handled by the
time zone), Monday to Friday. The schedule launches ``data_job``; the sensors in
``defs/sensors.py`` chain the other stages run by run.
"""

import datetime as dt

import dagster as dg

from cbi_pipeline.core.vocabulary import CYCLE_TAG
from cbi_pipeline.defs.jobs import data_job

NIGHTLY_CRON = "30 18 * * 1-5"
NIGHTLY_TIMEZONE = "America/Chicago"


def cycle_id(when: dt.datetime) -> str:
    """The cycle a tick starts: its date in Chicago (a run tag shared by all the cycle's runs)."""
    from zoneinfo import ZoneInfo

    return when.astimezone(ZoneInfo(NIGHTLY_TIMEZONE)).date().isoformat()


@dg.schedule(
    cron_schedule=NIGHTLY_CRON,
    execution_timezone=NIGHTLY_TIMEZONE,
    job=data_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Starts the nightly cycle every weekday at 18:30 Chicago time, after the CBOT soybean "
        "oil settlement: reloads the market data, then the chain builds the correlation cache, "
        "trains and evaluates every horizon and publishes tonight's forecasts."
    ),
)
def nightly_cycle(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Every weekday at 18:30 Chicago time, after the CBOT settlement: reload the raw market and
    rebuild the panel; ``cycle_chain`` then runs the correlation cache, each horizon's export,
    diagnostics, models and evaluation, and the promotion and forecast."""
    cycle = cycle_id(context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"nightly-{cycle}", tags={CYCLE_TAG: cycle})


SCHEDULES = [nightly_cycle]
