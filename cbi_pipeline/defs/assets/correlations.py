"""The correlation cache: block-wise rolling correlations, one partition per as-of date."""

import datetime as dt

import dagster as dg
import polars as pl

from cbi_pipeline.core.tables import markdown_table
from cbi_pipeline.defs.errors import reports_input_errors
from cbi_pipeline.defs.partitions import as_of_partitions
from cbi_pipeline.defs.resources import PipelineSettings
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps.correlations import build_partition
from cbi_pipeline.store.root import read_parquet


def cache_freshness(max_age_days: int) -> dg.FreshnessPolicy:
    """The UI's freshness policy: the configured age limit as a wall-clock window (Dagster measures
    freshness from the last materialization). The data-date staleness of each partition is in its
    metadata and is what readers act on. ``definitions`` applies the configured limit; the asset
    is declared with the default one."""
    return dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(days=max_age_days),
        warn_window=dt.timedelta(days=max(max_age_days - 2, 1)),
    )


@dg.asset(
    group_name="correlations",
    deps=["market_panel"],
    partitions_def=as_of_partitions,
    kinds={"numba", "parquet"},
    freshness_policy=cache_freshness(Settings().cache_max_age_days),
    # New data (a market_panel update) or a failed freshness policy requests the latest as-of
    # partition when the automation sensor runs.
    automation_condition=dg.AutomationCondition.eager()
    | (
        dg.AutomationCondition.in_latest_time_window()
        & dg.AutomationCondition.freshness_failed()
        & ~dg.AutomationCondition.in_progress()
    ),
)
@reports_input_errors
def correlation_cache(
    context: dg.AssetExecutionContext, pipeline: PipelineSettings
) -> dg.MaterializeResult:
    """Rolling correlations of daily returns as of one date, ``exports/cache/{as_of}/``: every
    pair within each feature block over 90/180/365 trading days (the as-of matrices and the last
    year of each series), the target's key pairs (VIX, DXY, palm oil, crush margin and configured
    extras) over the whole history (the export's Correlations features), cross-block correlations
    of each block's top-k candidates (ranked by |corr with the target| up to the as-of date) and
    one matrix per regime. A partition extends the newest earlier one when the data up to that
    one is unchanged (only the new days are computed) and equals a full rebuild. It is stale once
    the newest data is more than ``cache_max_age_days`` calendar days past its last data date."""
    settings = pipeline.settings()
    root = pipeline.root()
    as_of = dt.date.fromisoformat(context.partition_key)
    panel = read_parquet(root.market_panel, "market_panel")
    build = build_partition(root, settings, as_of, panel)
    reference = panel["date"].max()
    assert isinstance(reference, dt.date)
    info, cache = build.info, build.cache
    age = info.age_days(reference)
    latest = cache.matrices.filter(pl.col("key")).pivot(
        on="window", index=["a", "b"], values="corr"
    )
    context.log.info(
        f"{as_of}: {build.mode} ({build.reason}), {cache.new_rows} new rows in {build.seconds:.2f}s"
    )
    return dg.MaterializeResult(
        metadata={
            "mode": build.mode,
            "reason": build.reason,
            "base_partition": str(build.base) if build.base else "",
            "new_rows": cache.new_rows,
            "rows": info.rows,
            "last_data_date": str(info.last_data_date),
            "newest_data_date": str(reference),
            "age_days": age,
            "stale": info.is_stale(reference, settings.cache_max_age_days),
            "cache_max_age_days": settings.cache_max_age_days,
            "pairs": cache.matrices["a"].len() // len(cache.matrices["window"].unique()),
            "key_pairs_latest": dg.MetadataValue.md(markdown_table(latest)),
            "top_k": dg.MetadataValue.md(markdown_table(cache.candidates)),
            "features": dg.MetadataValue.json([d.name for d in cache.catalog]),
            "build_seconds": round(build.seconds, 3),
            "path": dg.MetadataValue.path(str(info.path)),
        }
    )
