"""Truncation: features recomputed from the raw data cut at t equal the stored features at t."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from cbi_pipeline.core.export import PRICE_COL, feature_columns
from cbi_pipeline.core.features import FeatureSpec, build_features
from cbi_pipeline.core.leakage.spec import DEFAULT_LEAKAGE, LeakageSpec
from cbi_pipeline.core.panel import PanelSpec, build_market_panel

# raw market, raw signals[, raw curve] -> features with a ``date`` column; the curve is passed
# only when there is one, so a builder for curve-less data may take two arguments.
Builder = Callable[..., pl.DataFrame]


def feature_builder(
    panel_spec: PanelSpec,
    feature_spec: FeatureSpec,
    extra: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> Builder:
    """raw market + raw signals (+ raw curve) -> panel -> features (plus ``extra(panel)``, a
    frame with a ``date`` column joined by date): the builder the truncation test recomputes."""

    def build(
        market: pl.DataFrame, signals: pl.DataFrame, curve: pl.DataFrame | None = None
    ) -> pl.DataFrame:
        panel = build_market_panel(market, signals, panel_spec, curve)
        frame = build_features(panel, feature_spec)[0]
        if extra is not None:
            frame = frame.join(extra(panel), on="date", how="left", maintain_order="left")
        return frame

    return build


def truncation_dates(export: pl.DataFrame, n: int, warmup_rows: int = 252) -> list[dt.date]:
    """``n`` dates: the export's last date (the cut there is the full data, so every column the
    builder makes is seen, and the row a forecast uses is checked) and n - 1 spread evenly over
    each regime present after the warm-up rows."""
    frame = export.select(pl.col("date").cast(pl.Date), "market_regime").sort("date")
    if frame.height == 0 or n < 1:
        return []
    last = frame["date"][-1]
    body = frame.slice(0, frame.height - 1)
    if body.height > warmup_rows + n:
        body = body.slice(warmup_rows)
    regimes = body["market_regime"].unique(maintain_order=True).to_list()
    counts = dict.fromkeys(regimes, 0)
    for i in range(n - 1):
        counts[regimes[i % len(regimes)]] += 1
    picked: list[dt.date] = [last]
    for r in regimes:
        days = body.filter(pl.col("market_regime") == r)["date"].to_list()
        k = min(counts[r], len(days))
        picked += [days[int((i + 0.5) * len(days) / k)] for i in range(k)]
    return sorted(set(picked))


@dataclass(frozen=True)
class TruncationResult:
    status: str  # "passed", "failed" or "not_run"
    reason: str
    dates: tuple[str, ...]
    mismatches: tuple[dict[str, object], ...] = ()
    unexplained_columns: tuple[str, ...] = ()
    stored_missing: int = 0

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def columns(self) -> list[str]:
        cols = {str(m["column"]) for m in self.mismatches} | set(self.unexplained_columns)
        return sorted(cols)


def truncation_not_run(reason: str) -> TruncationResult:
    return TruncationResult("not_run", reason, ())


def build_cut(
    build: Builder,
    market: pl.DataFrame,
    signals: pl.DataFrame,
    curve: pl.DataFrame | None,
    t: dt.date,
) -> pl.DataFrame:
    """``build`` on every raw frame cut to the rows dated at or before ``t``."""
    cut = [f.filter(pl.col("date") <= t) for f in (market, signals)]
    if curve is not None:
        cut.append(curve.filter(pl.col("date") <= t))
    return build(*cut)


def recompute_at_dates(
    market: pl.DataFrame,
    signals: pl.DataFrame,
    dates: Sequence[dt.date],
    build: Builder,
    curve: pl.DataFrame | None = None,
) -> dict[dt.date, dict[str, object]]:
    """For each date t: the feature row at t built from the raw rows (market, signals and the
    curve, when there is one) dated at or before t."""
    rows: dict[dt.date, dict[str, object]] = {}
    for t in dates:
        cut = build_cut(build, market, signals, curve, t)
        row = cut.filter(pl.col("date") == t)
        if row.height != 1:
            raise ValueError(
                f"truncation: the builder gave {row.height} rows for {t} from the data cut at "
                f"{t}; expected exactly one (is {t} a trading day of the target?)"
            )
        rows[t] = row.row(0, named=True)
    return rows


def compare_truncated(
    export: pl.DataFrame,
    recomputed: Mapping[dt.date, Mapping[str, object]],
    price_column: str,
    spec: LeakageSpec = DEFAULT_LEAKAGE,
) -> TruncationResult:
    """Stored feature values at each date against the values recomputed from data cut there.

    A stored value that is present and differs from the recomputed one (or has none to match)
    is a mismatch; a stored missing value where the recomputation has one carries no future
    information and is only counted (``stored_missing``, e.g. rows after a cache's last date).
    A column the builder produced at none of the dates is unexplained (it cannot be vouched
    for); one it produced at some dates but not at an earlier cut counts as null there (its raw
    series had not started yet), so include the export's last date, as ``truncation_dates``
    does. ``price`` is compared with the builder's ``price_column``.
    """
    feats = feature_columns(export)
    produced: set[str] = set()
    for row in recomputed.values():
        produced |= set(row)
    unexplained = tuple(c for c in feats if c not in produced)
    checked = [c for c in [PRICE_COL, *feats] if c not in unexplained]
    mismatches: list[dict[str, object]] = []
    stored_missing = 0
    dates = sorted(recomputed)
    stored = export.with_columns(pl.col("date").cast(pl.Date)).filter(pl.col("date").is_in(dates))
    by_date = {r["date"]: r for r in stored.iter_rows(named=True)}
    for t in dates:
        if t not in by_date:
            raise ValueError(f"truncation: date {t} is not a row of the export")
        row, new = by_date[t], recomputed[t]
        for col in checked:
            a, b = row[col], new.get(price_column if col == PRICE_COL else col)
            if _missing(a):
                stored_missing += not _missing(b)
            elif _differs(a, b, spec.rel_tol):
                mismatches.append({"date": str(t), "column": col, "stored": a, "recomputed": b})
    status = "failed" if mismatches or unexplained else "passed"
    reason = f"features recomputed from the raw data cut at each of {len(dates)} dates " + (
        "equal the stored ones" if status == "passed" else "differ from the stored ones"
    )
    if unexplained:
        reason += f"; {len(unexplained)} column(s) are not produced by the feature builder"
    return TruncationResult(
        status,
        reason,
        tuple(str(d) for d in dates),
        tuple(mismatches),
        unexplained,
        stored_missing,
    )


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _differs(a: object, b: object, rel_tol: float) -> bool:
    if _missing(a) or _missing(b):
        return _missing(a) != _missing(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return not math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=1e-12)
    return a != b
