import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbi_pipeline.core.walkforward import (
    PREDICTION_COLUMNS,
    WalkForwardError,
    WalkForwardSpec,
    plan_folds,
    training_data,
)
from cbi_pipeline_tests.conftest import business_days


def days(n: int, start: dt.date = dt.date(2001, 1, 1)) -> np.ndarray:
    return np.asarray(business_days(start, n), dtype="datetime64[D]")


def tail_unlabelled(n: int, h: int) -> np.ndarray:
    labelled = np.ones(n, bool)
    labelled[n - h :] = False
    return labelled


def test_hand_computed_folds():
    # 20 rows, h = 2: rows 18 and 19 have no label. First test row 10, blocks of 4.
    d = days(20)
    spec = WalkForwardSpec(
        horizon_days=2,
        first_test_date=d[10].astype(dt.date),
        refit_step=4,
        validation_rows=3,
        min_train_rows=2,
    )
    folds = plan_folds(d, tail_unlabelled(20, 2), spec)
    assert len(folds) == 2
    f0, f1 = folds
    # Fold 0: test 10..13; candidates i + 2 < 10 -> 0..7; validation 5..7; fit i + 2 < 5 -> 0..2.
    assert f0.test_rows.tolist() == [10, 11, 12, 13]
    assert f0.validation_rows.tolist() == [5, 6, 7]
    assert f0.fit_rows.tolist() == [0, 1, 2]
    # Fold 1: test 14..17 (18, 19 unlabelled); candidates 0..11; validation 9..11; fit 0..6.
    assert f1.test_rows.tolist() == [14, 15, 16, 17]
    assert f1.validation_rows.tolist() == [9, 10, 11]
    assert f1.fit_rows.tolist() == list(range(7))


def test_first_test_date_on_a_holiday_starts_at_the_next_trading_day():
    d = days(30)
    saturday = d[12].astype(dt.date) + dt.timedelta(days=(5 - d[12].astype(dt.date).weekday()) % 7)
    spec = WalkForwardSpec(1, saturday, refit_step=5, validation_rows=2, min_train_rows=2)
    first = plan_folds(d, tail_unlabelled(30, 1), spec)[0]
    assert d[first.test_rows[0]].astype(dt.date) == saturday + dt.timedelta(days=2)


@st.composite
def split_cases(draw):
    n = draw(st.integers(40, 400))
    h = draw(st.integers(1, 30))
    step = draw(st.integers(1, 80))
    val = draw(st.integers(1, 40))
    min_train = draw(st.integers(1, 40))
    first = draw(st.integers(0, n - 1))
    labelled = tail_unlabelled(n, min(h, n))
    holes = draw(st.lists(st.integers(0, n - 1), max_size=10))
    labelled[holes] = False
    return n, h, step, val, min_train, first, labelled


def naive_folds(n, h, step, val, min_train, first, labelled):
    """The splitting rules written as a plain loop over rows (None where no split is possible)."""
    lab = [i for i in range(n) if labelled[i]]
    if not lab or first > lab[-1]:
        return None
    folds, s = [], first
    while s <= lab[-1]:
        test = [i for i in lab if s <= i < s + step]
        if test:
            candidates = [i for i in lab if i + h < s]
            if len(candidates) <= val:
                return None
            validation = candidates[-val:]
            fit = [i for i in candidates if i + h < validation[0]]
            if len(fit) < min_train:
                return None
            folds.append((fit, validation, test))
        s += step
    return folds


@settings(max_examples=300, deadline=None)
@given(split_cases())
def test_fold_invariants(case):
    n, h, step, val, min_train, first, labelled = case
    d = days(n)
    spec = WalkForwardSpec(h, d[first].astype(dt.date), step, val, min_train)
    expected = naive_folds(n, h, step, val, min_train, first, labelled)
    if expected is None:
        with pytest.raises(WalkForwardError):
            plan_folds(d, labelled, spec)
        return
    folds = plan_folds(d, labelled, spec)
    got = [(f.fit_rows.tolist(), f.validation_rows.tolist(), f.test_rows.tolist()) for f in folds]
    assert got == expected

    lab = np.flatnonzero(labelled)
    predicted = np.concatenate([f.test_rows for f in folds])
    # Every labelled row from the first test row on is predicted exactly once, in order.
    assert predicted.tolist() == lab[lab >= first].tolist()
    for k, f in enumerate(folds):
        assert f.index == k
        for rows in (f.fit_rows, f.validation_rows, f.test_rows):
            assert rows.size and np.all(np.diff(rows) > 0) and labelled[rows].all()
        # No row in two roles.
        assert not set(f.fit_rows) & set(f.validation_rows)
        assert not set(f.fit_rows) & set(f.test_rows)
        assert not set(f.validation_rows) & set(f.test_rows)
        # The purge: fit labels end before the validation slice, all labels before the origin.
        assert f.fit_rows.max() + h < f.validation_rows.min()
        assert f.validation_rows.max() + h < f.test_origin <= f.test_rows.min()
        assert f.test_rows.max() < f.test_origin + step
        assert f.validation_rows.size == val and f.fit_rows.size >= min_train
        # The validation slice is the end of the training candidates.
        cand = lab[lab + h < f.test_origin]
        assert f.validation_rows.tolist() == cand[-val:].tolist()
        if k:
            prev = folds[k - 1]
            assert prev.test_rows.max() < f.test_rows.min()
            assert f.test_origin - prev.test_origin == step * (
                (f.test_origin - prev.test_origin) // step
            )
            assert set(prev.fit_rows) <= set(f.fit_rows)  # expanding window


def test_fold_count_is_fixed_by_the_first_test_date_and_step():
    n, h = 700, 21
    d = days(n)
    spec = WalkForwardSpec(h, d[300].astype(dt.date), 100, 50, 100)
    folds = plan_folds(d, tail_unlabelled(n, h), spec)
    assert len(folds) == -(-(n - h - 300) // 100)  # ceil: 379 labelled test rows in blocks of 100
    # New days append test rows to the last block or new blocks; earlier blocks do not move.
    more = plan_folds(days(n + 150), tail_unlabelled(n + 150, h), spec)
    for a, b in zip(folds[:-1], more, strict=False):
        assert a.test_rows.tolist() == b.test_rows.tolist()
        assert a.fit_rows.tolist() == b.fit_rows.tolist()


def test_data_ending_before_the_first_test_date_is_a_precise_error():
    d = days(300, dt.date(2008, 1, 1))
    spec = WalkForwardSpec(252, dt.date(2010, 1, 4))
    with pytest.raises(WalkForwardError) as err:
        plan_folds(d, tail_unlabelled(300, 252), spec)
    message = str(err.value)
    assert "no labelled rows on or after first_test_date 2010-01-04" in message
    assert f"labelled rows end at {d[47]}" in message
    assert "CBI_FIRST_TEST_DATE" in message


def test_too_little_history_names_the_fold_and_the_limit():
    d = days(200)
    spec = WalkForwardSpec(5, d[60].astype(dt.date), 20, 20, 50)
    with pytest.raises(
        WalkForwardError, match=r"fold 0 \(test from .*\): 30 fit rows .* min_train_rows=50"
    ):
        plan_folds(d, tail_unlabelled(200, 5), spec)


def test_unsorted_dates_are_refused_with_the_rows():
    d = days(10)
    d[4], d[5] = d[5], d[4]
    with pytest.raises(WalkForwardError, match=r"strictly increasing: row 5 .* follows row 4"):
        plan_folds(d, np.ones(10, bool), WalkForwardSpec(1, dt.date(2001, 1, 5), 2, 1, 1))


def test_spec_rejects_non_positive_sizes():
    with pytest.raises(WalkForwardError, match="refit_step must be an integer >= 1"):
        WalkForwardSpec(5, refit_step=0)


def tiny_export(n: int = 60, h: int = 5) -> pl.DataFrame:
    rng = np.random.default_rng(3)
    price = 30 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    target = np.concatenate([price[h:], np.full(h, np.nan)])
    return pl.DataFrame(
        {
            "date": business_days(dt.date(2020, 1, 1), n),
            "price": price,
            "f_a": rng.normal(size=n),
            "f_b": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "market_regime": ["covid"] * n,
            "training_weight": np.full(n, 800.0),
            "target_1w": target,
            "as_of": [dt.date(2020, 3, 24)] * n,
        }
    ).with_columns(pl.col("target_1w").fill_nan(None), pl.col("f_b").fill_nan(None))


def test_training_data_label_is_the_log_return_to_the_target():
    export = tiny_export()
    data = training_data(export, "1w")
    assert data.features == ("f_a", "f_b")
    assert data.labelled.sum() == 55
    i = 7
    assert data.label[i] == pytest.approx(np.log(export["target_1w"][i] / export["price"][i]))
    assert np.isnan(data.label[-1]) and np.isnan(data.X[:, 1]).any()
    assert data.X.dtype == np.float32


def test_training_data_names_the_bad_column_and_rows():
    export = tiny_export().with_columns(
        pl.when(pl.int_range(pl.len()) == 9).then(-1.0).otherwise(pl.col("price")).alias("price")
    )
    with pytest.raises(
        WalkForwardError,
        match=r"x.parquet: column 'price' not positive/finite at 1 rows, e.g. 9 \(2020-01-14\)",
    ):
        training_data(export, "1w", "x.parquet")
    with pytest.raises(WalkForwardError, match=r"missing column\(s\) \['target_1w'\]"):
        training_data(tiny_export().drop("target_1w"), "1w")
    inf = tiny_export().with_columns(pl.lit(float("inf")).alias("f_a"))
    with pytest.raises(WalkForwardError, match="feature 'f_a' is infinite at 60 rows"):
        training_data(inf, "1w")


def test_prediction_columns_are_the_contract():
    assert PREDICTION_COLUMNS == (
        "date",
        "horizon",
        "family",
        "fold",
        "price",
        "y_true",
        "y_pred",
        "pred_return",
        "market_regime",
    )


def test_fold_lines_reach_progress_as_one_message_when_they_come_fast():
    from cbi_pipeline.core.progress import LineBatch

    seen: list[str] = []
    with LineBatch(seen.append) as lines:
        for i in range(5):
            lines.add(f"fold {i}")
    assert seen == ["fold 0\nfold 1\nfold 2\nfold 3\nfold 4"]
    seen.clear()
    with LineBatch(seen.append, every=0.0) as lines:  # slow work: every line as it comes
        lines.add("a")
        lines.add("b")
    assert seen == ["a", "b"]
    seen.clear()
    with pytest.raises(RuntimeError), LineBatch(seen.append) as lines:
        lines.add("before the failure")
        raise RuntimeError("fold 3 failed")
    assert seen == ["before the failure"]
