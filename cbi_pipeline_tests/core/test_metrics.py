import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbi_pipeline.core import metrics as M

prices = st.lists(st.floats(1.0, 500.0), min_size=3, max_size=60)


def naive_mape(t, p):
    return sum(abs(a - b) / abs(a) for a, b in zip(t, p, strict=True)) / len(t) * 100


def naive_smape(t, p):
    return sum(2 * abs(a - b) / (abs(a) + abs(b)) for a, b in zip(t, p, strict=True)) / len(t) * 100


@given(prices, st.integers(0, 2**31 - 1))
@settings(max_examples=50, deadline=None)
def test_point_metrics_match_naive_loops(t, seed):
    rng = np.random.default_rng(seed)
    p = [x * float(rng.uniform(0.8, 1.2)) for x in t]
    assert M.mape(t, p) == pytest.approx(naive_mape(t, p))
    assert M.smape(t, p) == pytest.approx(naive_smape(t, p))
    assert M.mae(t, p) == pytest.approx(sum(abs(a - b) for a, b in zip(t, p, strict=True)) / len(t))
    assert M.rmse(t, p) == pytest.approx(
        math.sqrt(sum((a - b) ** 2 for a, b in zip(t, p, strict=True)) / len(t))
    )


def test_hand_computed_case():
    t, p, o = [100.0, 110.0], [105.0, 99.0], [100.0, 100.0]
    assert M.mape(t, p) == pytest.approx((5 / 100 + 11 / 110) / 2 * 100)  # 7.5%
    assert M.mape(t, o) == pytest.approx((0 + 10 / 110) / 2 * 100)
    assert M.skill_vs_random_walk(t, p, o) == pytest.approx(1 - 7.5 / (10 / 110 / 2 * 100))
    assert M.mase(t, p, o) == pytest.approx(8.0 / 5.0)
    # predicted up/up vs realised flat/up: the first row has a zero realised move -> miss
    assert M.hit_rate(t, p, o) == pytest.approx(0.0)  # second row predicts down (99) but it rose
    assert M.hit_rate([101.0, 90.0], [102.0, 105.0], [100.0, 100.0]) == pytest.approx(0.5)


def test_random_walk_has_no_direction():
    assert M.hit_rate([101.0, 99.0], [100.0, 100.0], [100.0, 100.0]) is None


def naive_strategy(pred_ret, price, y_true, cost_bp):
    out, prev = [], 0.0
    for r, o, t in zip(pred_ret, price, y_true, strict=True):
        pos = 1.0 if r > 0 else (-1.0 if r < 0 else 0.0)
        out.append(pos * math.log(t / o) - abs(pos - prev) * cost_bp / 1e4)
        prev = pos
    return out


@given(
    st.lists(
        st.tuples(st.floats(-0.1, 0.1), st.floats(10, 100), st.floats(0.8, 1.25)),
        min_size=3,
        max_size=40,
    )
)
@settings(max_examples=50, deadline=None)
def test_strategy_returns_and_sharpe_match_naive(rows):
    r = [a for a, _, _ in rows]
    o = [b for _, b, _ in rows]
    t = [b * c for _, b, c in rows]
    got = M.strategy_returns(r, o, t, 5.0)
    want = naive_strategy(r, o, t, 5.0)
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    mean = sum(want) / len(want)
    sd = math.sqrt(sum((x - mean) ** 2 for x in want) / (len(want) - 1))
    if sd > 1e-12:
        assert M.sharpe(got, 21) == pytest.approx(mean / sd * math.sqrt(252 / 21), rel=1e-6)


def test_costs_are_charged_per_unit_of_position_change():
    # long, long, short: enter (1 unit), hold (0), flip (2 units)
    got = M.strategy_returns([0.1, 0.2, -0.1], [100.0, 100.0, 100.0], [100.0, 100.0, 100.0], 5.0)
    assert got.tolist() == pytest.approx([-0.0005, 0.0, -0.001])


def test_sharpe_annualises_with_sqrt_252_over_h_not_252():
    rets = [0.01, 0.03, -0.01, 0.02]
    base = np.mean(rets) / np.std(rets, ddof=1)
    assert M.sharpe(rets, 63) == pytest.approx(base * 2.0)  # sqrt(252/63) = 2
    assert M.sharpe([0.0, 0.0, 0.0], 5) is None


def test_non_overlapping_origins_take_every_hth_date():
    dates = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(10)][::-1]
    idx = M.non_overlapping_origins(np.array(dates, dtype="datetime64[D]"), 3)
    assert [dates[i] for i in idx] == [dt.date(2020, 1, d) for d in (1, 4, 7, 10)]


def test_psr_matches_formula_and_orders_sensibly():
    rng = np.random.default_rng(0)
    good = rng.normal(0.01, 0.02, 200)
    bad = rng.normal(-0.01, 0.02, 200)
    assert M.probabilistic_sharpe(good) > 0.99
    assert M.probabilistic_sharpe(bad) < 0.01
    x = np.array([0.02, -0.01, 0.03, 0.0, 0.01])
    sr = x.mean() / x.std(ddof=1)
    z = (x - x.mean()) / x.std()
    g3, g4 = (z**3).mean(), (z**4).mean()
    stat = sr * math.sqrt(4) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    assert M.probabilistic_sharpe(x) == pytest.approx(0.5 * (1 + math.erf(stat / math.sqrt(2))))


def test_bad_inputs_fail_loudly():
    with pytest.raises(ValueError, match="differ in length"):
        M.mape([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="NaN or infinite"):
        M.mape([1.0, float("nan")], [1.0, 1.0])
    with pytest.raises(ValueError, match="empty"):
        M.mae([], [])


def test_metric_set_and_breakdowns():
    n = 84
    dates = [dt.date(2020, 1, 1) + dt.timedelta(days=i * 4) for i in range(n)]
    rng = np.random.default_rng(3)
    price = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    y_true = price * np.exp(rng.normal(0, 0.03, n))
    frame = pl.DataFrame(
        {
            "date": dates,
            "price": price,
            "y_true": y_true,
            "y_pred": price * 1.01,
            "market_regime": ["a"] * 40 + ["b"] * 44,
        }
    )
    m = M.metric_set(frame, 5)
    assert m.mape == pytest.approx(M.mape(y_true, price * 1.01))
    assert m.rw_mape == pytest.approx(M.mape(y_true, price))
    assert m.sharpe_periods == math.ceil(n / 5)
    assert m.hit_rate == pytest.approx(float(np.mean(y_true > price)))
    by_regime = M.breakdown(frame, "market_regime", 5)
    assert set(by_regime) == {"a", "b"} and by_regime["a"].rows == 40
    assert sum(x.rows for x in M.breakdown(frame, "crop_season", 5).values()) == n
    assert set(M.breakdown(frame, "quarter", 5)) <= {"1", "2", "3", "4"}


def test_breakdown_groups_are_the_date_sorted_rows_of_each_key():
    # breakdown_groups sorts once and slices; each group must equal that key's rows sorted by
    # date (polars' group_by), in key order, with null keys as "None" and small groups left out.
    n = 60
    rng = np.random.default_rng(5)
    frame = pl.DataFrame(
        {
            "date": [dt.date(2020, 1, 1) + dt.timedelta(days=int(d)) for d in rng.permutation(n)],
            "fold": rng.integers(0, 4, n).astype(np.int32),
            "market_regime": pl.Series(
                [["calm", "crisis", None][i] for i in rng.integers(0, 3, n)], dtype=pl.String
            ),
            "price": rng.random(n) + 1,
        }
    )
    frame = frame.with_columns(
        pl.when(pl.col("fold") == 3).then(pl.lit(None)).otherwise(pl.col("fold")).alias("fold")
    )
    for by in ("fold", "market_regime"):
        expected = sorted(
            (str(key[0]), part.sort("date")) for key, part in frame.group_by(by) if part.height >= 2
        )
        got = M.breakdown_groups(frame, by)
        assert [k for k, _ in got] == [k for k, _ in expected]
        assert all(a.equals(b) for (_, a), (_, b) in zip(got, expected, strict=True))
    only_big = M.breakdown_groups(frame, "fold", min_rows=n)
    assert only_big == []
