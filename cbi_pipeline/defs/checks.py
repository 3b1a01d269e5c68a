"""Blocking asset checks: a failure stops the downstream steps of the same run (training)."""

import warnings
from collections.abc import Iterator
from typing import Any

import dagster as dg

from cbi_pipeline.core.diagnostics import CHECK_ALIGNED, CHECK_MISSING, CHECK_NO_LEAK
from cbi_pipeline.core.diagnostics_schema import validate_diagnostics
from cbi_pipeline.defs.assets.diagnostics import pretraining_diagnostics
from cbi_pipeline.defs.assets.evaluation import evaluation
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import PipelineSettings
from cbi_pipeline.storage import read_json

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

# Partitioned like the asset, so each horizon has its own check status (a failing 1m check must
# not be hidden by a passing 12m one). Dagster 1.13 marks partitioned checks as preview.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", category=dg.PreviewWarning, message=".*partitions_def on an AssetCheckSpec"
    )
    DIAGNOSTICS_CHECK_SPECS = [
        dg.AssetCheckSpec(
            name,
            asset=pretraining_diagnostics,
            blocking=True,
            description=text,
            partitions_def=horizon_partitions,
        )
        for name, text in DESCRIPTIONS.items()
    ]


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
    """Read ``diagnostics/{h}.json`` (validated against its schema) and report each check."""
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


CHECKS = [diagnostics_checks]


# --- promotion gates on the evaluation ---------------------------------------------------------

GATE_CHECKS = {
    "mape_threshold": (
        "candidate_meets_mape_threshold",
        "The candidate's walk-forward MAPE is at most the horizon's threshold "
        "(1w 3%, 1m 4%, 3m 6%, 6m 8%, 12m 12%).",
    ),
    "sharpe_threshold": (
        "candidate_meets_sharpe_threshold",
        "The candidate's non-overlapping Sharpe net of costs is at least the horizon's threshold "
        "(1w 1.2, 1m 1.0, 3m 0.8, 6m 0.6, 12m 0.5).",
    ),
    "skill_vs_random_walk": (
        "candidate_beats_random_walk",
        "The candidate's skill against the random walk, 1 - MAPE / MAPE_rw, is above 0.",
    ),
    "mape_drift_vs_champion": (
        "candidate_mape_within_drift_of_champion",
        "The candidate's MAPE is at most 20% above the current champion's.",
    ),
    "diagnostics_passed": (
        "diagnostics_passed_before_training",
        "The horizon's pre-training diagnostics (alignment, leakage, missing data) passed.",
    ),
}

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", category=dg.PreviewWarning, message=".*partitions_def on an AssetCheckSpec"
    )
    GATE_CHECK_SPECS = [
        dg.AssetCheckSpec(
            check,
            asset=evaluation,
            blocking=True,
            description=text,
            partitions_def=horizon_partitions,
        )
        for check, text in GATE_CHECKS.values()
    ]


@dg.multi_asset_check(specs=GATE_CHECK_SPECS, compute_kind="python")
def gate_checks(
    context: dg.AssetCheckExecutionContext, pipeline: PipelineSettings
) -> Iterator[dg.AssetCheckResult]:
    """Read ``evaluations/{h}.json`` and report each gate with its value, threshold and the
    random walk's figure. No candidate means every gate fails."""
    payload = read_json(pipeline.root().evaluation(context.partition_key), "evaluation")
    gates = {g["name"]: g for g in payload["gates"]}
    for gate, (check, _) in GATE_CHECKS.items():
        g = gates.get(gate)
        if g is None:
            yield dg.AssetCheckResult(
                asset_key=evaluation.key,
                check_name=check,
                passed=False,
                description="no candidate model to judge (only the random walk was evaluated)",
            )
            continue
        yield dg.AssetCheckResult(
            asset_key=evaluation.key,
            check_name=check,
            passed=bool(g["passed"]),
            description=g["detail"],
            metadata={
                "candidate": str(payload["candidate"]),
                "value": g["value"],
                "threshold": g["threshold"],
                "random_walk": g["random_walk"],
                "detail": g["detail"],
            },
        )


CHECKS.append(gate_checks)
