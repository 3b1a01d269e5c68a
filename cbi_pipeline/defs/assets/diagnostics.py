"""Pre-training diagnostics per horizon: the report that the blocking checks read."""

import base64
from typing import Any

import dagster as dg

from cbi_pipeline.core.diagnostics import failing_checks
from cbi_pipeline.defs.assets.data import raw_market, training_export
from cbi_pipeline.defs.errors import reports_input_errors
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import PipelineSettings
from cbi_pipeline.steps.diagnostics import diagnose_root, summary_markdown


@dg.asset(
    group_name="diagnostics",
    deps=[training_export, raw_market],
    partitions_def=horizon_partitions,
    kinds={"polars", "json"},
)
@reports_input_errors
def pretraining_diagnostics(
    context: dg.AssetExecutionContext, pipeline: PipelineSettings
) -> dg.MaterializeResult:
    """What training of this horizon can trust, ``diagnostics/{h}.json``: regime statistics
    (returns, volatility, random-walk MAPE, buy-and-hold Sharpe), missing data per feature and
    block, the regime weight distribution, and the leakage report (target alignment, truncation
    test recomputed from the raw data, future-information screen and its canary). The blocking
    checks on this asset stop the horizon's training in the same run when any of them fails."""
    horizon = context.partition_key
    (out,) = diagnose_root(pipeline.root(), pipeline.settings(), [horizon])
    payload = out.payload
    failing = failing_checks(payload)
    for name, check in failing.items():
        context.log.warning(f"{horizon}: {name} fails: {check['summary']}")
    metadata: dict[str, Any] = {
        "summary": dg.MetadataValue.md(summary_markdown(payload)),
        "all_checks_pass": payload["passed"],
        "failing_checks": dg.MetadataValue.json(sorted(failing)),
        "truncation": payload["leakage"]["truncation"]["status"],
        "canary_caught": payload["leakage"]["canary"]["passed"],
        "suspect_features": dg.MetadataValue.json(
            [s["feature"] for s in payload["leakage"]["screen"]["suspects"]]
        ),
        "flagged_missing_features": dg.MetadataValue.json(payload["missing_data"]["flagged"]),
        "path": dg.MetadataValue.path(str(out.json_path)),
    }
    if out.plot_path is not None:
        encoded = base64.b64encode(out.plot_path.read_bytes()).decode("ascii")
        metadata["plot"] = dg.MetadataValue.md(f"![diagnostics](data:image/png;base64,{encoded})")
        metadata["plot_path"] = dg.MetadataValue.path(str(out.plot_path))
    return dg.MaterializeResult(metadata=metadata)
