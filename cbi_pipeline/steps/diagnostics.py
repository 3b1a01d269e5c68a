"""Pre-training diagnostics over files: load an export (and the raw data it came from), run the
core diagnostics, validate the payload against its schema and write it atomically.

Shared by the ``pretraining_diagnostics`` asset, the ``cbi diagnostics`` command and the
benchmark, so all three write the same JSON.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from cbi_pipeline.core.diagnostics import build_diagnostics
from cbi_pipeline.core.diagnostics_plot import diagnostics_png
from cbi_pipeline.core.diagnostics_schema import validate_diagnostics
from cbi_pipeline.core.export import export_filename
from cbi_pipeline.core.fingerprint import code_fingerprint, digest, frame_digest, json_digest
from cbi_pipeline.core.leakage.alignment import require_columns
from cbi_pipeline.core.leakage.spec import DEFAULT_LEAKAGE, LeakageSpec
from cbi_pipeline.core.leakage.truncation import (
    Builder,
    TruncationResult,
    compare_truncated,
    feature_builder,
    recompute_at_dates,
    truncation_dates,
    truncation_not_run,
)
from cbi_pipeline.core.panel import close_column
from cbi_pipeline.core.tables import markdown_table, text_table
from cbi_pipeline.core.vocabulary import HORIZON_LABELS
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps import data as tasks
from cbi_pipeline.store.root import (
    DataRoot,
    StorageError,
    read_json,
    read_parquet,
    write_bytes,
    write_json,
)


@dataclass(frozen=True)
class DiagnosticsOutput:
    horizon: str
    payload: dict[str, Any]
    json_path: Path
    plot_path: Path | None


def load_blocks(path: Path) -> dict[str, str]:
    """Feature name -> block, from a feature catalog JSON (a list of {name, block, ...})."""
    catalog = read_json(path, "training_export (it writes the feature catalog)")
    if not isinstance(catalog, list) or not all(
        isinstance(d, dict) and "name" in d and "block" in d for d in catalog
    ):
        raise StorageError(f"{path}: expected a JSON list of {{'name', 'block', ...}} entries")
    return {str(d["name"]): str(d["block"]) for d in catalog}


def export_feature_builder(settings: Settings) -> Builder:
    """raw -> panel -> every feature column of the export: the causal features plus the rolling
    correlations that ``tasks.build_exports`` joins from the correlation cache, here computed
    straight from the (cut) panel. Must mirror ``tasks.build_exports``; when it does not, the
    truncation test names the export columns it cannot reproduce."""
    from cbi_pipeline.core.correlations.build import key_pair_features  # imports numba: only on use

    spec = settings.correlation_spec()

    def correlations(panel: pl.DataFrame) -> pl.DataFrame:
        frame, _ = key_pair_features(panel, spec)
        return frame.select(pl.col("date").cast(pl.Date), pl.exclude("date").cast(pl.Float64))

    return feature_builder(settings.panel_spec(), settings.feature_spec(), correlations)


# --- the recomputed rows, cached under the data root -------------------------------------------

# The code the recomputation runs (a package counts all its files) and the libraries it runs on.
TRUNCATION_CODE = (
    "cbi_pipeline.core.features",
    "cbi_pipeline.core.panel",
    "cbi_pipeline.core.correlations",
    "cbi_pipeline.core.curves",
    "cbi_pipeline.core.leakage",
    "cbi_pipeline.core.export",
    "cbi_pipeline.core.blocks",
    "cbi_pipeline.core.contracts",
    "cbi_pipeline.core.regimes",
    "cbi_pipeline.core.fingerprint",
    "cbi_pipeline.steps.diagnostics",
)
TRUNCATION_LIBRARIES = ("polars", "numpy", "numba")
COMPUTED, REUSED = "computed", "reused"
KEEP_OTHER_ENTRIES = 32  # cached cut dates kept beside those a call uses
# per cached row: the columns of the union its recomputed row did not have
ABSENT = "__truncation_absent__"

Rows = dict[dt.date, dict[str, object]]


def truncation_key(
    market: pl.DataFrame,
    signals: pl.DataFrame,
    curve: pl.DataFrame | None,
    dates: Sequence[dt.date],
    settings: Settings,
) -> str:
    """Everything the recomputed rows depend on: the raw frames, the cut dates, the settings
    the builder reads and the code (and library versions) that builds the features."""
    return json_digest(
        {
            "market": frame_digest(market),
            "signals": frame_digest(signals),
            "curve": frame_digest(curve),
            "dates": [d.isoformat() for d in dates],
            "panel": repr(settings.panel_spec()),
            "features": repr(settings.feature_spec()),
            "correlations": repr(settings.correlation_spec()),
            "target": settings.target_symbol,
            "code": code_fingerprint(TRUNCATION_CODE, TRUNCATION_LIBRARIES),
        }
    )


def encode_rows(rows: Rows) -> bytes | None:
    """The rows as parquet bytes (one row per date, the union of their columns, plus which of
    them each row lacked), or None when they do not read back exactly as given."""
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    if not rows or ABSENT in columns or "date" not in columns:
        return None
    records = [
        {**{c: row.get(c) for c in columns}, ABSENT: [c for c in columns if c not in row]}
        for row in rows.values()
    ]
    try:
        frame = pl.DataFrame(
            records, infer_schema_length=None, schema_overrides={ABSENT: pl.List(pl.String)}
        )
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd")
    except Exception:  # a value polars cannot hold in one column: not cached
        return None
    data = buffer.getvalue()
    back = decode_rows(data, list(rows))
    return data if back is not None and same_rows(back, rows) else None


def decode_rows(data: bytes, dates: Sequence[dt.date]) -> Rows | None:
    """The rows ``encode_rows`` stored for ``dates``, or None for bytes that are not that."""
    try:
        frame = pl.read_parquet(io.BytesIO(data))
        if (
            ABSENT not in frame.columns
            or frame.schema.get("date") != pl.Date
            or frame["date"].to_list() != list(dates)
        ):
            return None
        rows: Rows = {}
        for t, record in zip(dates, frame.iter_rows(named=True), strict=True):
            absent = set(record.pop(ABSENT) or ())
            rows[t] = {k: v for k, v in record.items() if k not in absent}
        return rows
    except Exception:  # garbage, a truncated file, a schema that is not ours
        return None


def same_rows(a: Mapping[dt.date, Mapping[str, object]], b: Rows) -> bool:
    """Same dates, same columns, values of the same type and equal (NaN equal to NaN)."""
    return list(a) == list(b) and all(
        a[t].keys() == b[t].keys() and all(_same(a[t][k], b[t][k]) for k in b[t]) for t in b
    )


def _same(x: object, y: object) -> bool:
    if type(x) is not type(y):
        return False
    if isinstance(x, float) and isinstance(y, float):
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        return x == y and math.copysign(1.0, x) == math.copysign(1.0, y)
    return x == y


def _cut(frame: pl.DataFrame | None, t: dt.date) -> pl.DataFrame | None:
    return None if frame is None else frame.filter(pl.col("date") <= t)


def _cached_row(root: DataRoot, key: str, t: dt.date) -> tuple[Rows | None, str]:
    # An entry is named by its key and the digest of its bytes: one edited, truncated or
    # replaced after it was written no longer matches its name and is not trusted.
    for path in sorted(root.truncation_cache(key).parent.glob(f"{key}-*.parquet")):
        data = path.read_bytes()
        if path.stem == f"{key}-{digest(data)}":
            cached = decode_rows(data, [t])
            if cached is not None:
                return cached, path.name
    return None, ""


def cached_recompute(
    root: DataRoot,
    market: pl.DataFrame,
    signals: pl.DataFrame,
    dates: Sequence[dt.date],
    settings: Settings,
    curve: pl.DataFrame | None = None,
) -> tuple[Rows, str]:
    """``recompute_at_dates`` with the export's feature builder, one cut date at a time: the row
    at ``t`` is built from the raw rows dated at or before ``t`` only, so it is cached under a
    key over those rows (``truncation_key`` of the cut frames). A new day changes the last
    date's cut and the dates that move with it; the other dates' rows are reused. Returns the
    rows and ``REUSED`` when every date was reused, else ``COMPUTED``. An entry whose bytes do
    not match the digest in its name, or that does not read back as the row for its date, is
    recomputed and replaced; beyond ``KEEP_OTHER_ENTRIES`` others, the oldest are removed."""
    rows: Rows = {}
    kept: set[str] = set()
    todo: list[tuple[dt.date, str]] = []
    for t in dates:
        key = truncation_key(
            market.filter(pl.col("date") <= t),
            signals.filter(pl.col("date") <= t),
            _cut(curve, t),
            [t],
            settings,
        )
        cached, name = _cached_row(root, key, t)
        if cached is None:
            todo.append((t, key))
        else:
            rows[t] = cached[t]
            kept.add(name)
    if todo:
        built = recompute_at_dates(
            market, signals, [t for t, _ in todo], export_feature_builder(settings), curve
        )
        for t, key in todo:
            rows[t] = built[t]
            encoded = encode_rows({t: built[t]})
            if encoded is not None:
                kept.add(
                    write_bytes(encoded, root.truncation_cache(f"{key}-{digest(encoded)}")).name
                )
    # Keep this call's entries and the most recent others (the other horizons' dates, the cuts
    # of the last nights): the folder stays small and the next call still finds its rows.
    others = [p for p in root.truncation_cache("x").parent.glob("*.parquet") if p.name not in kept]
    others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for other in others[KEEP_OTHER_ENTRIES:]:
        other.unlink(missing_ok=True)
    return {t: rows[t] for t in dates}, COMPUTED if todo else REUSED


def run_truncation(
    exports: Mapping[str, pl.DataFrame],
    market: pl.DataFrame,
    signals: pl.DataFrame,
    settings: Settings,
    spec: LeakageSpec = DEFAULT_LEAKAGE,
    curve: pl.DataFrame | None = None,
    root: DataRoot | None = None,
) -> tuple[dict[str, TruncationResult], str]:
    """Recompute features from the raw data (the curve too, when there is one) cut at a sample
    of dates once (or reuse the rows cached under ``root``), then compare every export's stored
    features at those dates with them. Also returns ``COMPUTED`` or ``REUSED``."""
    first = next(iter(exports.values()))
    dates = truncation_dates(first, spec.truncation_dates)
    if root is None or not dates:
        build = export_feature_builder(settings)
        recomputed, how = recompute_at_dates(market, signals, dates, build, curve), COMPUTED
    else:
        recomputed, how = cached_recompute(root, market, signals, dates, settings, curve)
    price = close_column(settings.target_symbol)
    results = {h: compare_truncated(ex, recomputed, price, spec) for h, ex in exports.items()}
    return results, how


def _write(
    payload: dict[str, Any], export: pl.DataFrame, json_path: Path, plot_path: Path | None
) -> DiagnosticsOutput:
    validate_diagnostics(payload, str(json_path))
    write_json(payload, json_path)
    if plot_path is not None:
        write_bytes(diagnostics_png(payload, export), plot_path)
    return DiagnosticsOutput(payload["horizon"], payload, json_path, plot_path)


def diagnose_root(
    root: DataRoot,
    settings: Settings,
    horizons: Iterable[str] = HORIZON_LABELS,
    spec: LeakageSpec = DEFAULT_LEAKAGE,
    plot: bool = True,
) -> list[DiagnosticsOutput]:
    """Diagnostics of the pipeline's own exports under the data root, truncation included (the
    raw data must be there: a missing raw file is an error, never a skipped test)."""
    spec = replace(spec, max_gap_days=settings.market_staleness_days)
    exports = {}
    for h in horizons:
        path = root.export(export_filename(settings.target_symbol, settings.surface, h))
        exports[h] = read_parquet(path, "training_export")
        require_columns(exports[h], h, str(path))
    market, signals = tasks.read_raw(root)
    blocks = load_blocks(root.feature_catalog)
    curve = tasks.read_curve(root)
    truncation, how = run_truncation(exports, market, signals, settings, spec, curve, root)
    outputs = []
    for h, export in exports.items():
        source = str(root.export(export_filename(settings.target_symbol, settings.surface, h)))
        payload = build_diagnostics(export, h, truncation[h], blocks, source, spec)
        payload["leakage"]["truncation"]["recomputed"] = how
        outputs.append(
            _write(payload, export, root.diagnostics(h), root.diagnostics_plot(h) if plot else None)
        )
    return outputs


def infer_horizon(export: pl.DataFrame, source: str) -> str:
    found = [c.removeprefix("target_") for c in export.columns if c.startswith("target_")]
    known = [h for h in found if h in HORIZON_LABELS]
    if len(known) != 1:
        raise ValueError(
            f"{source}: cannot tell the horizon from target columns {found}; pass --horizon"
        )
    return known[0]


def diagnose_file(
    path: Path,
    horizon: str | None,
    out: Path,
    settings: Settings,
    catalog: Path | None = None,
    raw_root: DataRoot | None = None,
    spec: LeakageSpec = DEFAULT_LEAKAGE,
    plot: bool = False,
) -> DiagnosticsOutput:
    """Diagnostics of any export parquet, a user's own included. Truncation runs only when a data
    root with the raw market is given; otherwise the report says it was not run, and why."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: export file not found")
    spec = replace(spec, max_gap_days=settings.market_staleness_days)
    export = read_parquet(path, "the export")
    horizon = horizon or infer_horizon(export, str(path))
    require_columns(export, horizon, str(path))
    if catalog is None and (path.parent / "feature_catalog.json").is_file():
        catalog = path.parent / "feature_catalog.json"
    blocks = load_blocks(catalog) if catalog is not None else {}
    if raw_root is None:
        truncation = truncation_not_run(
            "no raw data given: the truncation test recomputes features from the raw market the "
            "export was built from (pass --data-root with raw/market.parquet to run it)"
        )
    else:
        market, signals = tasks.read_raw(raw_root)
        curve = tasks.read_curve(raw_root)
        results, how = run_truncation({horizon: export}, market, signals, settings, spec, curve)
        truncation = results[horizon]
    payload = build_diagnostics(export, horizon, truncation, blocks, str(path), spec)
    if raw_root is not None:
        payload["leakage"]["truncation"]["recomputed"] = how
    return _write(payload, export, out, out.with_suffix(".png") if plot else None)


# --- summaries ---------------------------------------------------------------------------------


def regime_frame(payload: Mapping[str, Any]) -> pl.DataFrame:
    weights = {r["regime"]: r for r in payload["regime_weights"]}
    return pl.DataFrame(
        [
            {
                "regime": r["regime"],
                "rows": r["rows"],
                "labelled": r["labelled_rows"],
                "ann_vol": r["annualised_vol"],
                "rw_mape_%": r["rw_mape_pct"],
                "bh_sharpe": r["buy_hold_sharpe"],
                "weight_share": weights.get(r["regime"], {}).get("weight_share"),
            }
            for r in payload["regime_statistics"]
        ],
        schema={
            "regime": pl.String,
            "rows": pl.Int64,
            "labelled": pl.Int64,
            "ann_vol": pl.Float64,
            "rw_mape_%": pl.Float64,
            "bh_sharpe": pl.Float64,
            "weight_share": pl.Float64,
        },
    )


def checks_frame(payload: Mapping[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"check": name, "passed": c["passed"], "summary": c["summary"]}
            for name, c in payload["checks"].items()
        ]
    )


def summary_markdown(payload: Mapping[str, Any]) -> str:
    leak = payload["leakage"]
    screen = leak["screen"]
    closest = screen["closest"][:3]
    lines = [
        f"**{payload['horizon']}** ({payload['horizon_days']} trading days): "
        f"{payload['rows']} rows {payload['first_date']} .. {payload['last_date']}, "
        f"{payload['features']} features — **{'all checks pass' if payload['passed'] else 'CHECKS FAIL'}**",
        "",
        markdown_table(checks_frame(payload)),
        "",
        markdown_table(regime_frame(payload)),
        "",
        f"Truncation: {leak['truncation']['status']} on {len(leak['truncation']['dates'])} dates "
        f"({leak['truncation']['reason']}). Canary: "
        f"{'caught' if leak['canary']['passed'] else 'MISSED'} {leak['canary']['caught']}. "
        f"Screen: {screen['note']}.",
    ]
    if closest:
        lines.append(
            "Closest to the future-return limit (|corr| / limit): "
            + ", ".join(
                f"{c['feature']} {c['future_corr']:.3f} / {c['future_limit']:.3f}" for c in closest
            )
        )
    if payload["missing_data"]["flagged"]:
        lines.append(
            "Features over the missing limit: " + ", ".join(payload["missing_data"]["flagged"])
        )
    if spikes := spike_line(payload):
        lines.append(spikes)
    return "\n".join(lines)


def spike_line(payload: Mapping[str, Any]) -> str | None:
    """The one-day spikes that reversed (possible bad prints), or None when there are none."""
    spikes = payload["price_spikes"]["spikes"]
    if not spikes:
        return None
    shown = ", ".join(
        f"{s['date']} ({s['previous']:g} -> {s['price']:g} -> {s['next']:g})" for s in spikes[:5]
    )
    more = f" and {len(spikes) - 5} more" if len(spikes) > 5 else ""
    return f"One-day price spikes that reversed the next day (check the vendor file): {shown}{more}"


def summary_text(payload: Mapping[str, Any]) -> str:
    leak = payload["leakage"]
    head = (
        f"{payload['horizon']}: {payload['rows']} rows {payload['first_date']}..{payload['last_date']}, "
        f"{payload['features']} features; truncation {leak['truncation']['status']}, canary "
        f"{'caught' if leak['canary']['passed'] else 'MISSED'}"
    )
    lines = [head, text_table(checks_frame(payload)), text_table(regime_frame(payload))]
    if leak["truncation"]["status"] == "not_run":
        lines.append(f"truncation not run: {leak['truncation']['reason']}")
    if spikes := spike_line(payload):
        lines.append(spikes)
    return "\n".join(lines)
