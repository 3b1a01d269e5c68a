"""Compare every family's out-of-fold predictions for one horizon and pick the candidate.

The candidate is the family with the best skill against the random walk; ties go to the
simpler model. The random walk itself is the yardstick, never a candidate (its skill is 0 by
definition). Whether the candidate is promoted is for the gates to say, not for this module.

Families whose predictions carry the quantile columns are also scored as probabilistic
forecasts (pinball loss, CRPS, coverage and width of the central intervals, overall, by regime
and by fold), and against the constant-width random-walk intervals when those are given. The
candidate's point errors are tested against the random walk's with Diebold-Mariano.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from cbi_pipeline.core.metrics import (
    DEFAULT_COST_BP,
    HELD_RETURN,
    MetricSet,
    breakdown,
    metric_set,
)
from cbi_pipeline.core.probabilistic import (
    DieboldMariano,
    ProbabilisticSet,
    diebold_mariano,
    has_quantiles,
    probabilistic_breakdown,
    probabilistic_set,
)
from cbi_pipeline.core.vocabulary import COMPLEXITY, RANDOM_WALK

BREAKDOWNS = ("market_regime", "quarter", "crop_season", "fold")
PROBABILISTIC_BREAKDOWNS = ("market_regime", "fold")
REQUIRED = ("date", "price", "y_true", "y_pred", "market_regime", "fold")


class EvaluationError(ValueError):
    """Predictions cannot be compared (missing random walk, mismatched dates, bad columns)."""


@dataclass(frozen=True)
class FamilyEvaluation:
    family: str
    overall: MetricSet
    breakdowns: dict[str, dict[str, MetricSet]] = field(default_factory=dict)
    probabilistic: ProbabilisticSet | None = None  # None: the predictions carry no quantiles
    probabilistic_breakdowns: dict[str, dict[str, ProbabilisticSet]] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    horizon: str
    h: int
    rows: int
    first_date: str
    last_date: str
    families: dict[str, FamilyEvaluation]
    candidate: str | None
    interval_benchmark: ProbabilisticSet | None = None  # constant-width random-walk intervals
    diebold_mariano: DieboldMariano | None = None  # the candidate's |% error| vs the random walk's

    @property
    def random_walk(self) -> FamilyEvaluation:
        return self.families[RANDOM_WALK]


def _rank(family: str) -> int:
    return COMPLEXITY.index(family) if family in COMPLEXITY else len(COMPLEXITY)


def check_predictions(frame: pl.DataFrame, family: str) -> None:
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise EvaluationError(
            f"{family} predictions lack column(s) {missing}; expected {list(REQUIRED)}"
        )
    if frame.height == 0:
        raise EvaluationError(f"{family} predictions are empty")
    dup = frame.filter(pl.col("date").is_duplicated())
    if dup.height:
        raise EvaluationError(
            f"{family} predictions repeat dates, e.g. {dup['date'].head(3).to_list()}"
        )
    for col in ("price", "y_true", "y_pred"):
        bad = frame.filter(~pl.col(col).is_finite().fill_null(False) | (pl.col(col) <= 0))
        if bad.height:
            raise EvaluationError(
                f"{family} predictions: column {col!r} has {bad.height} null, non-finite or "
                f"non-positive value(s), e.g. dates {bad['date'].head(3).to_list()}"
            )


def pick_candidate(overall: Mapping[str, MetricSet]) -> str | None:
    """Best skill among the non-random-walk families; ties to the simpler model."""
    scored = [(f, m.skill) for f, m in overall.items() if f != RANDOM_WALK and m.skill is not None]
    if not scored:
        return None
    best = max(s for _, s in scored)
    tied = [f for f, s in scored if np.isclose(s, best, rtol=0, atol=1e-12)]
    return min(tied, key=lambda f: (_rank(f), f))


def absolute_percentage_errors(frame: pl.DataFrame) -> np.ndarray:
    """|y_true - y_pred| / y_true * 100 per origin, in date order (the loss behind MAPE)."""
    f = frame.sort("date")
    t, p = f["y_true"].to_numpy(), f["y_pred"].to_numpy()
    return np.abs(t - p) / np.abs(t) * 100.0


def diebold_mariano_vs_random_walk(
    candidate: pl.DataFrame, random_walk: pl.DataFrame, h: int
) -> DieboldMariano | None:
    """The Diebold-Mariano test of the candidate's absolute percentage errors against the random
    walk's on the same origins; None when the two loss series are identical (nothing to test)."""
    a, b = absolute_percentage_errors(candidate), absolute_percentage_errors(random_walk)
    if np.array_equal(a, b):
        return None
    return diebold_mariano(a, b, h)


def _probabilistic(
    frame: pl.DataFrame,
) -> tuple[ProbabilisticSet | None, dict[str, dict[str, ProbabilisticSet]]]:
    if not has_quantiles(frame):
        return None, {}
    return probabilistic_set(frame), {
        by: probabilistic_breakdown(frame, by) for by in PROBABILISTIC_BREAKDOWNS
    }


def evaluate(
    predictions: Mapping[str, pl.DataFrame],
    horizon: str,
    h: int,
    cost_bp: float = DEFAULT_COST_BP,
    interval_benchmark: pl.DataFrame | None = None,
    held: pl.DataFrame | None = None,
) -> Evaluation:
    """Metrics for every family on the same dates, with breakdowns, and the candidate.
    ``interval_benchmark``: the constant-width random-walk intervals on the same dates.
    ``held``: ``date, held_return`` (a rolled futures position's h-day return): the Sharpe ratio
    and hit rate are measured on it; it must cover every test date."""
    if RANDOM_WALK not in predictions:
        raise EvaluationError(f"{horizon}: no random_walk predictions; every comparison needs it")
    for family, frame in predictions.items():
        check_predictions(frame, family)
    rw_dates = set(predictions[RANDOM_WALK]["date"].to_list())
    for family, frame in predictions.items():
        dates = set(frame["date"].to_list())
        if dates != rw_dates:
            only_rw, only_f = sorted(rw_dates - dates), sorted(dates - rw_dates)
            raise EvaluationError(
                f"{horizon}: {family} predicts {len(dates)} dates, the random walk {len(rw_dates)}; "
                f"families must share the walk-forward test dates (missing {only_rw[:3]}, "
                f"extra {only_f[:3]})"
            )
    if held is not None:
        covered = held.filter(pl.col(HELD_RETURN).is_finite())["date"].to_list()
        missing = sorted(rw_dates - set(covered))
        if missing:
            raise EvaluationError(
                f"{horizon}: the curve gives no rolled-position return for {len(missing)} test "
                f"date(s), e.g. {[str(d) for d in missing[:3]]}; expected it to cover every test "
                "date from the origin to h days later (or evaluate without a curve)"
            )
    families = {}
    for family, frame in sorted(predictions.items(), key=lambda kv: _rank(kv[0])):
        frame = frame.sort("date")
        if held is not None:
            frame = frame.join(held.select("date", HELD_RETURN), on="date", how="left")
        prob, prob_breakdowns = _probabilistic(frame)
        families[family] = FamilyEvaluation(
            family,
            metric_set(frame, h, cost_bp),
            {by: breakdown(frame, by, h, cost_bp) for by in BREAKDOWNS},
            prob,
            prob_breakdowns,
        )
    benchmark = None
    if interval_benchmark is not None:
        check_predictions(interval_benchmark, "interval benchmark")
        if set(interval_benchmark["date"].to_list()) != rw_dates:
            raise EvaluationError(
                f"{horizon}: the constant-width interval benchmark does not cover the random "
                "walk's test dates; train the baselines again"
            )
        benchmark = probabilistic_set(interval_benchmark)
    candidate = pick_candidate({f: e.overall for f, e in families.items()})
    rw = predictions[RANDOM_WALK]
    dm = (
        None if candidate is None else diebold_mariano_vs_random_walk(predictions[candidate], rw, h)
    )
    return Evaluation(
        horizon=horizon,
        h=h,
        rows=rw.height,
        first_date=str(rw["date"].min()),
        last_date=str(rw["date"].max()),
        families=families,
        candidate=candidate,
        interval_benchmark=benchmark,
        diebold_mariano=dm,
    )


def conformal_bounds(log_residuals: np.ndarray, coverage: float = 0.9) -> tuple[float, float]:
    """Split-conformal bounds on the log residual log(y_true / y_pred) at the given coverage.

    Uses the finite-sample quantile levels ceil((n + 1) * q) / n of the out-of-fold residuals.
    """
    r = np.sort(np.asarray(log_residuals, dtype=np.float64))
    n = r.size
    if n < 10 or not np.isfinite(r).all():
        raise EvaluationError(f"conformal bounds need >= 10 finite residuals, got {n}")
    alpha = 1.0 - coverage
    eps = 1e-9  # (n + 1) * level is often an integer up to rounding
    lo_k = max(int(np.floor((n + 1) * (alpha / 2) + eps)) - 1, 0)
    hi_k = min(int(np.ceil((n + 1) * (1 - alpha / 2) - eps)) - 1, n - 1)
    return float(r[lo_k]), float(r[hi_k])
