"""Data assets: raw market, the aligned panel and the per-horizon training exports."""

from dataclasses import asdict

import dagster as dg
import polars as pl

from cbi_pipeline.core.export import summarize_export
from cbi_pipeline.core.tables import markdown_table
from cbi_pipeline.defs.errors import reports_input_errors
from cbi_pipeline.defs.partitions import horizon_partitions
from cbi_pipeline.defs.resources import PipelineSettings
from cbi_pipeline.steps.data import (
    build_exports,
    build_panel,
    check_buildable,
    export_column_descriptions,
    load_raw,
    panel_column_descriptions,
    write_raw,
)


def _date_range(frame: pl.DataFrame) -> str:
    return f"{frame['date'].min()!s} .. {frame['date'].max()!s}"


def _column_schema(frame: pl.DataFrame, describe: dict[str, str]) -> dg.TableSchema:
    """The UI's Columns tab: every column of ``frame`` with its type and description."""
    missing = [c for c in frame.columns if not describe.get(c)]
    if missing:
        raise ValueError(f"columns without a description: {missing}")
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, str(dtype), description=describe[name])
            for name, dtype in frame.schema.items()
        ]
    )


@dg.asset(group_name="data", kinds={"polars", "parquet"})
@reports_input_errors
def raw_market(
    context: dg.AssetExecutionContext, pipeline: PipelineSettings
) -> dg.MaterializeResult:
    """Raw daily market closes (long: date, symbol, OHLCV) and raw signals (date, series, value),
    from the built-in sample market or the user's files, validated against the raw contracts
    before anything is written. Stored as ``raw/market.parquet`` and ``raw/signals.parquet``,
    with the user's futures curves (``curve_paths``) as ``raw/curve.parquet``."""
    settings = pipeline.settings()
    root = pipeline.root()
    for path in root.finish_swap():
        context.log.warning(f"finished the interrupted replacement of {path}")
    raw = load_raw(settings)
    check_buildable(raw, settings)
    with root.batch() as batch:  # both raw copies, or neither
        market_path, signals_path = write_raw(root, raw, batch)
    per_symbol = (
        raw.market.group_by("symbol")
        .agg(
            pl.len().alias("rows"),
            pl.col("date").min().alias("first"),
            pl.col("date").max().alias("last"),
        )
        .sort("symbol")
    )
    context.log.info(f"loaded {raw.market.height} market rows from {raw.source}")
    return dg.MaterializeResult(
        metadata={
            "source": raw.source,
            "market_rows": raw.market.height,
            "signal_rows": raw.signals.height,
            "symbols": dg.MetadataValue.json(per_symbol["symbol"].to_list()),
            "signal_series": dg.MetadataValue.json(
                sorted(raw.signals["series"].unique().to_list())
            ),
            "date_range": _date_range(raw.market),
            "per_symbol": dg.MetadataValue.md(markdown_table(per_symbol)),
            "curve_rows": 0 if raw.curve is None else raw.curve.height,
            "market_path": dg.MetadataValue.path(str(market_path)),
            "signals_path": dg.MetadataValue.path(str(signals_path)),
        }
    )


@dg.asset(group_name="data", deps=[raw_market], kinds={"polars", "parquet"})
@reports_input_errors
def market_panel(
    context: dg.AssetExecutionContext, pipeline: PipelineSettings
) -> dg.MaterializeResult:
    """The aligned daily table the features are built from: one row per ZL trading day, every
    other market and signal joined as of that date (its last value on or before the date, no
    older than the staleness limit), never from a later day."""
    settings = pipeline.settings()
    panel = build_panel(pipeline.root(), settings)
    schema = _column_schema(panel, panel_column_descriptions(panel, settings.target_symbol))
    coverage = {c: round(1 - panel[c].null_count() / panel.height, 3) for c in panel.columns[1:]}
    return dg.MaterializeResult(
        metadata={
            "rows": panel.height,
            "columns": panel.width,
            "date_range": _date_range(panel),
            "coverage": dg.MetadataValue.json(coverage),
            "dagster/column_schema": schema,
            "dagster/row_count": panel.height,
            "path": dg.MetadataValue.path(str(pipeline.root().market_panel)),
        }
    )


@dg.asset(
    group_name="data",
    # The export reads the freshest valid correlation_cache partition (rebuilt on demand if stale).
    deps=[
        market_panel,
        dg.AssetDep("correlation_cache", partition_mapping=dg.LastPartitionMapping()),
    ],
    partitions_def=horizon_partitions,
    kinds={"polars", "parquet"},
)
@reports_input_errors
def training_export(
    context: dg.AssetExecutionContext, pipeline: PipelineSettings
) -> dg.MaterializeResult:
    """The training table of one horizon, one row per trading day: the date, the ZL price,
    every feature (each column's definition is in the Columns tab), the market regime and the
    row's training weight, the label (the price h trading days later) and the data's last date.
    Features use only what was known on the row's date. Every model of the horizon trains on it;
    it reads the newest correlation cache partition for its correlation features."""
    horizon = context.partition_key
    settings = pipeline.settings()
    (result,) = build_exports(pipeline.root(), settings, [horizon])
    summary = summarize_export(result.frame, horizon)
    if result.gap_report():
        context.log.warning(result.gap_report())
    schema = _column_schema(
        result.frame, export_column_descriptions(result.catalog, horizon, settings.target_symbol)
    )
    context.log.info(
        f"{horizon}: {summary.rows} rows, {summary.features} features -> {result.path}"
    )
    return dg.MaterializeResult(
        metadata={
            "rows": summary.rows,
            "date_range": f"{summary.first_date} .. {summary.last_date}",
            "feature_count": summary.features,
            "null_share": summary.null_share,
            "target_coverage": summary.target_coverage,
            "labelled_rows": summary.labelled_rows,
            "labels_nulled_by_gaps": result.gap_labels,
            "target_gaps": dg.MetadataValue.json([asdict(g) for g in result.gaps]),
            "dagster/column_schema": schema,
            "dagster/row_count": summary.rows,
            "path": dg.MetadataValue.path(str(result.path)),
        }
    )
