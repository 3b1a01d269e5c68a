"""The pipeline's steps over the data root, shared by the Dagster assets and the ``cbi`` CLI.

Each step loads, calls one core function and writes atomically; validation happens before any
write, so bad input leaves earlier outputs untouched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from cbi_pipeline.core.contracts import (
    DataContractError,
    check_market_coverage,
    check_signal_names,
    combine_market,
    combine_signals,
    normalize_market,
    normalize_signals,
)
from cbi_pipeline.core.curves.contract import combine_curves, normalize_curve
from cbi_pipeline.core.curves.features import CURVE_FIELDS, curve_column
from cbi_pipeline.core.curves.roll import continuous_series
from cbi_pipeline.core.export import (
    PRICE_COL,
    TargetGap,
    build_export,
    export_filename,
    labels_spanning_gaps,
    summarize_export,
    target_gaps,
)
from cbi_pipeline.core.features import FeatureDef, FeatureSpec, build_features
from cbi_pipeline.core.fingerprint import digest, frame_digest
from cbi_pipeline.core.memo import Kept
from cbi_pipeline.core.panel import build_market_panel, close_column
from cbi_pipeline.core.sample.generator import SampleSpec, generate_sample_market
from cbi_pipeline.core.vocabulary import HORIZON_LABELS, horizon_days, target_column
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps.correlations import join_correlation_features
from cbi_pipeline.store.root import Batch, DataRoot, read_parquet, write_json, write_parquet
from cbi_pipeline.store.sources import (
    load_curve_files,
    load_market_files,
    load_signal_files,
    read_table,
)


@dataclass(frozen=True)
class RawData:
    """curve: the validated futures curves (``core.curves``), None when none were given."""

    market: pl.DataFrame
    signals: pl.DataFrame
    source: str
    curve: pl.DataFrame | None = None


def load_raw(
    settings: Settings,
    today: dt.date | None = None,
    horizons: Iterable[str] = HORIZON_LABELS,
) -> RawData:
    """The sample market or the user's files, validated through the same contract checks, with
    everything else a run reads (the regime calendar) and the target's history long enough to
    label every horizon asked for: all of it before anything is written."""
    today = today or dt.date.today()
    settings.regimes()  # a bad calendar fails here, not after the raw copies are replaced
    curve = None
    if settings.uses_sample:
        start, end = settings.sample_dates()
        sample = generate_sample_market(
            SampleSpec(start=start, end=end, seed=settings.sample_seed), today=today
        )
        market = combine_market([normalize_market(sample.market, "sample market", today)])
        signals = combine_signals([normalize_signals(sample.signals, "sample signals", today)])
        curve = combine_curves([normalize_curve(sample.curve, "sample curve", today)], ["sample"])
        source = f"sample market (seed {settings.sample_seed})"
    else:
        curve = load_curve_files(settings.curve_paths, today) if settings.curve_paths else None
        if settings.market_paths:
            market = load_market_files(settings.market_paths, today)
        else:
            assert curve is not None  # uses_sample is False: market or curve paths are given
            market = market_from_curve(curve, settings, today)
        signals = (
            load_signal_files(settings.signal_paths, today)
            if settings.signal_paths
            else combine_signals([])
        )
        source = ", ".join(settings.market_paths + settings.curve_paths + settings.signal_paths)
    check_market_coverage(market, settings.target_symbol, source)
    check_history_length(market, settings.target_symbol, horizons, source)
    return RawData(market, signals, source, curve)


def market_from_curve(curve: pl.DataFrame, settings: Settings, today: dt.date) -> pl.DataFrame:
    """The raw market rows (date, symbol, close, volume) of each curve symbol's unadjusted front
    series under the roll rule: what a front-month file would hold, had the vendor rolled as the
    desk does. Validated through the market contract like any market file."""
    front = continuous_series(curve, settings.roll_spec())
    volume = curve.select("date", "symbol", "contract", "volume")
    rows = front.join(volume, on=["date", "symbol", "contract"], how="left").select(
        "date", "symbol", pl.col("front").alias("close"), "volume"
    )
    return combine_market([normalize_market(rows, "front months of the curve", today)])


def check_history_length(
    market: pl.DataFrame, target_symbol: str, horizons: Iterable[str], source: str
) -> None:
    """Every horizon to be built needs more target days than its label spans; else its export
    would have no labelled row."""
    days = market.filter(pl.col("symbol") == target_symbol)["date"].n_unique()
    short = {h: horizon_days(h) for h in horizons if days <= horizon_days(h)}
    if short:
        raise DataContractError(
            f"{source}: the target {target_symbol} has {days} trading days, too few to label "
            + ", ".join(f"{h} (needs more than {n})" for h, n in short.items())
            + "; expected a longer history (or build only the shorter horizons)"
        )


def check_buildable(raw: RawData, settings: Settings) -> pl.DataFrame:
    """Build the panel and the features in memory, as the next steps will: whatever fails there
    (a signal or symbol whose features collide with others, ...) fails before the raw copies
    are replaced. Returns the panel, for a caller that writes it next (``write_panel``)."""
    signals_source = ", ".join(settings.signal_paths) or raw.source
    curve_columns = (
        [curve_column(s, f) for s in raw.curve["symbol"].unique().to_list() for f in CURVE_FIELDS]
        if raw.curve is not None
        else []
    )
    check_signal_names(
        raw.signals, raw.market, settings.target_symbol, signals_source, curve_columns
    )
    panel = build_market_panel(raw.market, raw.signals, settings.panel_spec(), raw.curve)
    build_features(panel, settings.feature_spec())
    return panel


def write_panel(root: DataRoot, panel: pl.DataFrame, batch: Batch | None = None) -> Path:
    put = batch.parquet if batch else write_parquet
    return put(panel, root.market_panel)


def write_raw(root: DataRoot, raw: RawData, batch: Batch | None = None) -> tuple[Path, Path]:
    """The raw copies (and the curve, when there is one), each atomically, or staged in
    ``batch`` to be swapped in with the rest. Inputs without a curve remove an earlier run's
    raw/curve.parquet, which would else be read as theirs."""
    put = batch.parquet if batch else write_parquet
    if raw.curve is not None:
        put(raw.curve, root.raw_curve)
    elif batch is not None:
        batch.remove(root.raw_curve)
    else:
        root.raw_curve.unlink(missing_ok=True)
    return put(raw.market, root.raw_market), put(raw.signals, root.raw_signals)


def read_raw(root: DataRoot) -> tuple[pl.DataFrame, pl.DataFrame]:
    return read_parquet(root.raw_market, "raw_market"), read_parquet(root.raw_signals, "raw_market")


def read_curve(root: DataRoot) -> pl.DataFrame | None:
    """The raw curve the raw copies were written with, or None when their inputs had none."""
    return read_parquet(root.raw_curve, "raw_market") if root.raw_curve.exists() else None


def build_panel(root: DataRoot, settings: Settings) -> pl.DataFrame:
    market, signals = read_raw(root)
    panel = build_market_panel(market, signals, settings.panel_spec(), read_curve(root))
    write_panel(root, panel)
    return panel


def catalog_payload(catalog: list[FeatureDef]) -> list[dict[str, object]]:
    return [asdict(d) for d in catalog]


@dataclass(frozen=True)
class ExportResult:
    """gaps: holes in the target's dates longer than the staleness limit; gap_labels: the
    horizon's labels nulled because their window spans one."""

    horizon: str
    path: Path
    frame: pl.DataFrame
    catalog: list[FeatureDef]
    gaps: tuple[TargetGap, ...] = ()
    gap_labels: int = 0

    def gap_report(self) -> str | None:
        """One line for the user, or None when the target has no such hole."""
        if not self.gaps:
            return None
        shown = ", ".join(f"{g.before}..{g.after} ({g.days} days)" for g in self.gaps[:3])
        more = f" and {len(self.gaps) - 3} more" if len(self.gaps) > 3 else ""
        return (
            f"{self.horizon}: {self.gap_labels} labels set to null because their window spans "
            f"a hole in the target's dates longer than the staleness limit: {shown}{more}"
        )


# The features of the last panels, keyed by the panel's contents and the feature spec: every
# horizon's export starts from the same features, and the cycle builds them one horizon at a time.
_FEATURES: Kept[tuple[pl.DataFrame, tuple[FeatureDef, ...]]] = Kept(2)


def panel_features(panel: pl.DataFrame, spec: FeatureSpec) -> tuple[pl.DataFrame, list[FeatureDef]]:
    """``build_features`` of the panel, built once per panel contents and spec in a process."""

    def build() -> tuple[pl.DataFrame, tuple[FeatureDef, ...]]:
        built, defs = build_features(panel, spec)
        return built, tuple(defs)

    frame, defs = _FEATURES.get(digest(frame_digest(panel), repr(spec)), build)
    return frame, list(defs)


def build_exports(
    root: DataRoot,
    settings: Settings,
    horizons: Iterable[str],
    panel: pl.DataFrame | None = None,
    batch: Batch | None = None,
) -> list[ExportResult]:
    """Features once, then one export per horizon, each written atomically with the catalog (or
    staged in ``batch``, replaced together with the rest of it on commit)."""
    if panel is None:
        panel = read_parquet(root.market_panel, "market_panel")
    spec = settings.export_spec()
    features, catalog = panel_features(panel, settings.feature_spec())
    # Rolling-correlation features come from the correlation cache (rebuilt on demand if stale).
    features, catalog = join_correlation_features(root, settings, panel, features, catalog)
    put_parquet = batch.parquet if batch else write_parquet
    put_json = batch.json if batch else write_json
    gaps = tuple(target_gaps(features["date"], spec.max_gap_days))
    results = []
    for horizon in horizons:
        frame = build_export(features, catalog, horizon, spec)
        path = put_parquet(
            frame, root.export(export_filename(spec.target_symbol, spec.surface, horizon))
        )
        nulled = int(labels_spanning_gaps(features["date"], horizon, spec.max_gap_days).sum())
        results.append(ExportResult(horizon, path, frame, catalog, gaps, nulled))
    put_json(catalog_payload(catalog), root.feature_catalog)
    return results


# --- column descriptions (the UI's Columns tab) ----------------------------------------------

_PANEL_SUFFIXES = {
    "close": "daily settlement price",
    "open": "opening price",
    "high": "session high",
    "low": "session low",
    "volume": "traded volume",
    "roll_adjusted": (
        "held contract's price, forward-adjusted at each roll so its returns are a rolled "
        "position's"
    ),
    "carry": "annualised log spread of the next contract over the held one",
    "curve_slope": "slope of log price against years to expiry over the held and next contracts",
    "oi_share": "held contract's share of the open interest of all its contracts",
    "days_to_roll": "weekdays until the held contract rolls",
}


def panel_column_descriptions(panel: pl.DataFrame, target: str) -> dict[str, str]:
    """Column descriptions of the panel: a market field by its suffix, else a signal series."""
    describe = {"date": f"Trading day of {target} (one row per {target} settlement)."}
    suffixes = sorted(_PANEL_SUFFIXES, key=len, reverse=True)
    for column in panel.columns[1:]:
        field = next((f for f in suffixes if column.endswith(f"_{f}")), None)
        if field is not None:
            symbol = column.removesuffix(f"_{field}")
            describe[column] = (
                f"{symbol} {_PANEL_SUFFIXES[field]}: the last value on or before the date."
            )
        else:
            describe[column] = (
                f"Signal series {column}: the last value on or before the date, left empty "
                "once it is older than the signal staleness limit."
            )
    return describe


def export_column_descriptions(
    catalog: list[FeatureDef], horizon: str, target: str
) -> dict[str, str]:
    """Column descriptions of a training table: the catalog's definition of each feature (with
    its block) and plain words for the other columns."""
    days = horizon_days(horizon)
    describe = {
        "date": f"Trading day of {target}: the forecast origin of this row.",
        PRICE_COL: f"{target} settlement price on the date.",
        "market_regime": "The market regime the date falls in (from the regime calendar).",
        "training_weight": "Weight of the row when models are trained: its regime's weight.",
        target_column(horizon): (
            f"The label: the {target} price {days} trading days after the date; empty where "
            "that day is not yet known or the window spans a long hole in the prices."
        ),
        "as_of": "Last date of the data this table was built from (the same on every row).",
    }
    for feature in catalog:
        describe[feature.name] = f"{feature.definition} ({feature.block} block)"
    return describe


def export_table(
    root: DataRoot, settings: Settings, horizons: Iterable[str] = HORIZON_LABELS
) -> pl.DataFrame:
    """One row per horizon describing the export on disk."""
    rows = []
    for h in horizons:
        path = root.export(export_filename(settings.target_symbol, settings.surface, h))
        s = summarize_export(read_parquet(path, "training_export"), h)
        rows.append(
            {
                "horizon": h,
                "rows": s.rows,
                "first": s.first_date,
                "last": s.last_date,
                "features": s.features,
                "labelled": s.labelled_rows,
                "null_share": s.null_share,
                "file": str(path),
            }
        )
    return pl.DataFrame(rows)


def is_export(columns: list[str]) -> bool:
    """An export's columns: ``date``, ``price`` and a ``target_{h}`` label."""
    return {"date", "price"} <= set(columns) and any(c.startswith("target_") for c in columns)


def panel_of_export(path: Path, settings: Settings) -> pl.DataFrame:
    """The market panel an export was built from: ``market_panel.parquet`` beside it (the
    export's data root), checked to be that export's: the panel has every export date and the
    target close equals the export's price on each. An export holds features, not the closes
    the correlations are computed from, so without its panel there is nothing to compute."""
    export = read_table(path)
    panel_path = path.parent / "market_panel.parquet"
    if not panel_path.is_file():
        raise DataContractError(
            f"{path}: an export holds features, not the closes its correlation features are "
            f"computed from; expected its market panel at {panel_path} (the export's data root, "
            "as `cbi export` writes it), or pass a raw market file or a panel"
        )
    panel = read_parquet(panel_path, "market_panel")
    target = close_column(settings.target_symbol)
    if target not in panel.columns:
        raise DataContractError(f"{panel_path}: no {target!r} column for the target")
    dates = export.select(pl.col("date").cast(pl.Date), pl.col("price").cast(pl.Float64))
    joined = dates.join(panel.select("date", target), on="date", how="left")
    missing = joined.filter(pl.col(target).is_null())
    differs = joined.filter(
        pl.col(target).is_not_null() & ((pl.col(target) - pl.col("price")).abs() > 1e-9)
    )
    if missing.height or differs.height:
        shown = (missing if missing.height else differs)["date"].head(3).to_list()
        raise DataContractError(
            f"{path}: the market panel beside it ({panel_path}) is not the one it was built from: "
            f"{missing.height} export date(s) missing from it and {differs.height} with another "
            f"{target} than the export's price, e.g. {[str(d) for d in shown]}; expected the "
            "panel of the same `cbi export`"
        )
    return panel


def load_panel_file(path: Path, settings: Settings, signal_paths: list[str] | None) -> pl.DataFrame:
    """A raw market file (long) turned into the panel, or a panel file as it is."""
    frame = read_table(path)
    target = close_column(settings.target_symbol)
    if is_export(frame.columns):
        if signal_paths:
            raise DataContractError(f"{path}: --signals only applies to a raw market file")
        return panel_of_export(path, settings)
    if {"symbol", "close"} <= set(frame.columns):
        market = load_market_files([str(path)])
        check_market_coverage(market, settings.target_symbol, str(path))
        signals = load_signal_files(signal_paths) if signal_paths else combine_signals([])
        return build_market_panel(market, signals, settings.panel_spec())
    if "date" in frame.columns and target in frame.columns:
        if signal_paths:
            raise DataContractError(f"{path}: --signals only applies to a raw market file")
        if frame.schema["date"] != pl.Date:
            try:
                frame = frame.with_columns(pl.col("date").str.to_date("%Y-%m-%d"))
            except Exception as exc:
                raise DataContractError(f"{path}: column 'date' is not YYYY-MM-DD ({exc})") from exc
        for col in frame.columns:
            if col != "date":
                try:
                    frame = frame.with_columns(pl.col(col).cast(pl.Float64))
                except Exception as exc:
                    raise DataContractError(
                        f"{path}: column {col!r} is not numeric ({exc})"
                    ) from exc
        return frame
    raise DataContractError(
        f"{path}: expected a raw market file (columns date, symbol, close), a market panel "
        f"(columns date, {target}, ...) or a training export (date, price, target_<h>, ...); "
        f"got columns {frame.columns[:8]}"
    )
