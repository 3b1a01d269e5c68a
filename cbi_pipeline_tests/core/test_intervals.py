import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbi_pipeline.core import intervals as I
from cbi_pipeline.core.intervals import (
    CONSTANT,
    EWMA,
    INTERVALS,
    QUANTILE_COLUMNS,
    QUANTILE_LEVELS,
    IntervalError,
    IntervalSpec,
    add_quantiles,
    ewma_volatility,
    forecast_quantiles,
)
from cbi_pipeline.core.vocabulary import RANDOM_WALK
from cbi_pipeline.core.walkforward import TrainingData, prediction_frame
from cbi_pipeline_tests.conftest import business_days

FAMILY = RANDOM_WALK  # the family name only labels the frame here


def make_data(price: np.ndarray, h: int) -> TrainingData:
    """An export as arrays: business-day dates, label = log(price[i + h] / price[i])."""
    price = np.asarray(price, dtype=np.float64)
    n = price.size
    target = np.full(n, np.nan)
    target[: n - h] = price[h:]
    labelled = ~np.isnan(target)
    label = np.full(n, np.nan)
    label[labelled] = np.log(target[labelled] / price[labelled])
    dates = np.asarray(business_days(dt.date(1995, 1, 2), n), dtype="datetime64[D]")
    return TrainingData(
        horizon=f"h{h}",
        horizon_days=h,
        dates=dates,
        price=price,
        target=target,
        label=label,
        weight=np.ones(n),
        regime=np.array(["r"] * n, dtype=object),
        features=("f",),
        X=np.zeros((n, 1), np.float32),
        labelled=labelled,
    )


def random_prices(n: int, rng: np.random.Generator, daily: float = 0.01) -> np.ndarray:
    return 50.0 * np.exp(np.cumsum(rng.normal(0.0, daily, n)))


def oof_frame(
    data: TrainingData, first: int, step: int, pred_return: np.ndarray | None = None
) -> pl.DataFrame:
    """Out-of-fold rows: every labelled row from ``first`` on, in blocks of ``step`` per fold."""
    rows = np.flatnonzero(data.labelled)
    rows = rows[rows >= first]
    fold = (rows - first) // step
    pr = np.zeros(rows.size) if pred_return is None else pred_return[rows]
    return prediction_frame(data, rows, fold, pr, FAMILY)


def naive_ewma(price, lam):
    out, var = [math.nan], math.nan
    r2 = [math.log(price[i] / price[i - 1]) ** 2 for i in range(1, len(price))]
    for i in range(1, len(price)):
        var = sum(r2[:i]) / i if i <= 20 else lam * var + (1 - lam) * r2[i - 1]
        out.append(math.sqrt(var))
    return out


def naive_scale(data, spec):
    if spec.scale == CONSTANT:
        return [1.0] * data.rows
    return [v * math.sqrt(data.horizon_days) for v in naive_ewma(data.price, spec.ewma_lambda)]


def naive_pool(oof, data, s, before, min_rows):
    """The pool rule as a plain loop: OOF residuals with i + h < before, then history backwards."""
    h = data.horizon_days
    pool = [z for r, z in oof.items() if r + h < before]
    j = before - h - 1
    while len(pool) < min_rows and j >= 0:
        if data.labelled[j] and j not in oof and math.isfinite(s[j]) and s[j] > 0:
            pool.append(data.label[j] / s[j])
        j -= 1
    return pool


def naive_oof(frame, data, s):
    where = {d: i for i, d in enumerate(data.dates.astype(dt.date).tolist())}
    rows = [where[d] for d in frame["date"].to_list()]
    pr = frame["pred_return"].to_list()
    return rows, pr, {r: (data.label[r] - p) / s[r] for r, p in zip(rows, pr, strict=True)}


def naive_add_quantiles(frame, data, spec):
    """Rows of nine quantiles, or None when some fold's pool is empty."""
    s = naive_scale(data, spec)
    rows, pr, oof = naive_oof(frame, data, s)
    folds = frame["fold"].to_list()
    out = []
    for r, p, k in zip(rows, pr, folds, strict=True):
        start = min(rr for rr, kk in zip(rows, folds, strict=True) if kk == k)
        pool = naive_pool(oof, data, s, start, spec.min_calibration_rows)
        if not pool:
            return None
        out.append(
            [data.price[r] * math.exp(p + s[r] * q) for q in np.quantile(pool, QUANTILE_LEVELS)]
        )
    return out


def naive_forecast(frame, data, row, pred_return, spec):
    s = naive_scale(data, spec)
    _, _, oof = naive_oof(frame, data, s)
    pool = naive_pool(oof, data, s, row + 1, spec.min_calibration_rows)
    return [
        data.price[row] * math.exp(pred_return + s[row] * q)
        for q in np.quantile(pool, QUANTILE_LEVELS)
    ]


def quantile_matrix(frame: pl.DataFrame) -> np.ndarray:
    return frame.select(QUANTILE_COLUMNS).to_numpy()


# --- ewma_volatility ---------------------------------------------------------------------------


@given(
    st.lists(st.floats(1.0, 500.0), min_size=2, max_size=70),
    st.floats(0.01, 0.99),
)
@settings(max_examples=60, deadline=None)
def test_ewma_volatility_matches_naive_loop(price, lam):
    got = ewma_volatility(np.array(price), lam)
    want = naive_ewma(price, lam)
    assert math.isnan(got[0])
    assert got[1:].tolist() == pytest.approx(want[1:], rel=1e-9, abs=1e-15)


def test_ewma_volatility_hand_computed():
    # 21 returns of +1% seed sigma = log(1.01); then one +5% day moves it by the recursion.
    price = [100.0 * 1.01**i for i in range(22)] + [100.0 * 1.01**21 * 1.05]
    sigma = ewma_volatility(np.array(price), 0.94)
    a, b = math.log(1.01), math.log(1.05)
    assert math.isnan(sigma[0])
    assert sigma[1:22].tolist() == pytest.approx([a] * 21, rel=1e-12)
    assert sigma[22] == pytest.approx(math.sqrt(0.94 * a**2 + 0.06 * b**2), rel=1e-12)
    # warm-up: the expanding mean of r² so far
    s = ewma_volatility(np.array([100.0, 110.0, 99.0]), 0.5)
    r1, r2 = math.log(1.1), math.log(0.9)
    assert s[1:].tolist() == pytest.approx([abs(r1), math.sqrt((r1**2 + r2**2) / 2)])


@given(
    st.lists(st.floats(1.0, 500.0), min_size=3, max_size=80),
    st.data(),
)
@settings(max_examples=60, deadline=None)
def test_ewma_volatility_never_uses_a_later_price(price, data):
    price = np.array(price)
    cut = data.draw(st.integers(1, price.size - 1))
    later = data.draw(
        st.lists(st.floats(1.0, 500.0), min_size=price.size - cut, max_size=price.size - cut)
    )
    changed = price.copy()
    changed[cut:] = later
    before, after = ewma_volatility(price, 0.94), ewma_volatility(changed, 0.94)
    np.testing.assert_array_equal(before[:cut], after[:cut])


def test_ewma_volatility_rejects_bad_input():
    with pytest.raises(IntervalError, match="positive and finite"):
        ewma_volatility(np.array([1.0, 0.0, 2.0]), 0.94)
    with pytest.raises(IntervalError, match="positive and finite"):
        ewma_volatility(np.array([1.0, np.nan]), 0.94)
    with pytest.raises(IntervalError, match=r"\(0, 1\)"):
        ewma_volatility(np.array([1.0, 2.0]), 1.0)
    with pytest.raises(IntervalError, match=">= 2 rows"):
        ewma_volatility(np.array([1.0]), 0.94)


def test_interval_spec_validates():
    with pytest.raises(IntervalError, match="scale"):
        IntervalSpec(scale="garch")
    with pytest.raises(IntervalError, match="ewma_lambda"):
        IntervalSpec(ewma_lambda=0.0)
    with pytest.raises(IntervalError, match="min_calibration_rows"):
        IntervalSpec(min_calibration_rows=-1)


# --- add_quantiles: the pool rule --------------------------------------------------------------


def test_add_quantiles_hand_computed():
    # h = 1, constant scale, at least 3 residuals per pool; row 7 has no label.
    labels = [0.01, -0.02, 0.03, 0.00, 0.02, -0.01, 0.04]
    price = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(labels)]))
    data = make_data(price, 1)
    rows = np.array([4, 5, 6])
    pred = np.array([0.01, -0.01, 0.005])
    frame = prediction_frame(data, rows, np.array([0, 0, 1]), pred, FAMILY)
    got = add_quantiles(frame, data, IntervalSpec(scale=CONSTANT, min_calibration_rows=3))
    q = {c: got[c].to_list() for c in QUANTILE_COLUMNS}
    # Fold 0 (origin row 4): no OOF residual; history rows 2, 1, 0 -> [0.03, -0.02, 0.01].
    # Sorted [-0.02, 0.01, 0.03]: q25 at position 0.5 -> -0.005, q50 0.01, q75 at 1.5 -> 0.02.
    for i, r in enumerate(rows[:2]):
        assert q["q25"][i] == pytest.approx(price[r] * math.exp(pred[i] - 0.005))
        assert q["q50"][i] == pytest.approx(price[r] * math.exp(pred[i] + 0.01))
        assert q["q75"][i] == pytest.approx(price[r] * math.exp(pred[i] + 0.02))
        assert q["q97.5"][i] == pytest.approx(price[r] * math.exp(pred[i] + 0.029))
    # Fold 1 (origin row 6): OOF row 4 (z = 0.02 - 0.01 = 0.01; row 5's label ends at 6: purged),
    # then history rows 3, 2 -> [0.01, 0.00, 0.03], sorted [0, 0.01, 0.03].
    assert q["q25"][2] == pytest.approx(price[6] * math.exp(0.005 + 0.005))
    assert q["q50"][2] == pytest.approx(price[6] * math.exp(0.005 + 0.01))
    assert q["q75"][2] == pytest.approx(price[6] * math.exp(0.005 + 0.02))
    assert q["q2.5"][2] == pytest.approx(price[6] * math.exp(0.005 + 0.0005))
    assert got.columns == [*frame.columns, *QUANTILE_COLUMNS]
    assert all(got[c].dtype == pl.Float64 for c in QUANTILE_COLUMNS)


@st.composite
def small_cases(draw):
    n = draw(st.integers(30, 110))
    h = draw(st.integers(1, 6))
    first = draw(st.integers(2, n - h - 1))
    step = draw(st.integers(2, 30))
    spec = IntervalSpec(
        scale=draw(st.sampled_from([EWMA, CONSTANT])),
        ewma_lambda=draw(st.floats(0.5, 0.99)),
        min_calibration_rows=draw(st.integers(0, 40)),
    )
    seed = draw(st.integers(0, 2**31 - 1))
    return n, h, first, step, spec, seed


@given(small_cases())
@settings(max_examples=80, deadline=None)
def test_add_quantiles_matches_naive_pool_rule(case):
    n, h, first, step, spec, seed = case
    rng = np.random.default_rng(seed)
    data = make_data(random_prices(n, rng), h)
    frame = oof_frame(data, first, step, rng.normal(0.0, 0.01, n))
    frame = frame.sample(fraction=1.0, shuffle=True, seed=seed % 1000)  # order must be kept
    want = naive_add_quantiles(frame, data, spec)
    if want is None:
        with pytest.raises(IntervalError, match="fold 0"):
            add_quantiles(frame, data, spec)
        return
    got = add_quantiles(frame, data, spec)
    assert got.select(frame.columns).equals(frame)
    q = quantile_matrix(got)
    np.testing.assert_allclose(q, np.array(want), rtol=1e-9)
    assert (np.diff(q, axis=1) >= 0).all()


@given(st.integers(0, 2**31 - 1), st.integers(1, 5), st.data())
@settings(max_examples=60, deadline=None)
def test_purge_fold_quantiles_ignore_labels_not_ended_at_the_origin(seed, h, draw):
    rng = np.random.default_rng(seed)
    n, first, step = 150, 40, 20
    spec = IntervalSpec(scale=draw.draw(st.sampled_from([EWMA, CONSTANT])), min_calibration_rows=30)
    price = random_prices(n, rng)
    pred = rng.normal(0.0, 0.01, n)
    data = make_data(price, h)
    frame = oof_frame(data, first, step, pred)
    base = add_quantiles(frame, data, spec)
    folds = frame["fold"].to_numpy()
    k = draw.draw(st.sampled_from(sorted(set(folds.tolist()))))
    s_k = first + k * step
    cut = draw.draw(st.integers(s_k + 1, n - 1))  # fold k keeps at least its first row
    # Prices from `cut` on change (so do the labels ending there), every label whose window had
    # not ended at fold k's origin (i + h >= s_k) changes, and so do later folds' predictions.
    new_price = price.copy()
    new_price[cut:] *= np.exp(np.cumsum(rng.normal(0.0, 0.05, n - cut)))
    changed = make_data(new_price, h)
    open_rows = np.flatnonzero(changed.labelled & (np.arange(n) + h >= s_k))
    changed.target[open_rows] = new_price[open_rows] * np.exp(rng.normal(0.0, 0.1, open_rows.size))
    changed.label[open_rows] = np.log(changed.target[open_rows] / new_price[open_rows])
    new_pred = pred.copy()
    later = np.arange(n) >= s_k + step
    new_pred[later] = rng.normal(0.0, 0.05, int(later.sum()))
    got = add_quantiles(oof_frame(changed, first, step, new_pred), changed, spec)
    assert not np.array_equal(changed.label[open_rows], data.label[open_rows])
    rows = np.flatnonzero(data.labelled)
    rows = rows[rows >= first]
    keep = (folds <= k) & (rows < cut)
    np.testing.assert_array_equal(quantile_matrix(got)[keep], quantile_matrix(base)[keep])


def test_purge_boundary_the_last_ended_label_counts_the_next_does_not():
    rng = np.random.default_rng(5)
    h, n, first, step = 3, 120, 50, 25
    data = make_data(random_prices(n, rng), h)
    frame = oof_frame(data, first, step)
    spec = IntervalSpec(min_calibration_rows=20)
    base = quantile_matrix(add_quantiles(frame, data, spec))
    fold1 = (frame["fold"] == 1).to_numpy()
    s_1 = first + step

    def with_label(row: int, value: float) -> np.ndarray:
        changed = make_data(data.price, h)
        changed.label[row] = value
        return quantile_matrix(add_quantiles(frame, changed, spec))

    # row s_1 - h - 1 ended its label before the origin: it is in fold 1's pool.
    assert not np.allclose(with_label(s_1 - h - 1, 0.5)[fold1], base[fold1])
    # row s_1 - h ends its label on the origin: purged.
    np.testing.assert_array_equal(with_label(s_1 - h, 0.5)[fold1], base[fold1])


def test_constant_scale_has_constant_log_width_within_a_fold():
    rng = np.random.default_rng(11)
    h = 5
    data = make_data(random_prices(400, rng), h)
    frame = oof_frame(data, 150, 60, rng.normal(0.0, 0.02, 400))
    const = add_quantiles(frame, data, IntervalSpec(scale=CONSTANT, min_calibration_rows=50))
    ewma = add_quantiles(frame, data, IntervalSpec(scale=EWMA, min_calibration_rows=50))
    s = I.residual_scale(data, IntervalSpec())[np.flatnonzero(data.labelled)[150:]]
    for lo, hi in INTERVALS.values():
        for k in range(int(frame["fold"].max()) + 1):
            m = (frame["fold"] == k).to_numpy()
            w = np.log(const[hi].to_numpy()[m] / const[lo].to_numpy()[m])
            np.testing.assert_allclose(w, w[0], rtol=1e-10)
            # the EWMA width follows the origin's volatility: constant only once divided by it
            e = np.log(ewma[hi].to_numpy()[m] / ewma[lo].to_numpy()[m])
            assert np.ptp(e) > 0
            np.testing.assert_allclose(e / s[m], e[0] / s[m][0], rtol=1e-10)


# --- calibration on simulated data -------------------------------------------------------------


def garch_returns(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """GARCH(1,1) daily log returns (alpha 0.08, beta 0.90, long-run sd 1.5%) and their sigma."""
    rng = np.random.default_rng(seed)
    alpha, beta, long_var = 0.08, 0.90, 0.015**2
    var, r, sigma = long_var, np.empty(n), np.empty(n)
    for t in range(n):
        sigma[t] = math.sqrt(var)
        r[t] = sigma[t] * rng.standard_normal()
        var = (1 - alpha - beta) * long_var + alpha * r[t] ** 2 + beta * var
    return r, sigma


def test_coverage_on_a_garch_random_walk_is_nominal_within_sampling_error():
    # h = 1: one-day residuals barely overlap, so covered/not is close to independent Bernoulli.
    # 2,000 rows of history, then 10 yearly-like folds of 1,000 rows; every pool holds >= 2,000
    # residuals. Bound: 4 sd of (test-row sampling p(1-p)/N) + (pool quantile error p(1-p)/M),
    # the second being the variance of an empirical interval's true coverage from M draws.
    r, sigma = garch_returns(12_000, seed=1)
    data = make_data(100.0 * np.exp(np.concatenate([[0.0], np.cumsum(r)])), 1)
    first, m = 2_000, 2_000
    frame = oof_frame(data, first, 1_000)
    rows = np.flatnonzero(data.labelled)
    true_sigma = sigma[rows[rows >= first]]  # label_i = r[i], drawn with sd sigma[i]
    high = true_sigma >= np.quantile(true_sigma, 0.75)
    y = frame["y_true"].to_numpy()
    covered = {}
    for scale in (EWMA, CONSTANT):
        q = add_quantiles(frame, data, IntervalSpec(scale=scale, min_calibration_rows=m))
        for level, (lo, hi) in INTERVALS.items():
            c = (q[lo].to_numpy() <= y) & (y <= q[hi].to_numpy())
            bound = 4 * math.sqrt(level * (1 - level) * (1 / c.size + 1 / m))
            assert abs(c.mean() - level) <= bound, (scale, level, c.mean(), bound)
            covered[scale, level] = c
    # Where the true volatility is high (top quartile), the EWMA scale keeps 80% coverage near
    # nominal while constant-width intervals fall short by more than the same kind of bound.
    bound = 4 * math.sqrt(0.8 * 0.2 * (1 / high.sum() + 1 / m))
    assert abs(covered[EWMA, 0.8][high].mean() - 0.8) <= bound
    assert 0.8 - covered[CONSTANT, 0.8][high].mean() > bound


# --- forecast_quantiles ------------------------------------------------------------------------


@given(small_cases())
@settings(max_examples=60, deadline=None)
def test_forecast_quantiles_match_naive_pool_rule(case):
    n, h, first, step, spec, seed = case
    rng = np.random.default_rng(seed)
    data = make_data(random_prices(n, rng), h)
    frame = oof_frame(data, first, step, rng.normal(0.0, 0.01, n))
    for row in (n - 1, int(rng.integers(1, n))):
        s = naive_scale(data, spec)
        _, _, oof = naive_oof(frame, data, s)
        if not naive_pool(oof, data, s, row + 1, spec.min_calibration_rows):
            with pytest.raises(IntervalError, match="no residual"):
                forecast_quantiles(frame, data, row, 0.003, spec)
            continue
        got = forecast_quantiles(frame, data, row, 0.003, spec)
        assert list(got) == list(QUANTILE_COLUMNS)
        want = naive_forecast(frame, data, row, 0.003, spec)
        assert list(got.values()) == pytest.approx(want, rel=1e-9)


def test_forecast_quantiles_use_the_fold_pool_rule():
    # A forecast at row s_k - 1 sees exactly fold k's pool (labels with i + h <= s_k - 1).
    rng = np.random.default_rng(21)
    h = 5
    data = make_data(random_prices(300, rng), h)
    frame = oof_frame(data, 100, 50, rng.normal(0.0, 0.01, 300))
    spec = IntervalSpec(min_calibration_rows=60)
    q = add_quantiles(frame, data, spec)
    s = I.residual_scale(data, spec)
    for k, s_k in ((0, 100), (2, 200)):
        i = s_k  # fold k's first row
        fold_row = q.filter(pl.col("fold") == k).row(0, named=True)
        assert fold_row["date"] == data.dates[i].astype(dt.date)
        fold_z = [
            (math.log(fold_row[c] / data.price[i]) - fold_row["pred_return"]) / s[i]
            for c in QUANTILE_COLUMNS
        ]
        fc = forecast_quantiles(frame, data, s_k - 1, 0.01, spec)
        fc_z = [
            (math.log(fc[c] / data.price[s_k - 1]) - 0.01) / s[s_k - 1] for c in QUANTILE_COLUMNS
        ]
        assert fc_z == pytest.approx(fold_z, rel=1e-9)
    last = forecast_quantiles(frame, data, data.rows - 1, 0.0, spec)
    pool = I.calibration(frame, data, spec).pool(data.rows)
    assert pool.size == frame.height  # every OOF label has ended by the last row
    assert list(last.values()) == pytest.approx(
        (data.price[-1] * np.exp(s[-1] * np.quantile(pool, QUANTILE_LEVELS))).tolist()
    )


# --- errors ------------------------------------------------------------------------------------


def test_errors_name_what_is_wrong():
    rng = np.random.default_rng(2)
    data = make_data(random_prices(80, rng), 2)
    frame = oof_frame(data, 40, 10)
    foreign = frame.with_columns(pl.col("date").dt.offset_by("-1y"))
    with pytest.raises(IntervalError, match=r"not in the export.*1994"):
        add_quantiles(foreign, data)
    with pytest.raises(IntervalError, match=r"missing column\(s\) \['fold'\]"):
        add_quantiles(frame.drop("fold"), data)
    with pytest.raises(IntervalError, match="one row per origin"):
        add_quantiles(pl.concat([frame, frame.head(1)]), data)
    with pytest.raises(IntervalError, match="differs from the export's price"):
        add_quantiles(frame.with_columns(pl.col("price") * 1.01), data)
    with pytest.raises(IntervalError, match=r"fold 0 .*no residual"):
        add_quantiles(frame, data, IntervalSpec(min_calibration_rows=0))
    swapped = frame.with_columns(
        pl.when(pl.col("fold") == 0)
        .then(2)
        .when(pl.col("fold") == 2)
        .then(0)
        .otherwise(pl.col("fold"))
        .alias("fold")
    )
    with pytest.raises(IntervalError, match="follow each other in time"):
        add_quantiles(swapped, data)
    with pytest.raises(IntervalError, match="row must be an export row"):
        forecast_quantiles(frame, data, data.rows, 0.0)
    with pytest.raises(IntervalError, match=r"row 0 .* undefined or zero"):
        forecast_quantiles(frame, data, 0, 0.0)
