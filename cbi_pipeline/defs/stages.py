"""The stages of the cycle and the order they run in: the one list that the jobs, the nightly
sensors and the in-process cycle (``make demo``, ``cbi cycle``) share.

A Dagster run cannot mix differently-partitioned assets, so the cycle is four stages, one job
each: ``data`` (unpartitioned), ``correlations`` (the as-of date of the panel's last day),
``horizon`` and ``promotion`` (per horizon). ``next_launches`` says which runs follow a finished
one, and both the sensors and the cycle runner follow it, so they run the same runs in the same
order:

data -> correlations[as-of] -> horizon[1w] -> promotion[1w] + horizon[1m] -> ... -> promotion[12m]

Horizons run one after another: a laptop trains one horizon's models at a time. Failing gates
do not fail a horizon run (the gate checks are non-blocking, severity WARN): it succeeds and goes
on to promotion, where ``champion`` re-reads the evaluation and the diagnostics and keeps the
previous champion unless every gate passed. A horizon run that failed only because the blocking
diagnostics checks failed (training skipped) still goes on to promotion, which then keeps the
previous champion too; a horizon run that failed for any other reason skips that horizon's
promotion, and the chain moves on to the next horizon either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cbi_pipeline.core.vocabulary import (
    HORIZON_LABELS,
    MODEL_ASSETS,
    STAGE_CORRELATIONS,
    STAGE_DATA,
    STAGE_HORIZON,
    STAGE_PROMOTION,
)

CHECK_FAILED = "DagsterAssetCheckFailedError"  # the error class of a failing blocking check


@dataclass(frozen=True)
class Stage:
    name: str
    assets: tuple[str, ...]
    partitioned: bool  # one run per horizon
    as_of: bool = False  # one run for the as-of partition of the data's last date

    @property
    def job(self) -> str:
        return f"{self.name}_job"


# Everything of one horizon runs in one run so that the blocking diagnostics checks stop that
# horizon's training. Promotion re-reads the evaluation and the diagnostics itself, so it runs
# apart from the (non-blocking) gate checks: failing gates keep the previous champion.
STAGES: tuple[Stage, ...] = (
    Stage(STAGE_DATA, ("raw_market", "market_panel"), partitioned=False),
    Stage(STAGE_CORRELATIONS, ("correlation_cache",), partitioned=False, as_of=True),
    Stage(
        STAGE_HORIZON,
        (
            "training_export",
            "pretraining_diagnostics",
            MODEL_ASSETS["lightgbm"],
            MODEL_ASSETS["xgboost"],
            MODEL_ASSETS["lstm"],
            MODEL_ASSETS["gru"],
            MODEL_ASSETS["baselines"],
            MODEL_ASSETS["ensemble"],
            "evaluation",
        ),
        partitioned=True,
    ),
    Stage(STAGE_PROMOTION, ("champion", "forecast"), partitioned=True),
)
STAGE_BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
STAGE_BY_JOB: dict[str, Stage] = {s.job: s for s in STAGES}
FIRST_STAGE = STAGES[0]


@dataclass(frozen=True)
class FinishedRun:
    """What the chain needs to know about a finished run of one of the cycle's jobs."""

    run_id: str
    job: str
    partition: str | None
    succeeded: bool
    only_checks_failed: bool = False  # failed, and every failed step is a failing blocking check
    # (in this project: a diagnostics check; gate checks do not fail a run)
    cycle: str | None = None


@dataclass(frozen=True)
class Launch:
    job: str
    partition: str | None
    reason: str


def only_check_failures(errors: Sequence[str | None]) -> bool:
    """True when a failed run's step failures are all failing blocking checks (and there is one)."""
    return bool(errors) and all(cls == CHECK_FAILED for cls in errors)


def next_launches(
    run: FinishedRun,
    as_of_key: Callable[[], str],
    horizons: Sequence[str] = HORIZON_LABELS,
) -> list[Launch]:
    """The runs that follow a finished run of the cycle (pure: the sensors turn them into
    RunRequests, the cycle runner runs them in order). ``as_of_key`` gives the as-of partition of
    the data's last date."""
    data, correlations = STAGE_BY_NAME[STAGE_DATA].job, STAGE_BY_NAME[STAGE_CORRELATIONS].job
    horizon, promotion = STAGE_BY_NAME[STAGE_HORIZON].job, STAGE_BY_NAME[STAGE_PROMOTION].job
    if run.job in (data, correlations) and not run.succeeded:
        return []
    if run.job == data:
        return [Launch(correlations, as_of_key(), "raw data and panel rebuilt")]
    if run.job == correlations:
        return [Launch(horizon, horizons[0], f"correlation cache {run.partition} built")]
    if run.job != horizon or run.partition is None or run.partition not in horizons:
        return []
    launches = []
    if run.succeeded or run.only_checks_failed:
        why = "every check passed" if run.succeeded else "checks failed; champion re-checks"
        launches.append(Launch(promotion, run.partition, f"horizon {run.partition}: {why}"))
    position = list(horizons).index(run.partition)
    if position + 1 < len(horizons):
        launches.append(Launch(horizon, horizons[position + 1], f"after horizon {run.partition}"))
    return launches
