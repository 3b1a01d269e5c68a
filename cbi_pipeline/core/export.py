"""The per-horizon training export: features, regime, weight and the h-step-ahead target."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from cbi_pipeline.core.features import FeatureDef
from cbi_pipeline.core.panel import close_column
from cbi_pipeline.core.regimes import DEFAULT_REGIMES, Regime, regime_expressions
from cbi_pipeline.core.vocabulary import horizon_days, target_column

PRICE_COL = "price"
META_COLUMNS = ("date", PRICE_COL, "market_regime", "training_weight", "as_of")


@dataclass(frozen=True)
class ExportSpec:
    """max_gap_days: a label whose window spans a hole in the target's dates longer than this
    (calendar days; the market staleness limit) is null: it would not be an h-day move."""

    target_symbol: str = "ZL"
    surface: str = "prod"
    regimes: tuple[Regime, ...] = DEFAULT_REGIMES
    max_gap_days: int = 7


@dataclass(frozen=True)
class TargetGap:
    """A hole in the target's dates: the last date before it, the first after, calendar days."""

    before: str
    after: str
    days: int


def _big_gap(max_gap_days: int) -> pl.Expr:
    """True on the row that ends a hole longer than ``max_gap_days`` calendar days."""
    return (pl.col("date").diff().dt.total_days() > max_gap_days).fill_null(False)


def target_gaps(dates: pl.Series, max_gap_days: int) -> list[TargetGap]:
    """Every hole in the (sorted) target dates longer than ``max_gap_days`` calendar days."""
    frame = pl.DataFrame({"date": dates}).with_columns(
        pl.col("date").shift(1).alias("before"),
        pl.col("date").diff().dt.total_days().alias("days"),
        _big_gap(max_gap_days).alias("big"),
    )
    return [
        TargetGap(str(r["before"]), str(r["date"]), int(r["days"]))
        for r in frame.filter("big").iter_rows(named=True)
    ]


def labels_spanning_gaps(dates: pl.Series, horizon: str, max_gap_days: int) -> pl.Series:
    """True for each row whose h-step label window (rows i+1..i+h) holds a hole in the dates
    longer than ``max_gap_days``: that label is nulled in the export."""
    h = horizon_days(horizon)
    holes = pl.DataFrame({"date": dates}).select(_big_gap(max_gap_days).cast(pl.Int64).cum_sum())
    cum = holes.to_series()
    return ((cum.shift(-h) - cum) > 0).fill_null(False).alias("spans_gap")


def export_filename(target_symbol: str, surface: str, horizon: str) -> str:
    """Seed-compatible name, e.g. ``zl_training_prod_allhistory_1m.parquet``."""
    horizon_days(horizon)
    if not surface or not surface.replace("_", "").isalnum():
        raise ValueError(f"surface {surface!r} must be a non-empty alphanumeric name")
    return f"{target_symbol.lower()}_training_{surface}_allhistory_{horizon}.parquet"


def feature_columns(export: pl.DataFrame) -> list[str]:
    """Feature columns of an export: everything but the meta columns and the target."""
    return [c for c in export.columns if c not in META_COLUMNS and not c.startswith("target_")]


def build_export(
    features: pl.DataFrame, catalog: list[FeatureDef], horizon: str, spec: ExportSpec = ExportSpec()
) -> pl.DataFrame:
    """One row per target trading day: date, price, features, regime, weight, target_{h}, as_of.

    ``target_{h}`` is the target's close h trading days later (null for the last h rows, and
    for rows whose label window spans a hole in the target's dates longer than
    ``spec.max_gap_days``: ``labels_spanning_gaps``); ``as_of`` is the last date of the data the
    export was built from.
    """
    h = horizon_days(horizon)
    price = pl.col(close_column(spec.target_symbol))
    regime, weight = regime_expressions(spec.regimes)
    as_of = features["date"].max()
    return features.select(
        "date",
        price.alias(PRICE_COL),
        *[d.name for d in catalog],
        regime,
        weight,
        pl.when(labels_spanning_gaps(features["date"], horizon, spec.max_gap_days))
        .then(None)
        .otherwise(price.shift(-h))
        .alias(target_column(horizon)),
        pl.lit(as_of, dtype=pl.Date).alias("as_of"),
    )


@dataclass(frozen=True)
class ExportSummary:
    rows: int
    first_date: str
    last_date: str
    features: int
    null_share: float
    target_coverage: float
    labelled_rows: int


def summarize_export(export: pl.DataFrame, horizon: str) -> ExportSummary:
    """Row count, date range, feature count, share of null feature cells, labelled share."""
    feats = feature_columns(export)
    target = export[target_column(horizon)]
    cells = export.height * max(len(feats), 1)
    nulls = int(export.select(feats).null_count().sum_horizontal().item()) if feats else 0
    labelled = export.height - target.null_count()
    return ExportSummary(
        rows=export.height,
        first_date=str(export["date"].min()),
        last_date=str(export["date"].max()),
        features=len(feats),
        null_share=round(nulls / cells, 4),
        target_coverage=round(labelled / export.height, 4) if export.height else 0.0,
        labelled_rows=labelled,
    )
