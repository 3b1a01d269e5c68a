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
    # No automation condition: the nightly chain is the one thing that launches this asset (an
    # eager condition would launch a second run of the same partition beside it).
)
@reports_input_errors
def correlation_cache(
    context: dg.AssetExecutionContext, pipeline: PipelineSettings
) -> dg.MaterializeResult:
    """Rolling correlations of daily returns as of one date (one partition per weekday):
    between the series of each feature block over 90, 180 and 365 trading days, between ZL and
    its key partners (VIX, the dollar index, palm oil, the crush margin and any configured
    extras) over the whole history, which the training tables use as features, between the
    strongest series of different blocks, and within each market regime. A new date extends the
    previous one (only the new days are computed) and gives the same numbers as a full rebuild.

    The nightly cycle builds one partition a night, the date of the data's last settlement
    (today's once today's settlement is in), right after the market data; nothing else launches
    it. The partitions begin in May 2001, the first date with a full 365-day window of the
    sample's history; earlier dates, and weekdays no cycle ran on, stay missing, which is
    harmless: the training tables read the newest partition and rebuild it first when it is more
    than the configured age limit (7 days by default) behind the newest data."""
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
