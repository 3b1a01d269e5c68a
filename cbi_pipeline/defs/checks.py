"""Asset checks per horizon: the diagnostics, which block, and the promotion gates, which do not.

A failing diagnostics check (``CHECK_NAMES``) stops the downstream steps of the same run
(training) and fails the run: the data is broken. A failing gate (``GATE_CHECKS``) is an outcome,
not a breakage: it is reported with severity WARN and the run stays green; ``champion`` re-reads
the gates from ``evaluations/{h}.json`` and promotes nothing unless every gate passed.
"""

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

from cbi_pipeline.core.diagnostics_schema import validate_diagnostics
from cbi_pipeline.core.gates import GATE_THRESHOLDS, MAX_MAPE_DRIFT
from cbi_pipeline.core.vocabulary import (
    CHECK_ALIGNED,
    CHECK_MISSING,
    CHECK_NO_LEAK,
    GATE_CHECKS,
    GATE_COVERAGE_80,
    GATE_COVERAGE_90,
    GATE_DIAGNOSTICS,
    GATE_DRIFT,
    GATE_MAPE,
    GATE_SHARPE,
    GATE_SKILL,
)
from cbi_pipeline.defs.assets.diagnostics import pretraining_diagnostics
from cbi_pipeline.defs.assets.evaluation import evaluation
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import PipelineSettings
from cbi_pipeline.store.root import read_json


def horizon_check_specs(
    asset: dg.AssetsDefinition, descriptions: Mapping[str, str], blocking: bool
) -> list[dg.AssetCheckSpec]:
    """Checks partitioned like the asset, so each horizon has its own check status (a failing 1m
    check must not be hidden by a passing 12m one). Dagster 1.13 marks partitioned checks as
    preview."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=dg.PreviewWarning, message=".*partitions_def on an AssetCheckSpec"
        )
        return [
            dg.AssetCheckSpec(
                name,
                asset=asset,
                blocking=blocking,
                description=text,
                partitions_def=horizon_partitions,
            )
            for name, text in descriptions.items()
        ]


DESCRIPTIONS = {
    CHECK_ALIGNED: "target_{h} at each date equals the price h trading days later, on every row.",
    CHECK_NO_LEAK: (
        "No feature carries future information: the future-information screen names no suspect, "
        "features recomputed from raw data cut at sample dates equal the stored ones, and the "
        "planted canary feature is caught."
    ),
    CHECK_MISSING: (
        "Price complete, no feature empty, no block over its missing limit, and at most the "
        "allowed share of features over 50% missing."
    ),
}

DIAGNOSTICS_CHECK_SPECS = horizon_check_specs(pretraining_diagnostics, DESCRIPTIONS, blocking=True)


def _details(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    leak = payload["leakage"]
    if name == CHECK_ALIGNED:
        return {
            "mismatch_count": leak["alignment"]["mismatch_count"],
            "mismatched_rows": dg.MetadataValue.json(leak["alignment"]["mismatches"]),
            "best_matching_shift": str(leak["alignment"]["best_matching_shift"]),
        }
    if name == CHECK_NO_LEAK:
        return {
            "suspects": dg.MetadataValue.json(leak["screen"]["suspects"]),
            "truncation": dg.MetadataValue.json(
                {k: leak["truncation"][k] for k in ("status", "reason", "dates")}
            ),
            "truncation_mismatches": dg.MetadataValue.json(leak["truncation"]["mismatches"]),
            "canary": dg.MetadataValue.json(leak["canary"]),
        }
    flagged = [f for f in payload["missing_data"]["features"] if f["flagged"]]
    return {
        "blocks": dg.MetadataValue.json(payload["missing_data"]["blocks"]),
        "flagged_features": dg.MetadataValue.json(flagged),
    }


@dg.multi_asset_check(specs=DIAGNOSTICS_CHECK_SPECS, compute_kind="python")
def diagnostics_checks(
    context: dg.AssetCheckExecutionContext, pipeline: PipelineSettings
) -> Iterator[dg.AssetCheckResult]:
    """Read ``diagnostics/{h}.json`` (validated against its schema) and report each check; a
    failure (severity ERROR, blocking) skips the horizon's training and fails the run."""
    path = pipeline.root().diagnostics(context.partition_key)
    payload = read_json(path, "pretraining_diagnostics")
    validate_diagnostics(payload, str(path))
    for name in DESCRIPTIONS:
        check = payload["checks"][name]
        yield dg.AssetCheckResult(
            asset_key=pretraining_diagnostics.key,
            check_name=name,
            passed=bool(check["passed"]),
            description=check["summary"],
            metadata={
                "summary": check["summary"],
                "offending": dg.MetadataValue.json(check["offending"]),
                "warnings": dg.MetadataValue.json(check["warnings"]),
                **_details(name, payload),
            },
        )


# --- promotion gates on the evaluation: outcomes, not errors ----------------------------------

GATE_DESCRIPTIONS = {
    GATE_MAPE: "The candidate's walk-forward MAPE is at most the horizon's threshold ("
    + ", ".join(f"{h} {mape:g}%" for h, (mape, _) in GATE_THRESHOLDS.items())
    + ").",
    GATE_SHARPE: "The candidate's non-overlapping Sharpe net of costs is at least the horizon's "
    "threshold ("
    + ", ".join(f"{h} {sharpe:.1f}" for h, (_, sharpe) in GATE_THRESHOLDS.items())
    + ").",
    GATE_SKILL: "The candidate's skill against the random walk, 1 - MAPE / MAPE_rw, is above 0.",
    GATE_DRIFT: f"The candidate's MAPE is at most {MAX_MAPE_DRIFT:.0%} above the current champion's.",
    GATE_DIAGNOSTICS: "The horizon's pre-training diagnostics (alignment, leakage, missing data) "
    "passed.",
    GATE_COVERAGE_80: "The candidate's out-of-fold 80% intervals cover 80% of outcomes, within "
    "the configured tolerance (default 3 points).",
    GATE_COVERAGE_90: "The candidate's out-of-fold 90% intervals cover 90% of outcomes, within "
    "the configured tolerance (default 3 points).",
}
GATE_CHECK_SPECS = horizon_check_specs(
    evaluation, {GATE_CHECKS[g]: text for g, text in GATE_DESCRIPTIONS.items()}, blocking=False
)


@dg.multi_asset_check(specs=GATE_CHECK_SPECS, compute_kind="python")
def gate_checks(
    context: dg.AssetCheckExecutionContext, pipeline: PipelineSettings
) -> Iterator[dg.AssetCheckResult]:
    """Read ``evaluations/{h}.json`` and report each gate with its value, threshold and the
    random walk's figure. No candidate means every gate fails. A failed gate has severity WARN
    and does not fail the run (it is a result); it keeps the candidate from promotion."""
    payload = read_json(pipeline.root().evaluation(context.partition_key), "evaluation")
    gates = {g["name"]: g for g in payload["gates"]}
    for gate, check in GATE_CHECKS.items():
        g = gates.get(gate)
        yield dg.AssetCheckResult(
            asset_key=evaluation.key,
            check_name=check,
            passed=g is not None and bool(g["passed"]),
            severity=dg.AssetCheckSeverity.WARN,
            description=g["detail"]
            if g is not None
            else "no candidate model to judge (only the random walk was evaluated)",
            metadata={}
            if g is None
            else {
                "candidate": str(payload["candidate"]),
                "value": g["value"],
                "threshold": g["threshold"],
                "random_walk": g["random_walk"],
                "detail": g["detail"],
            },
        )


CHECKS = [diagnostics_checks, gate_checks]
