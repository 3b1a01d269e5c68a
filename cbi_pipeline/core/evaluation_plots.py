"""The evaluation figure of a horizon: the candidate's and the random walk's out-of-fold
predictions against the actual prices over the test period (with the candidate's 80% interval
when it has quantiles), and MAPE and skill by market regime from the evaluation payload; and the
headline numbers charted across runs.

Frames and the payload in, PNG bytes out (Agg backend, no global pyplot state); matplotlib is
imported only when a chart is drawn.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from cbi_pipeline.core.intervals import INTERVALS
from cbi_pipeline.core.vocabulary import FUTURES_CURVE, RANDOM_WALK

REQUIRED = ("date", "y_true", "y_pred")  # the random walk's; the candidate needs date, y_pred
REGIME_BREAKDOWN = "market_regime"


def headline_numbers(payload: Mapping[str, Any]) -> dict[str, float]:
    """The evaluation's numbers to chart across runs (the UI's Plots toggle of the asset's metadata, per partition), all
    floats: the candidate's MAPE, skill, Sharpe, PSR and 80%/90% interval coverage (shares),
    the random walk's MAPE, and the futures curve's MAPE when the data has a curve. A number the
    evaluation could not compute (None, NaN) is left out rather than charted as a value."""
    families = payload["families"]
    numbers: dict[str, Any] = {"random_walk_mape": families[RANDOM_WALK]["overall"]["mape"]}
    cand = payload["candidate"]
    if cand:
        overall = families[cand]["overall"]
        numbers |= {
            "candidate_mape": overall["mape"],
            "skill": overall["skill"],
            "sharpe": overall["sharpe"],
            "psr": overall["psr"],
        }
        prob = families[cand].get("probabilistic")
        if prob:
            coverage = prob["overall"]["coverage"]
            numbers |= {"coverage_80": coverage.get("80"), "coverage_90": coverage.get("90")}
    if payload.get("futures_curve") and FUTURES_CURVE in families:
        numbers["futures_curve_mape"] = families[FUTURES_CURVE]["overall"]["mape"]
    return {
        k: float(v)
        for k, v in numbers.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def _check(frame: pl.DataFrame, family: str, required: tuple[str, ...] = REQUIRED) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{family} predictions lack {', '.join(missing)} (columns: {', '.join(frame.columns)})"
        )


def aligned_predictions(candidate: pl.DataFrame | None, random_walk: pl.DataFrame) -> pl.DataFrame:
    """One row per origin date both families predicted (the rows evaluation compares):
    ``date, y_true, rw_pred`` and, with a candidate, ``cand_pred`` and its 80% interval
    ``cand_lo, cand_hi`` when it has those quantiles (else nulls). Sorted by date."""
    _check(random_walk, RANDOM_WALK)
    out = random_walk.select("date", "y_true", pl.col("y_pred").alias("rw_pred"))
    if candidate is None:
        return out.sort("date")
    _check(candidate, "candidate", ("date", "y_pred"))
    lo, hi = INTERVALS[0.8]
    band = (
        [pl.col(lo).alias("cand_lo"), pl.col(hi).alias("cand_hi")]
        if lo in candidate.columns and hi in candidate.columns
        else [pl.lit(None, pl.Float64).alias("cand_lo"), pl.lit(None, pl.Float64).alias("cand_hi")]
    )
    cand = candidate.select("date", pl.col("y_pred").alias("cand_pred"), *band)
    return out.join(cand, on="date", how="inner").sort("date")


def regime_frame(payload: Mapping[str, Any]) -> pl.DataFrame:
    """MAPE of the candidate and of the random walk, and the candidate's skill, per regime
    (the random walk's own breakdown when there is no candidate)."""
    family = payload["candidate"] or RANDOM_WALK
    parts = payload["families"][family]["breakdowns"].get(REGIME_BREAKDOWN, {})
    return pl.DataFrame(
        [
            {"regime": r, "mape": m["mape"], "rw_mape": m["rw_mape"], "skill": m["skill"]}
            for r, m in parts.items()
        ],
        schema={
            "regime": pl.String,
            "mape": pl.Float64,
            "rw_mape": pl.Float64,
            "skill": pl.Float64,
        },
    )


def evaluation_png(
    payload: Mapping[str, Any],
    candidate: pl.DataFrame | None,
    random_walk: pl.DataFrame,
    dpi: int = 80,
) -> bytes:
    """PNG bytes of the two-panel evaluation figure. ``candidate`` and ``random_walk`` are the
    families' out-of-fold prediction frames (``date, y_true, y_pred`` and quantiles)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    horizon, cand = payload["horizon"], payload["candidate"]
    rows = aligned_predictions(candidate, random_walk)
    fig = Figure(figsize=(10.5, 4.2))
    FigureCanvasAgg(fig)
    ax_pred, ax_reg = fig.subplots(1, 2, width_ratios=(3, 2))
    fig.subplots_adjust(left=0.06, right=0.94, bottom=0.2, top=0.9, wspace=0.22)

    dates = rows["date"].to_list()
    ax_pred.plot(dates, rows["y_true"].to_list(), color="#222", lw=1.2, label="actual")
    ax_pred.plot(
        dates, rows["rw_pred"].to_list(), color="#7f7f7f", lw=0.9, ls="--", label=RANDOM_WALK
    )
    if cand is not None:
        if rows["cand_lo"].null_count() == 0 and rows.height:
            ax_pred.fill_between(
                dates,
                rows["cand_lo"].to_numpy(),
                rows["cand_hi"].to_numpy(),
                color="#1f77b4",
                alpha=0.18,
                lw=0,
                label=f"{cand} 80% interval",
            )
        ax_pred.plot(dates, rows["cand_pred"].to_list(), color="#1f77b4", lw=1.0, label=cand)
    ax_pred.set_title(
        f"{horizon}: out-of-fold predictions of the price {payload['horizon_days']} trading "
        "days ahead, by origin date"
    )
    ax_pred.set_ylabel("price")
    ax_pred.grid(alpha=0.3)
    ax_pred.legend(loc="best", fontsize=8)
    for label in ax_pred.get_xticklabels():
        label.set_rotation(30)
        label.set_horizontalalignment("right")

    regimes = regime_frame(payload)
    x = np.arange(regimes.height)
    width = 0.38
    name = cand or RANDOM_WALK
    ax_reg.bar(x - width / 2, regimes["mape"].to_numpy(), width, color="#1f77b4", label=name)
    ax_reg.bar(
        x + width / 2, regimes["rw_mape"].to_numpy(), width, color="#bbbbbb", label=RANDOM_WALK
    )
    ax_reg.set_xticks(x, regimes["regime"].to_list(), rotation=30, ha="right")
    ax_reg.set_ylabel("MAPE (%)")
    ax_skill = ax_reg.twinx()
    skill = regimes["skill"].fill_null(np.nan).to_numpy()
    ax_skill.plot(x, skill, "D", color="#d62728", label=f"skill of {name}")
    ax_skill.axhline(0.0, color="#d62728", lw=0.6, alpha=0.5)
    if np.isfinite(skill).any():  # zero in view, and headroom above the markers for the legend
        lo, hi = min(0.0, float(np.nanmin(skill))), max(0.0, float(np.nanmax(skill)))
        span = (hi - lo) or 1.0
        ax_skill.set_ylim(lo - 0.1 * span, hi + 0.45 * span)
    if regimes.height:
        top = np.nanmax(np.concatenate([regimes["mape"].to_numpy(), regimes["rw_mape"].to_numpy()]))
        ax_reg.set_ylim(0.0, 1.35 * float(top) if np.isfinite(top) and top > 0 else 1.0)
    ax_skill.set_ylabel("skill vs random walk (1 - MAPE / RW MAPE)")
    handles = ax_reg.get_legend_handles_labels()
    extra = ax_skill.get_legend_handles_labels()
    ax_reg.legend(
        handles[0] + extra[0], handles[1] + extra[1], loc="upper center", fontsize=8, ncol=3
    )
    ax_reg.set_title("MAPE and skill by market regime")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
