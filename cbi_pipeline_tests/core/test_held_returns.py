"""A rolled position's returns: the back-adjusted series mapped onto the export's calendar, and
the Sharpe ratio and hit rate measured on them instead of the front month's jumps."""

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core import metrics as M
from cbi_pipeline.core.curves.contract import normalize_curve
from cbi_pipeline.core.curves.returns import held_returns
from cbi_pipeline.core.curves.roll import RollSpec, continuous_series
from cbi_pipeline.core.evaluation import EvaluationError, evaluate
from cbi_pipeline_tests.conftest import make_tiny_curve


@pytest.fixture(scope="module")
def curve():
    return normalize_curve(make_tiny_curve(n=320), "tiny curve")


def test_held_returns_are_the_adjusted_series_h_rows_ahead_on_the_given_dates(curve):
    spec = RollSpec(days_before_notice=5)
    series = continuous_series(curve, spec).filter(pl.col("symbol") == "ZL").sort("date")
    dates = series["date"].to_list()
    adjusted = dict(zip(dates, series["adjusted"].to_list(), strict=True))
    # the export's calendar lacks one curve day: that row takes the adjusted close before it
    kept = [d for i, d in enumerate(dates) if i != 100]
    held = held_returns(curve, "ZL", pl.Series(kept), 5, spec)
    assert held["date"].to_list() == kept
    got = held["held_return"].to_list()
    for i, d in enumerate(kept):
        if i + 5 < len(kept):
            assert got[i] == pytest.approx(math.log(adjusted[kept[i + 5]] / adjusted[d]))
        else:
            assert got[i] is None
    # across a roll the held return differs from the front's jump
    front = dict(zip(dates, series["front"].to_list(), strict=True))
    rolled = series.filter(pl.col("contract") != pl.col("contract").shift(1))["date"][1]
    i = kept.index(rolled) - 2
    jump = math.log(front[kept[i + 5]] / front[kept[i]])
    assert got[i] != pytest.approx(jump)


def test_metric_set_measures_sharpe_and_hits_on_the_held_return():
    rng = np.random.default_rng(3)
    n, h = 200, 5
    dates = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n)]
    price = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    y_true = np.r_[price[h:], price[-h:] * 1.01]
    y_pred = price * np.exp(rng.normal(0, 0.01, n))
    held = rng.normal(0, 0.02, n)
    frame = pl.DataFrame(
        {"date": dates, "price": price, "y_true": y_true, "y_pred": y_pred, "held_return": held}
    )
    m = M.metric_set(frame, h, cost_bp=0.0)
    origins = list(range(0, n, h))
    rets = [math.copysign(1.0, math.log(y_pred[i] / price[i])) * held[i] for i in origins]
    mean = sum(rets) / len(rets)
    sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / (len(rets) - 1))
    assert m.sharpe == pytest.approx(mean / sd * math.sqrt(252 / h))
    hits = [np.sign(y_pred[i] - price[i]) == np.sign(held[i]) for i in range(n)]
    assert m.hit_rate == pytest.approx(sum(hits) / n)
    # the point metrics stay on the target's own prices
    assert m.mape == M.metric_set(frame.drop("held_return"), h).mape


def test_an_evaluation_whose_curve_misses_a_test_date_names_it():
    dates = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(60)]
    frame = pl.DataFrame(
        {
            "date": dates,
            "family": "random_walk",
            "horizon": "1w",
            "fold": 0,
            "price": 10.0,
            "y_true": 10.5,
            "y_pred": 10.0,
            "pred_return": 0.0,
            "market_regime": "all",
        }
    )
    held = pl.DataFrame({"date": dates[1:], "held_return": 0.01})
    with pytest.raises(
        EvaluationError, match=r"no rolled-position return for 1 test date.*2020-01-01"
    ):
        evaluate({"random_walk": frame}, "1w", 5, held=held)
