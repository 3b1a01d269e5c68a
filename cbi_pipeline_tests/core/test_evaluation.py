import datetime as dt

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core.evaluation import EvaluationError, conformal_bounds, evaluate, pick_candidate
from cbi_pipeline.core.metrics import mape


def frame(pred_factor: np.ndarray | float, n: int = 120, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    price = 40 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    y_true = price * np.exp(rng.normal(0.0, 0.03, n))
    dates = [dt.date(2015, 1, 1) + dt.timedelta(days=i) for i in range(n)]
    return pl.DataFrame(
        {
            "date": dates,
            "price": price,
            "y_true": y_true,
            "y_pred": price * pred_factor,
            "market_regime": ["recovery"] * n,
            "fold": [i // 40 for i in range(n)],
        }
    )


def oracle_like(n: int = 120, seed: int = 0, closeness: float = 0.5) -> pl.DataFrame:
    base = frame(1.0, n, seed)
    return base.with_columns(
        (pl.col("price") + closeness * (pl.col("y_true") - pl.col("price"))).alias("y_pred")
    )


def test_candidate_is_the_best_skill_and_random_walk_is_never_it():
    preds = {"random_walk": frame(1.0), "drift": frame(1.002), "lightgbm": oracle_like()}
    ev = evaluate(preds, "1m", 21)
    assert ev.candidate == "lightgbm"
    rw = ev.random_walk.overall
    assert rw.skill == 0.0 and rw.rw_mape == pytest.approx(rw.mape)
    assert ev.families["lightgbm"].overall.skill > 0
    assert set(ev.families["drift"].breakdowns) == {
        "market_regime",
        "quarter",
        "crop_season",
        "fold",
    }
    assert mape(preds["drift"]["y_true"], preds["drift"]["y_pred"]) == pytest.approx(
        ev.families["drift"].overall.mape
    )


def test_losing_models_still_yield_a_candidate_with_negative_skill():
    ev = evaluate(
        {"random_walk": frame(1.0), "xgboost": frame(1.05), "lightgbm": frame(0.96)}, "1w", 5
    )
    assert ev.candidate == "lightgbm"
    assert ev.families["lightgbm"].overall.skill < 0


def test_ties_go_to_the_simpler_model():
    class M:
        def __init__(self, skill):
            self.skill = skill

    assert (
        pick_candidate({"random_walk": M(0.0), "xgboost": M(0.1), "drift": M(0.1), "lstm": M(0.1)})
        == "drift"
    )
    assert pick_candidate({"random_walk": M(0.0)}) is None


def test_mismatched_dates_and_missing_random_walk_fail():
    with pytest.raises(EvaluationError, match="no random_walk predictions"):
        evaluate({"lightgbm": frame(1.0)}, "1m", 21)
    with pytest.raises(EvaluationError, match="families must share the walk-forward test dates"):
        evaluate({"random_walk": frame(1.0), "lightgbm": frame(1.0).head(100)}, "1m", 21)
    bad = frame(1.0).with_columns(pl.lit(float("nan")).alias("y_pred"))
    with pytest.raises(EvaluationError, match="column 'y_pred' has 120 null, non-finite"):
        evaluate({"random_walk": frame(1.0), "lightgbm": bad}, "1m", 21)


def test_conformal_bounds_cover_the_requested_share():
    rng = np.random.default_rng(1)
    lo, hi = conformal_bounds(rng.normal(0, 0.05, 2000), 0.9)
    fresh = rng.normal(0, 0.05, 20000)
    assert 0.88 <= np.mean((fresh >= lo) & (fresh <= hi)) <= 0.92
    lo, hi = conformal_bounds(np.arange(1, 20, dtype=float), 0.8)
    # n = 19, 80%: ranks floor(20 * 0.1) = 2 and ceil(20 * 0.9) = 18 of the sorted residuals
    assert (lo, hi) == (2.0, 18.0)
