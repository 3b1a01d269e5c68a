"""The futures_curve baseline's forecast: today's price of the contract that will be front at
t+h, by the target's front rule; the random walk where the curve has no such contract."""

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core.curves.contract import normalize_curve
from cbi_pipeline.core.curves.market import NEAREST, ROLL, market_forecast
from cbi_pipeline.core.curves.roll import RollSpec, continuous_series
from cbi_pipeline.core.models.baselines import walk_forward_baseline
from cbi_pipeline.core.walkforward import WalkForwardSpec, plan_folds, training_data
from cbi_pipeline_tests.conftest import business_days, make_tiny_curve, random_walk_export

DAYS = business_days(dt.date(2020, 1, 2), 40)  # Thu 2020-01-02 .. Wed 2020-02-26
# contract: expiry, close at position i = base + i (quoted every day)
HAND = {
    "ZLG2020": (dt.date(2020, 2, 14), 100.0),  # FND Fri 01-31; roll date (N = 2) Wed 01-29
    "ZLH2020": (dt.date(2020, 3, 13), 110.0),  # FND Fri 02-28; roll date Wed 02-26
}


def _curve() -> pl.DataFrame:
    rows = [
        {"date": d, "symbol": "ZL", "contract": c, "expiry": e, "close": base + i}
        for c, (e, base) in HAND.items()
        for i, d in enumerate(DAYS)
        if d <= e
    ]
    return normalize_curve(pl.DataFrame(rows), "hand")


def _nearest_front() -> tuple[pl.Series, pl.Series]:
    dates = pl.Series("date", DAYS)
    price = pl.Series(
        "price", [100.0 + i if d <= HAND["ZLG2020"][0] else 110.0 + i for i, d in enumerate(DAYS)]
    )
    return dates, price


def test_nearest_rule_by_hand():
    """h = 5 weekdays. ZLG2020 expires Fri 02-14: it is still the nearest on D <= 02-14, so
    from origins up to Fri 02-07 the forecast is its own price (return 0); from Mon 02-10
    (D = 02-17) on, ZLH2020's price over ZLG2020's; once ZLG2020 has expired the front is
    ZLH2020 and its horizon reaches 03-13 (return 0 again, until D passes 03-13: never here)."""
    dates, price = _nearest_front()
    out = market_forecast(_curve(), "ZL", dates, price, 5, NEAREST)
    assert out["date"].to_list() == DAYS
    i_0207, i_0210 = DAYS.index(dt.date(2020, 2, 7)), DAYS.index(dt.date(2020, 2, 10))
    i_0217 = DAYS.index(dt.date(2020, 2, 17))
    assert out["target_date"][i_0210] == dt.date(2020, 2, 17)
    assert out["contract"][: i_0207 + 1].to_list() == ["ZLG2020"] * (i_0207 + 1)
    assert out["pred_return"][: i_0207 + 1].to_list() == [0.0] * (i_0207 + 1)
    assert out["contract"][i_0210:].to_list() == ["ZLH2020"] * (len(DAYS) - i_0210)
    for i in range(i_0210, i_0217):
        assert out["pred_return"][i] == pytest.approx(math.log((110 + i) / (100 + i)))
    assert out["pred_return"][i_0217:].to_list() == [0.0] * (len(DAYS) - i_0217)


def test_roll_rule_and_fallback_by_hand():
    """days_before_notice = 2: ZLG2020 rolls Wed 01-29, ZLH2020 Wed 02-26. With h = 5, origins
    whose D is on or after 01-29 forecast with ZLH2020; from D >= 02-26 no quoted contract is
    held then (ZLJ2020 is not in the curve): the forecast falls back (null)."""
    curve = _curve().filter(pl.col("date") < dt.date(2020, 2, 26))  # no contract held after
    front = continuous_series(curve, RollSpec(days_before_notice=2))
    out = market_forecast(
        curve, "ZL", front["date"], front["front"], 5, ROLL, RollSpec(days_before_notice=2)
    )
    d_roll, d_last = dt.date(2020, 1, 29), dt.date(2020, 2, 26)
    for row in out.iter_rows(named=True):
        if row["target_date"] >= d_last:
            assert row["contract"] is None and row["pred_return"] is None, row
        elif row["target_date"] >= d_roll:
            assert row["contract"] == "ZLH2020", row
        else:
            assert row["contract"] == "ZLG2020" and row["pred_return"] == 0.0, row
    assert out["pred_return"].null_count() == 5


def test_the_forecast_at_t_reads_only_the_curve_at_t():
    curve = normalize_curve(make_tiny_curve(n=320), "tiny")
    front = continuous_series(curve).filter(pl.col("symbol") == "ZL")
    full = market_forecast(curve, "ZL", front["date"], front["front"], 21, NEAREST)
    for t in front["date"].to_list()[::37]:
        cut = curve.filter(pl.col("date") <= t)
        part = front.filter(pl.col("date") <= t)
        got = market_forecast(cut, "ZL", part["date"], part["front"], 21, NEAREST)
        assert got.row(-1) == full.filter(pl.col("date") == t).row(0), t


def test_on_a_constant_carry_curve_the_forecast_is_the_carry():
    """Every contract is spot * exp(0.03 * years to expiry): at a 1w horizon before the front's
    expiry the nearest is unchanged (return 0 from the nearest's price); crossing it, the
    forecast is exactly the spread between the two contracts."""
    curve = normalize_curve(make_tiny_curve(n=320), "tiny")
    zl = curve.filter(pl.col("symbol") == "ZL").sort("date", "expiry")
    nearest = zl.group_by("date", maintain_order=True).first()
    out = market_forecast(curve, "ZL", nearest["date"], nearest["close"], 5, NEAREST)
    joined = out.join(zl.select("date", "contract", "expiry", "close"), on=["date", "contract"])
    joined = joined.join(nearest.select("date", pl.col("expiry").alias("e0")), on="date")
    crossing = joined.filter(pl.col("expiry") > pl.col("e0"))
    assert 0 < crossing.height < joined.height
    tau = (crossing["expiry"] - crossing["e0"]).dt.total_days().to_numpy() / 365.25
    assert np.allclose(crossing["pred_return"].to_numpy(), 0.03 * tau, atol=1e-12)
    same = joined.filter(pl.col("expiry") == pl.col("e0"))
    assert (same["pred_return"] == 0.0).all()


def test_the_baseline_falls_back_to_the_random_walk_and_counts_it():
    export = random_walk_export(600, seed=3)
    data = training_data(export, "1w")
    spec = WalkForwardSpec(
        horizon_days=5,
        first_test_date=export["date"][400],
        refit_step=40,
        validation_rows=40,
        min_train_rows=100,
    )
    folds = plan_folds(data.dates, data.labelled, spec)
    implied = np.full(data.rows, 0.01)
    implied[::3] = np.nan
    result = walk_forward_baseline(data, folds, "futures_curve", implied=implied)
    rows = np.concatenate([f.test_rows for f in folds])
    expected = np.where(np.isnan(implied[rows]), 0.0, 0.01)
    got = result.predictions.sort("date")["y_pred"].to_numpy()
    assert np.allclose(got, data.price[rows] * np.exp(expected))
    assert sum(r.info["fallback"] for r in result.folds) == int(np.isnan(implied[rows]).sum())
    with pytest.raises(ValueError, match="futures_curve needs the market's forecast"):
        walk_forward_baseline(data, folds, "futures_curve")


def test_an_unknown_front_rule_is_refused():
    dates, price = _nearest_front()
    with pytest.raises(ValueError, match="unknown front rule 'vendor'"):
        market_forecast(_curve(), "ZL", dates, price, 5, "vendor")
