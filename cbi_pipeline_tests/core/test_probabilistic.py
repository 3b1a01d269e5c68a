import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from cbi_pipeline.core import probabilistic as P
from cbi_pipeline.core.intervals import INTERVALS, QUANTILE_COLUMNS, QUANTILE_LEVELS
from cbi_pipeline.core.metrics import crop_season
from cbi_pipeline.core.probabilistic import ProbabilisticError


def naive_pinball(y, q, levels, price):
    total = 0.0
    for i in range(len(y)):
        for j, p in enumerate(levels):
            u = (y[i] - q[i][j]) / price[i] * 100
            total += p * u if u >= 0 else (p - 1) * u
    return total / (len(y) * len(levels))


@st.composite
def quantile_cases(draw):
    n = draw(st.integers(1, 25))
    levels = sorted(draw(st.sets(st.floats(0.01, 0.99), min_size=1, max_size=6)))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    price = rng.uniform(10, 100, n)
    y = price * np.exp(rng.normal(0, 0.05, n))
    q = np.sort(price[:, None] * np.exp(rng.normal(0, 0.05, (n, len(levels)))), axis=1)
    return y, q, levels, price


@given(quantile_cases())
@settings(max_examples=80, deadline=None)
def test_pinball_and_crps_match_naive_loop(case):
    y, q, levels, price = case
    want = naive_pinball(y.tolist(), q.tolist(), levels, price.tolist())
    assert P.pinball_loss(y, q, levels, price) == pytest.approx(want, rel=1e-12)
    assert P.crps_from_quantiles(y, q, levels, price) == pytest.approx(2 * want, rel=1e-12)
    per_row = P.pinball_losses(y, q, levels, price)
    assert per_row.tolist() == pytest.approx(
        [naive_pinball([a], [b], levels, [c]) for a, b, c in zip(y, q.tolist(), price, strict=True)]
    )


def test_pinball_hand_computed_one_row_two_levels():
    # y = 102, price 100: u = 4% vs q10 = 98 -> 0.1 * 4 = 0.4; u = 1% vs q90 = 101 -> 0.9 * 1 = 0.9
    assert P.pinball_loss([102.0], [[98.0, 101.0]], [0.1, 0.9], [100.0]) == pytest.approx(0.65)
    assert P.crps_from_quantiles([102.0], [[98.0, 101.0]], [0.1, 0.9], [100.0]) == pytest.approx(
        1.3
    )
    # below both: u = -3% vs 101 -> (0.1-1)(-3) = 2.7; u = -5% vs 103 -> (0.9-1)(-5) = 0.5
    assert P.pinball_loss([98.0], [[101.0, 103.0]], [0.1, 0.9], [100.0]) == pytest.approx(1.6)


@given(
    st.lists(
        st.tuples(st.floats(1, 100), st.floats(0.5, 1.5), st.floats(0, 0.5)),
        min_size=1,
        max_size=30,
    )
)
@settings(max_examples=60, deadline=None)
def test_coverage_and_width_match_naive_loop(rows):
    y = [a * b for a, b, _ in rows]
    price = [a for a, _, _ in rows]
    lower = [a * (1 - w) for a, _, w in rows]
    upper = [a * (1 + w) for a, _, w in rows]
    inside = sum(1 for t, lo, hi in zip(y, lower, upper, strict=True) if lo <= t <= hi)
    assert P.coverage(y, lower, upper) == pytest.approx(inside / len(y))
    widths = [(hi - lo) / p * 100 for lo, hi, p in zip(lower, upper, price, strict=True)]
    assert P.mean_width(lower, upper, price) == pytest.approx(sum(widths) / len(widths))


def test_coverage_and_width_hand_computed():
    # 1 in [0, 1] yes (bounds count), 2 in [2.5, 3] no, 3 in [3, 3] yes, 4 in [5, 6] no
    assert P.coverage([1, 2, 3, 4], [0, 2.5, 3, 5], [1, 3, 3, 6]) == 0.5
    # widths 10% of 100 and 0% of 50
    assert P.mean_width([95.0, 50.0], [105.0, 50.0], [100.0, 50.0]) == pytest.approx(5.0)


def test_metric_inputs_fail_loudly():
    with pytest.raises(ProbabilisticError, match="lower > upper"):
        P.coverage([1.0], [2.0], [1.0])
    with pytest.raises(ProbabilisticError, match="differ in shape"):
        P.coverage([1.0, 2.0], [0.0], [3.0])
    with pytest.raises(ProbabilisticError, match=r"shape \(rows, levels\)"):
        P.pinball_loss([1.0], [[1.0, 2.0]], [0.5], [1.0])
    with pytest.raises(ProbabilisticError, match=r"in \(0, 1\)"):
        P.pinball_loss([1.0], [[1.0]], [1.0], [1.0])
    with pytest.raises(ProbabilisticError, match="NaN"):
        P.mean_width([np.nan], [1.0], [1.0])
    with pytest.raises(ProbabilisticError, match="positive"):
        P.mean_width([1.0], [2.0], [0.0])


def quantile_frame(n: int = 96, seed: int = 4) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    price = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    y = price * np.exp(rng.normal(0, 0.03, n))
    z = np.array([stats.norm.ppf(p) for p in QUANTILE_LEVELS])
    q = price[:, None] * np.exp(0.03 * z[None, :])
    return pl.DataFrame(
        {
            "date": [dt.date(2020, 1, 1) + dt.timedelta(days=4 * i) for i in range(n)],
            "fold": np.repeat(np.arange(3), n // 3).astype(np.int32),
            "market_regime": ["a"] * 40 + ["b"] * (n - 40),
            "price": price,
            "y_true": y,
            **{c: q[:, j] for j, c in enumerate(QUANTILE_COLUMNS)},
        }
    )


def test_probabilistic_set_agrees_with_the_metric_functions():
    frame = quantile_frame()
    got = P.probabilistic_set(frame)
    y, price = frame["y_true"].to_numpy(), frame["price"].to_numpy()
    q = frame.select(QUANTILE_COLUMNS).to_numpy()
    assert got.rows == frame.height
    assert got.pinball == pytest.approx(naive_pinball(y, q, QUANTILE_LEVELS, price))
    assert got.crps == pytest.approx(2 * got.pinball)
    assert set(got.coverage) == set(got.width) == {"50", "80", "90", "95"}
    for level, (lo, hi) in INTERVALS.items():
        key = f"{round(level * 100)}"
        assert got.coverage[key] == P.coverage(y, frame[lo], frame[hi])
        assert got.width[key] == pytest.approx(P.mean_width(frame[lo], frame[hi], price))
    assert got.width["50"] < got.width["80"] < got.width["90"] < got.width["95"]
    d = got.as_dict()
    assert d["rows"] == frame.height and d["coverage"] == got.coverage


def test_probabilistic_set_names_missing_columns_null_rows_and_crossed_quantiles():
    frame = quantile_frame()
    with pytest.raises(ProbabilisticError, match=r"missing column\(s\) \['q50'\]"):
        P.probabilistic_set(frame.drop("q50"))
    nulled = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("q90")).alias("q90")
    )
    with pytest.raises(ProbabilisticError, match=r"1 rows have nulls.*q90.: 1.*2020-01-13"):
        P.probabilistic_set(nulled)
    crossed = frame.with_columns(pl.col("q25").alias("q75"), pl.col("q75").alias("q25"))
    with pytest.raises(ProbabilisticError, match="decrease across levels"):
        P.probabilistic_set(crossed)


def test_has_quantiles():
    frame = quantile_frame()
    assert P.has_quantiles(frame)
    assert not P.has_quantiles(frame.drop(QUANTILE_COLUMNS))
    with pytest.raises(ProbabilisticError, match=r"lacks \['q5'\]"):
        P.has_quantiles(frame.drop("q5"))


def test_probabilistic_breakdown_groups_like_metrics_breakdown():
    frame = quantile_frame()
    by_regime = P.probabilistic_breakdown(frame, "market_regime")
    assert set(by_regime) == {"a", "b"} and by_regime["a"].rows == 40
    assert by_regime["a"] == P.probabilistic_set(frame.head(40))
    by_fold = P.probabilistic_breakdown(frame, "fold")
    assert list(by_fold) == ["0", "1", "2"] and all(s.rows == 32 for s in by_fold.values())
    assert sum(s.rows for s in P.probabilistic_breakdown(frame, "crop_season").values()) == 96
    assert set(P.probabilistic_breakdown(frame, "quarter")) <= {"1", "2", "3", "4"}
    assert P.probabilistic_breakdown(frame, "market_regime", min_rows=41).keys() == {"b"}
    with pytest.raises(ProbabilisticError, match="no such column"):
        P.probabilistic_breakdown(frame, "weekday")


def test_pinball_skill_hand_computed():
    model = P.ProbabilisticSet(10, 0.9, 1.8, {}, {})
    bench = P.ProbabilisticSet(10, 1.2, 2.4, {}, {})
    assert P.pinball_skill(model, bench) == pytest.approx(0.25)
    with pytest.raises(ProbabilisticError, match="same origins"):
        P.pinball_skill(model, P.ProbabilisticSet(9, 1.2, 2.4, {}, {}))
    with pytest.raises(ProbabilisticError, match="undefined"):
        P.pinball_skill(model, P.ProbabilisticSet(10, 0.0, 0.0, {}, {}))


# --- Diebold–Mariano ----------------------------------------------------------------------------


def naive_long_run_variance(d, lag):
    n = len(d)
    m = sum(d) / n
    total = 0.0
    for t in range(n):
        for s in range(n):
            k = abs(t - s)
            if k <= lag:
                total += (1 - k / (lag + 1)) * (d[t] - m) * (d[s] - m)
    return total / n


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=40), st.integers(0, 12))
@settings(max_examples=80, deadline=None)
def test_newey_west_variance_matches_naive_double_loop(d, lag):
    assert P.newey_west_variance(d, lag) == pytest.approx(naive_long_run_variance(d, lag), abs=1e-9)


def test_diebold_mariano_hand_computed():
    d = [1.0, -1.0, 2.0, 0.0]  # mean 0.5, gamma0 = 1.25, gamma1 = -0.9375
    zero = [0.0] * 4
    one = P.diebold_mariano(d, zero, 1)
    stat = 0.5 / math.sqrt(1.25 / 4) * math.sqrt(3 / 4)  # HLN: (n + 1 - 2h + h(h-1)/n) / n
    assert one.statistic == pytest.approx(stat)
    assert one.p_value == pytest.approx(stats.t.cdf(stat, 3))
    assert (one.periods, one.lag, one.mean_difference) == (4, 0, 0.5)
    two = P.diebold_mariano(d, zero, 2)
    lrv = 1.25 + 2 * 0.5 * -0.9375  # Bartlett weight 1 - 1/2 at lag 1
    stat = 0.5 / math.sqrt(lrv / 4) * math.sqrt((4 + 1 - 4 + 2 * 1 / 4) / 4)
    assert two.statistic == pytest.approx(stat)
    assert two.p_value == pytest.approx(stats.t.cdf(stat, 3))
    assert two.lag == 1


def test_diebold_mariano_detects_a_clearly_better_model_one_sided():
    rng = np.random.default_rng(8)
    h, n = 5, 600
    shocks = rng.normal(0, 1, n + h)
    common = np.convolve(shocks, np.ones(h), "valid")[:n]  # overlapping h-step errors (MA(h-1))
    bench = (common + rng.normal(0, 0.3, n)) ** 2
    model = (0.6 * common + rng.normal(0, 0.3, n)) ** 2
    better = P.diebold_mariano(model, bench, h)
    assert better.statistic < 0 and better.p_value < 0.001
    worse = P.diebold_mariano(bench, model, h)
    assert worse.p_value > 0.999
    assert better.p_value + worse.p_value == pytest.approx(1.0)


def test_diebold_mariano_degenerate_cases_raise():
    losses = [0.3, 0.1, 0.5, 0.2]
    with pytest.raises(ValueError, match="constant"):
        P.diebold_mariano(losses, losses, 1)
    with pytest.raises(ValueError, match="at least 3 origins"):
        P.diebold_mariano([0.1, 0.2], [0.3, 0.1], 1)
    with pytest.raises(ValueError, match="more origins than h"):
        P.diebold_mariano([0.1, 0.2, 0.4, 0.3], [0.3, 0.1, 0.2, 0.2], 5)
    with pytest.raises(ValueError, match="h must be an integer"):
        P.diebold_mariano(losses, losses, 0)


@pytest.mark.parametrize("by", ["market_regime", "fold", "quarter", "crop_season"])
def test_probabilistic_breakdown_equals_scoring_each_group_by_itself(by):
    # Groups are scored on slices of the checked arrays; that must equal scoring each group as
    # its own frame (polars' group_by, date-sorted), bit for bit, whatever the input order.
    frame = quantile_frame().sample(fraction=1.0, shuffle=True, seed=3)
    if by == "quarter":
        keyed = frame.with_columns(pl.col("date").dt.quarter().cast(pl.String).alias(by))
    elif by == "crop_season":
        keyed = frame.with_columns(crop_season(pl.col("date").dt.month()).alias(by))
    else:
        keyed = frame
    expected = {
        str(key[0]): P.probabilistic_set(part.sort("date"))
        for key, part in keyed.group_by(by)
        if part.height >= 2
    }
    got = P.probabilistic_breakdown(frame, by)
    assert list(got) == sorted(expected) and got == expected
