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
    target_symbol: str = "ZL"
    surface: str = "prod"
    regimes: tuple[Regime, ...] = DEFAULT_REGIMES


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

    ``target_{h}`` is the target's close h trading days later (null for the last h rows);
    ``as_of`` is the last date of the data the export was built from.
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
        price.shift(-h).alias(target_column(horizon)),
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
