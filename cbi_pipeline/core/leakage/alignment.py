"""Target alignment: ``target_{h}`` at row t equals ``price`` at row t+h, on every row; and
the columns every diagnostic needs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from cbi_pipeline.core.export import PRICE_COL, feature_columns, labels_spanning_gaps
from cbi_pipeline.core.leakage.arrays import close_mask, float_column, shift_ahead
from cbi_pipeline.core.leakage.spec import DEFAULT_LEAKAGE, LeakageSpec
from cbi_pipeline.core.vocabulary import horizon_days, target_column


@dataclass(frozen=True)
class AlignmentResult:
    horizon: str
    rows_checked: int
    mismatch_count: int
    mismatches: tuple[dict[str, object], ...]
    dates_increasing: bool
    best_matching_shift: int | None

    @property
    def passed(self) -> bool:
        return self.dates_increasing and self.mismatch_count == 0


def require_columns(export: pl.DataFrame, horizon: str, source: str = "export") -> None:
    """The columns every diagnostic needs; the error names what is missing."""
    needed = ["date", PRICE_COL, target_column(horizon), "market_regime", "training_weight"]
    missing = [c for c in needed if c not in export.columns]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {missing}; a training export for horizon {horizon} "
            f"needs {needed}"
        )
    schema = export.schema
    if not schema["date"].is_temporal() or schema["date"] in (pl.Time, pl.Duration):
        raise ValueError(f"{source}: column 'date' is {schema['date']}, expected Date")
    for col in (PRICE_COL, target_column(horizon), "training_weight"):
        if not schema[col].is_numeric():
            raise ValueError(f"{source}: column {col!r} is {schema[col]}, expected a number")
    floats = [c for c in feature_columns(export) if schema[c].is_float()]
    if floats:
        counts = export.select(pl.col(c).is_infinite().sum() for c in floats).row(0, named=True)
        infinite = {c: int(n) for c, n in counts.items() if n}
        if infinite:
            first = next(iter(infinite))
            dates = export.filter(pl.col(first).is_infinite())["date"].head(3).to_list()
            raise ValueError(
                f"{source}: {len(infinite)} feature column(s) hold infinite values: "
                + ", ".join(f"{c} ({n} rows)" for c, n in list(infinite.items())[:5])
                + f"; e.g. {first!r} on {[str(d) for d in dates]}; expected finite numbers or "
                "nulls (missing)"
            )


def check_alignment(
    export: pl.DataFrame, horizon: str, spec: LeakageSpec = DEFAULT_LEAKAGE, max_rows: int = 20
) -> AlignmentResult:
    """``target_{h}[t] == price[t+h]`` on every row; null exactly where no row t+h exists or the
    label's window spans a hole in the dates longer than ``spec.max_gap_days`` (the export
    nulls those: ``core.export.labels_spanning_gaps``)."""
    h = horizon_days(horizon)
    dates = export["date"].cast(pl.Date)
    increasing = bool(dates.is_sorted()) and dates.n_unique() == dates.len()
    price = float_column(export, PRICE_COL)
    target = float_column(export, target_column(horizon))
    expected = shift_ahead(price, h)
    if increasing:
        spans = labels_spanning_gaps(dates, horizon, spec.max_gap_days).to_numpy()
        expected[spans] = np.nan
    has_t, has_e = np.isfinite(target), np.isfinite(expected)
    ok = (~has_t & ~has_e) | (has_t & has_e & close_mask(target, expected, spec.rel_tol))
    bad = np.flatnonzero(~ok)
    date_list = dates.to_list()
    rows = []
    for i in bad[:max_rows]:
        ahead = date_list[i + h] if i + h < len(date_list) else None
        rows.append(
            {
                "row": int(i),
                "date": str(date_list[i]),
                "target": None if not has_t[i] else float(target[i]),
                "price_h_ahead": None if not has_e[i] else float(expected[i]),
                "date_h_ahead": None if ahead is None else str(ahead),
            }
        )
    best = None
    if bad.size:
        best = _best_shift(price, target, h, spec.rel_tol)
    return AlignmentResult(
        horizon, int(export.height), int(bad.size), tuple(rows), increasing, best
    )


def _best_shift(price: np.ndarray, target: np.ndarray, h: int, rel_tol: float) -> int | None:
    """The k for which ``target[t] == price[t+k]`` holds on the most rows (>= 90% of them)."""
    best, best_share = None, 0.0
    for k in range(-h, 2 * h + 3):
        ahead = shift_ahead(price, k)
        both = np.isfinite(ahead) & np.isfinite(target)
        if both.sum() < 2:
            continue
        share = float(close_mask(target[both], ahead[both], rel_tol).mean())
        if share > best_share:
            best, best_share = k, share
    return best if best_share >= 0.9 else None
