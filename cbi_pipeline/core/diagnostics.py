"""Pre-training diagnostics of one horizon's export: regime statistics, missing data, regime
weights and the leakage report, assembled into the ``diagnostics/{h}.json`` payload with the
three blocking checks (DESIGN §1, §3)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from cbi_pipeline.core.export import PRICE_COL, feature_columns
from cbi_pipeline.core.leakage.alignment import AlignmentResult, check_alignment, require_columns
from cbi_pipeline.core.leakage.canary import CanaryResult, run_canary
from cbi_pipeline.core.leakage.lags import lag_screen, lag_screen_as_dict
from cbi_pipeline.core.leakage.report import LeakageReport
from cbi_pipeline.core.leakage.screen import ScreenResult, screen_as_dict, screen_features
from cbi_pipeline.core.leakage.spec import DEFAULT_LEAKAGE, MIN_OVERLAP, LeakageSpec
from cbi_pipeline.core.leakage.truncation import TruncationResult
from cbi_pipeline.core.spikes import price_spikes
from cbi_pipeline.core.vocabulary import (
    CHECK_ALIGNED,
    CHECK_MISSING,
    CHECK_NO_LEAK,
    horizon_days,
    target_column,
)

SCHEMA_VERSION = 2
UNCATALOGUED = "Uncatalogued"
# Fewer non-overlapping origins than this give no Sharpe (null): two or three h-day returns say
# nothing about a regime (the 2020-21 covid regime holds 1.5 origins of 252 days).
MIN_SHARPE_ORIGINS = 4


@dataclass(frozen=True)
class MissingLimits:
    """Limits of the missing-data check.

    flag_share: a feature missing on more than this share of rows is flagged (named).
    max_flagged_share: the check fails when more than this share of features is flagged.
    max_block_share: the check fails when a block misses more than this share of its cells.
    A feature missing on every row, or a missing price, always fails the check.
    """

    flag_share: float = 0.5
    max_flagged_share: float = 0.1
    max_block_share: float = 0.5


# --- regime statistics -------------------------------------------------------------------------


def _num(x: float) -> float | None:
    return round(float(x), 6) if x is not None and math.isfinite(x) else None


def _regime_order(export: pl.DataFrame) -> list[str]:
    return (
        export.group_by("market_regime")
        .agg(pl.col("date").min())
        .sort("date")["market_regime"]
        .to_list()
    )


def _regime_row(name: str, frame: pl.DataFrame, h: int, target: str) -> dict[str, Any]:
    price = frame[PRICE_COL].cast(pl.Float64).to_numpy()
    tgt = frame[target].cast(pl.Float64).fill_nan(None).to_numpy().astype(np.float64)
    lab = np.isfinite(tgt) & np.isfinite(price) & (price > 0)
    ret = np.log(tgt[lab] / price[lab])
    std = float(ret.std(ddof=1)) if ret.size >= 2 else math.nan
    mape = float(np.mean(np.abs(price[lab] - tgt[lab]) / tgt[lab]) * 100) if ret.size else math.nan
    # Non-overlapping origins: every h-th labelled row, held h days.
    simple = (tgt[lab] / price[lab] - 1.0)[::h]
    sd = float(simple.std(ddof=1)) if simple.size >= MIN_SHARPE_ORIGINS else math.nan
    sharpe = float(simple.mean() / sd * math.sqrt(252.0 / h)) if sd > 0 else math.nan
    dates = frame["date"]
    return {
        "regime": name,
        "rows": frame.height,
        "labelled_rows": int(lab.sum()),
        "first_date": str(dates.min()) if frame.height else None,
        "last_date": str(dates.max()) if frame.height else None,
        "mean_log_return": _num(float(ret.mean())) if ret.size else None,
        "std_log_return": _num(std),
        "annualised_vol": _num(std * math.sqrt(252.0 / h)),
        "rw_mape_pct": _num(mape),
        "buy_hold_sharpe": _num(sharpe),
        "sharpe_origins": int(simple.size),
    }


def regime_statistics(export: pl.DataFrame, horizon: str) -> list[dict[str, Any]]:
    """Per regime (in calendar order) and for ``all``: rows, h-step log return mean/std,
    annualised vol (std * sqrt(252/h)), random-walk MAPE (mean |price - target| / target, %),
    buy-and-hold Sharpe on non-overlapping origins every h labelled rows, annualised by
    sqrt(252/h) (null with fewer than MIN_SHARPE_ORIGINS origins)."""
    h = horizon_days(horizon)
    target = target_column(horizon)
    rows = [
        _regime_row(r, export.filter(pl.col("market_regime") == r), h, target)
        for r in _regime_order(export)
    ]
    rows.append(_regime_row("all", export, h, target))
    return rows


def regime_weights(export: pl.DataFrame, horizon: str) -> list[dict[str, Any]]:
    """Per regime: rows, labelled rows, weight (mean) and the share of the total training weight
    over labelled rows (what a trainer that normalises weights sees)."""
    target = target_column(horizon)
    frame = export.select(
        "market_regime",
        pl.col("training_weight").cast(pl.Float64),
        pl.col(target).is_not_null().alias("_lab"),
    )
    total = float(frame.filter("_lab")["training_weight"].sum())
    labelled = int(frame["_lab"].sum())
    out = []
    for r in _regime_order(export):
        part = frame.filter(pl.col("market_regime") == r)
        lab = part.filter("_lab")
        w = float(lab["training_weight"].sum())
        out.append(
            {
                "regime": r,
                "rows": part.height,
                "labelled_rows": lab.height,
                "weight": _num(float(part["training_weight"].sum()) / part.height)
                if part.height
                else None,
                "weight_share": _num(w / total) if total > 0 else None,
                "row_share": _num(lab.height / labelled) if labelled else None,
            }
        )
    return out


# --- missing data ------------------------------------------------------------------------------


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """Length and start index of the longest run of True in a 1-d bool array (0, -1 if none)."""
    if not mask.any():
        return 0, -1
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts, ends = edges[::2], edges[1::2]
    i = int(np.argmax(ends - starts))
    return int(ends[i] - starts[i]), int(starts[i])


def missing_data(
    export: pl.DataFrame,
    blocks: Mapping[str, str] | None = None,
    limits: MissingLimits = MissingLimits(),
) -> dict[str, Any]:
    """Per feature (missing = null or NaN): share, rows, longest gap in rows and its dates, first
    valid date, block, flag; per block: cells missing; per block and year: missing share."""
    feats = feature_columns(export)
    blocks = blocks or {}
    block_of = {f: blocks.get(f, UNCATALOGUED) for f in feats}
    schema = export.schema
    miss = export.select(
        pl.col("date").cast(pl.Date),
        *[
            (
                pl.col(f).is_null() | pl.col(f).is_nan()
                if schema[f].is_float()
                else pl.col(f).is_null()
            ).alias(f)
            for f in feats
        ],
    )
    dates = miss["date"].to_list()
    n = export.height
    per_feature = []
    for f in feats:
        m = miss[f].to_numpy()
        gap, start = _longest_run(m)
        valid = np.flatnonzero(~m)
        share = float(m.mean()) if n else 0.0
        per_feature.append(
            {
                "feature": f,
                "block": block_of[f],
                "missing_rows": int(m.sum()),
                "missing_share": round(share, 6),
                "longest_gap_rows": gap,
                "longest_gap_start": str(dates[start]) if gap else None,
                "longest_gap_end": str(dates[start + gap - 1]) if gap else None,
                "first_valid_date": str(dates[valid[0]]) if valid.size else None,
                "flagged": share > limits.flag_share,
            }
        )
    per_block = []
    for b in sorted(set(block_of.values())):
        cols = [f for f in feats if block_of[f] == b]
        cells = n * len(cols)
        missing = int(miss.select(cols).sum().sum_horizontal().item()) if cols else 0
        per_block.append(
            {
                "block": b,
                "features": len(cols),
                "missing_share": round(missing / cells, 6) if cells else 0.0,
                "flagged_features": sum(1 for p in per_feature if p["block"] == b and p["flagged"]),
            }
        )
    by_year = []
    if feats and n:
        years = miss.with_columns(pl.col("date").dt.year().alias("_year"))
        for b in sorted(set(block_of.values())):
            cols = [f for f in feats if block_of[f] == b]
            agg = (
                years.group_by("_year")
                .agg(pl.sum_horizontal(pl.col(c).mean() for c in cols).alias("_s"))
                .sort("_year")
            )
            for year, s in agg.iter_rows():
                by_year.append(
                    {"block": b, "year": int(year), "missing_share": round(s / len(cols), 6)}
                )
    flagged = [p["feature"] for p in per_feature if p["flagged"]]
    price_missing = int(export[PRICE_COL].is_null().sum())
    return {
        "limits": {
            "flag_share": limits.flag_share,
            "max_flagged_share": limits.max_flagged_share,
            "max_block_share": limits.max_block_share,
        },
        "rows": n,
        "price_missing_rows": price_missing,
        "features": per_feature,
        "blocks": per_block,
        "by_year": by_year,
        "flagged": flagged,
        "empty": [p["feature"] for p in per_feature if n and p["missing_rows"] == n],
    }


def missing_check(report: Mapping[str, Any], limits: MissingLimits) -> dict[str, Any]:
    nfeat = len(report["features"])
    flagged = report["flagged"]
    problems: list[str] = []
    offending: list[str] = []
    if report["price_missing_rows"]:
        problems.append(f"price is missing on {report['price_missing_rows']} row(s)")
        offending.append(PRICE_COL)
    if report["empty"]:
        problems.append(f"{len(report['empty'])} feature(s) are missing on every row")
        offending += report["empty"]
    blocks = [b for b in report["blocks"] if b["missing_share"] > limits.max_block_share]
    for b in blocks:
        problems.append(
            f"block {b['block']} misses {b['missing_share']:.1%} of its cells "
            f"(limit {limits.max_block_share:.0%})"
        )
        offending += [f["feature"] for f in report["features"] if f["block"] == b["block"]]
    share = len(flagged) / nfeat if nfeat else 0.0
    if share > limits.max_flagged_share:
        problems.append(
            f"{len(flagged)} of {nfeat} features ({share:.1%}) are over "
            f"{limits.flag_share:.0%} missing (limit {limits.max_flagged_share:.0%} of features)"
        )
        offending += flagged
    passed = not problems
    summary = (
        "; ".join(problems)
        if problems
        else f"{len(flagged)} of {nfeat} feature(s) over {limits.flag_share:.0%} missing "
        f"(flagged, within the limit of {limits.max_flagged_share:.0%})"
    )
    return {
        "passed": passed,
        "summary": summary,
        "offending": sorted(dict.fromkeys(offending)),
        "warnings": flagged,
    }


# --- leakage and the payload -------------------------------------------------------------------


def leakage_report(
    export: pl.DataFrame,
    horizon: str,
    truncation: TruncationResult,
    spec: LeakageSpec = DEFAULT_LEAKAGE,
) -> LeakageReport:
    return LeakageReport(
        alignment=check_alignment(export, horizon, spec),
        truncation=truncation,
        screen=screen_features(export, horizon, spec=spec),
        lags=lag_screen(export, horizon, spec=spec),
        canary=run_canary(export, horizon, spec),
    )


def _alignment_dict(a: AlignmentResult) -> dict[str, Any]:
    return {
        "passed": a.passed,
        "rows_checked": a.rows_checked,
        "mismatch_count": a.mismatch_count,
        "dates_increasing": a.dates_increasing,
        "best_matching_shift": a.best_matching_shift,
        "mismatches": list(a.mismatches),
    }


def _screen_dict(s: ScreenResult, spec: LeakageSpec, top: int = 10) -> dict[str, Any]:
    closest = sorted(
        (
            x
            for x in s.screened
            if not x.suspect and x.future_limit is not None and math.isfinite(x.future_corr)
        ),
        key=lambda x: -x.future_corr / (x.future_limit or 1.0),
    )[:top]
    return {
        "thresholds": {
            "future_corr": spec.future_corr,
            "future_z": spec.future_z,
            "future_margin": spec.future_margin,
            "min_windows": spec.min_windows,
            "identity_corr": spec.identity_corr,
            "identity_ratio": spec.identity_ratio,
            "equal_share": spec.equal_share,
        },
        "windows": round(s.windows, 3),
        "correlation_rule_run": s.correlation_rule_run,
        "correlation_rule_features": s.correlation_rule_features,
        "note": s.correlation_rule_note,
        "features_screened": len(s.screened),
        "not_screened": list(s.not_screened),
        "suspects": [screen_as_dict(x) for x in s.suspects],
        "closest": [screen_as_dict(x) for x in closest],
    }


def _json_value(v: object) -> object:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    return v if isinstance(v, int | str | bool) or v is None else str(v)


def _truncation_dict(t: TruncationResult) -> dict[str, Any]:
    return {
        "status": t.status,
        "reason": t.reason,
        "dates": list(t.dates),
        "mismatch_count": len(t.mismatches),
        "mismatches": [{k: _json_value(v) for k, v in m.items()} for m in t.mismatches[:50]],
        "unexplained_columns": list(t.unexplained_columns),
        "stored_missing": t.stored_missing,
    }


def _canary_dict(c: CanaryResult) -> dict[str, Any]:
    return {
        "passed": c.passed,
        "planted": list(c.planted),
        "expected": list(c.expected),
        "caught": list(c.caught),
        "note": c.note,
    }


def _leak_check(leak: LeakageReport) -> dict[str, Any]:
    problems, offending = [], []
    suspects = [s.feature for s in leak.screen.suspects]
    if suspects:
        problems.append(f"suspect feature(s) carry future information: {', '.join(suspects)}")
        offending += suspects
    if leak.lags.flagged:
        problems.append(
            "feature(s) know the future at a lag: "
            + "; ".join(f"{e.feature}: {e.reason()}" for e in leak.lags.flagged)
        )
        offending += leak.lags.names
    if leak.truncation.failed:
        cols = leak.truncation.columns
        problems.append(f"truncation test failed for: {', '.join(cols)}")
        offending += cols
    if not leak.canary.passed:
        missed = sorted(set(leak.canary.expected) - set(leak.canary.caught))
        problems.append(f"the screen missed the planted canary feature(s) {missed}")
        if leak.screen.labelled < MIN_OVERLAP:
            problems[-1] += f" ({leak.canary.note})"
        offending += missed
    if problems:
        summary = "; ".join(problems)
    else:
        summary = (
            f"no suspect among {len(leak.screen.screened)} features (lag screen: "
            f"{leak.lags.tests} tests, |z| limit {leak.lags.z_limit:.2f}); canary caught; "
            f"truncation {leak.truncation.status.replace('_', ' ')}"
        )
        if leak.truncation.status == "not_run":
            summary += f" ({leak.truncation.reason})"
    return {
        "passed": not problems,
        "summary": summary,
        "offending": sorted(dict.fromkeys(offending)),
        "warnings": [],
    }


def _align_check(a: AlignmentResult, horizon: str) -> dict[str, Any]:
    h = horizon_days(horizon)
    tgt = target_column(horizon)
    if a.passed:
        summary = f"{tgt} equals the price {h} rows ahead on all {a.rows_checked} rows"
    else:
        parts = []
        if not a.dates_increasing:
            parts.append("dates are not strictly increasing")
        if a.mismatch_count:
            parts.append(
                f"{a.mismatch_count} of {a.rows_checked} rows differ from the price {h} rows ahead"
            )
        if a.best_matching_shift is not None:
            parts.append(
                f"{tgt} matches the price {a.best_matching_shift} rows ahead instead of {h}"
            )
        summary = "; ".join(parts)
    return {
        "passed": a.passed,
        "summary": summary,
        "offending": [str(m["date"]) for m in a.mismatches],
        "warnings": [],
    }


def build_diagnostics(
    export: pl.DataFrame,
    horizon: str,
    truncation: TruncationResult,
    blocks: Mapping[str, str] | None = None,
    source: str = "",
    spec: LeakageSpec = DEFAULT_LEAKAGE,
    limits: MissingLimits = MissingLimits(),
) -> dict[str, Any]:
    """The ``diagnostics/{h}.json`` payload (schema version ``SCHEMA_VERSION``)."""
    require_columns(export, horizon, source or "export")
    leak = leakage_report(export, horizon, truncation, spec)
    missing = missing_data(export, blocks, limits)
    checks = {
        CHECK_ALIGNED: _align_check(leak.alignment, horizon),
        CHECK_NO_LEAK: _leak_check(leak),
        CHECK_MISSING: missing_check(missing, limits),
    }
    dates = export["date"]
    return {
        "schema_version": SCHEMA_VERSION,
        "horizon": horizon,
        "horizon_days": horizon_days(horizon),
        "target_column": target_column(horizon),
        "source": source,
        "rows": export.height,
        "first_date": str(dates.min()) if export.height else None,
        "last_date": str(dates.max()) if export.height else None,
        "features": len(feature_columns(export)),
        "passed": all(c["passed"] for c in checks.values()),
        "checks": checks,
        "regime_statistics": regime_statistics(export, horizon),
        "regime_weights": regime_weights(export, horizon),
        "missing_data": missing,
        "price_spikes": price_spikes(export["date"], export[PRICE_COL]),
        "leakage": {
            "alignment": _alignment_dict(leak.alignment),
            "truncation": _truncation_dict(leak.truncation),
            "screen": _screen_dict(leak.screen, spec),
            "lags": lag_screen_as_dict(leak.lags),
            "canary": _canary_dict(leak.canary),
        },
    }


def failing_checks(payload: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in payload["checks"].items() if not v["passed"]}
