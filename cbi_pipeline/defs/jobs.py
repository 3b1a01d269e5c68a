"""One asset job per stage of the cycle (``cycle.STAGES``): the units the nightly chain launches.

A Dagster run cannot mix differently-partitioned assets, so the cycle is four jobs: ``data_job``
(unpartitioned), ``correlations_job`` (as-of date), ``horizon_job`` and ``promotion_job`` (per
horizon); each job takes its partitions from its assets. Each job runs its assets' checks too,
so the blocking diagnostics checks stop a horizon's training inside ``horizon_job``.
"""

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from cbi_pipeline.cycle import STAGES, Stage

STAGE_TAG = "cbi/stage"
CYCLE_TAG = "cbi/cycle"  # the nightly cycle a run belongs to: its schedule date (Chicago)


def job_name(stage: Stage) -> str:
    return f"{stage.name}_job"


def _job(stage: Stage) -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        job_name(stage),
        selection=dg.AssetSelection.assets(*stage.assets),
        run_tags={STAGE_TAG: stage.name},
        description=f"Cycle stage '{stage.name}': {', '.join(stage.assets)}.",
    )


STAGE_JOBS: dict[str, UnresolvedAssetJobDefinition] = {s.name: _job(s) for s in STAGES}
data_job = STAGE_JOBS["data"]
correlations_job = STAGE_JOBS["correlations"]
horizon_job = STAGE_JOBS["horizon"]
promotion_job = STAGE_JOBS["promotion"]

JOBS = list(STAGE_JOBS.values())
