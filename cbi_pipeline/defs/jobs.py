"""One asset job per stage of the cycle (``defs/stages.py``): the units the nightly chain and the
in-process cycle (``make demo``, ``cbi cycle``) launch, so every run is recorded under its job.

Each job takes its partitions from its assets and runs their checks too, so the blocking
diagnostics checks stop a horizon's training inside ``horizon_job``; the gate checks report in
the same run without failing it.
"""

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from cbi_pipeline.core.vocabulary import (
    STAGE_CORRELATIONS,
    STAGE_DATA,
    STAGE_HORIZON,
    STAGE_PROMOTION,
    STAGE_TAG,
)
from cbi_pipeline.defs.stages import STAGES, Stage


def stage_job(stage: Stage) -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        stage.job,
        selection=dg.AssetSelection.assets(*stage.assets),
        run_tags={STAGE_TAG: stage.name},
        description=f"Cycle stage '{stage.name}': {', '.join(stage.assets)}.",
    )


STAGE_JOBS: dict[str, UnresolvedAssetJobDefinition] = {s.name: stage_job(s) for s in STAGES}
data_job = STAGE_JOBS[STAGE_DATA]
correlations_job = STAGE_JOBS[STAGE_CORRELATIONS]
horizon_job = STAGE_JOBS[STAGE_HORIZON]
promotion_job = STAGE_JOBS[STAGE_PROMOTION]

JOBS = list(STAGE_JOBS.values())
