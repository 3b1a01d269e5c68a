"""Tuning: folds that never reach the test period (a property), a poisoned test period that
changes nothing, the objective against a naive loop, the searched keys reaching the libraries,
pruning, and precise errors."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbi_pipeline.core.export import feature_columns
from cbi_pipeline.core.hardware import detect_system, get_config_for_model
from cbi_pipeline.core.models.neural.spec import neural_spec, spec_parameters
from cbi_pipeline.core.models.trees import TreeSpec, library_params
from cbi_pipeline.core.tuning import (
    SEARCH_SPACES,
    TuningError,
    TuningSpec,
    check_params,
    neural_predictor,
    prefix_data,
    rows_needed,
    rows_sha256,
    tree_predictor,
    tune,
    tuning_plan,
    walk_forward_error,
)
from cbi_pipeline.core.walkforward import FoldFit, WalkForwardSpec, training_data
from cbi_pipeline_tests.conftest import business_days, random_walk_export

SYSTEM = detect_system(cores=1, ram_gb=16, device="cpu")


def days(n: int) -> np.ndarray:
    return np.asarray(business_days(dt.date(2001, 1, 1), n), dtype="datetime64[D]")


@st.composite
def plans(draw):
    n = draw(st.integers(30, 500))
    h = draw(st.integers(1, 40))
    spec = dict(
        refit_step=draw(st.integers(1, 60)),
        validation_rows=draw(st.integers(1, 40)),
        min_train_rows=draw(st.integers(1, 60)),
    )
    first = draw(st.integers(0, n + 5))  # may fall after the last row
    blocks = draw(st.integers(1, 3))
    labelled = np.ones(n, bool)
    labelled[max(0, n - h) :] = False
    labelled[draw(st.lists(st.integers(0, n - 1), max_size=8))] = False
    return n, h, spec, first, blocks, labelled


@settings(max_examples=300, deadline=None)
@given(plans())
def test_no_tuning_fold_fits_validates_or_tests_on_a_row_or_label_of_the_test_period(case):
    n, h, spec_args, first, blocks, labelled = case
    d = days(n + 10)
    first_date = d[first].astype(dt.date)
    d = d[:n]
    spec = WalkForwardSpec(h, first_date, **spec_args)
    try:
        plan = tuning_plan(d, labelled, spec, blocks)
    except TuningError as exc:
        # Only where the rows before the first test date cannot hold the blocks (or holes in
        # the labels leave a fold too few rows), and then it says how many rows it needs.
        first_row = int(np.searchsorted(d, np.datetime64(first_date)))
        if first_row < rows_needed(spec, blocks):
            assert f"tuning needs {rows_needed(spec, blocks)} rows" in str(exc)
        else:  # enough rows: only label holes can leave a fold short
            assert not labelled[: first_row - h].all()
            assert f"no tuning folds on the {first_row - h} rows before" in str(exc)
        return
    assert plan.folds and plan.rows + h == plan.first_test_row
    for fold in plan.folds:
        for rows in (fold.fit_rows, fold.validation_rows, fold.test_rows):
            assert rows.size
            assert (d[rows] < np.datetime64(first_date)).all()  # dated before the first test
            assert (rows + h < plan.first_test_row).all()  # the label window too
            assert (d[rows + h] < np.datetime64(first_date)).all()
            assert rows.max() < plan.rows  # inside the prefix handed to a predictor
        # the project's purges hold inside the tuning folds as well
        assert fold.fit_rows.max() + h < fold.validation_rows.min()
        assert fold.validation_rows.max() + h < fold.test_rows.min()
    # the test blocks are among the last `blocks` refit steps before the cut (a block whose
    # rows are all unlabelled has no test rows and no fold)
    starts = {plan.rows - k * spec.refit_step for k in range(1, blocks + 1)}
    assert {fold.test_origin for fold in plan.folds} <= starts
    assert len(plan.folds) <= blocks


def test_too_early_a_first_test_date_says_how_many_rows_are_needed():
    d = days(600)
    spec = WalkForwardSpec(21, d[400].astype(dt.date), 252, 252, 504)
    with pytest.raises(TuningError, match=r"tuning needs 1575 rows .* the data has 400"):
        tuning_plan(d, np.ones(600, bool), spec, blocks=3)


def test_unknown_family_and_too_few_trials_are_precise_errors():
    with pytest.raises(TuningError, match=r"unknown family 'prophet'.*lightgbm, xgboost"):
        TuningSpec("prophet", trials=5)
    with pytest.raises(TuningError, match="trials must be an integer >= 1, got 0"):
        TuningSpec("lightgbm", trials=0)
    with pytest.raises(TuningError, match="blocks must be an integer >= 1"):
        TuningSpec("xgboost", trials=3, blocks=0)


def test_stored_parameters_are_checked_against_the_search_space():
    assert check_params("lightgbm", {"num_leaves": 15, "lambda_l2": 1}, "f.json") == {
        "num_leaves": 15,
        "lambda_l2": 1,
    }
    with pytest.raises(TuningError, match=r"f.json: unknown lightgbm parameter\(s\) \['leaves'\]"):
        check_params("lightgbm", {"leaves": 15}, "f.json")
    with pytest.raises(TuningError, match="num_leaves = 1000 is outside the search range"):
        check_params("lightgbm", {"num_leaves": 1000}, "f.json")
    with pytest.raises(TuningError, match=r"num_layers = 1\.5 is not an integer"):
        check_params("gru", {"num_layers": 1.5}, "f.json")
    with pytest.raises(TuningError, match="dropout = True is not a number"):
        check_params("lstm", {"dropout": True}, "f.json")


@pytest.mark.parametrize("family", sorted(SEARCH_SPACES))
def test_every_searched_key_reaches_the_training_path(family):
    """A tuned key that training dropped would tune nothing: each one arrives in the library's
    parameters (trees) or the network's spec (lstm, gru) with the value given."""
    params = {
        name: int(d.high) if d.integer else float(d.high)
        for name, d in SEARCH_SPACES[family].items()
    }
    hyper = {**get_config_for_model(family, "1m", SYSTEM), **params}
    if family in ("lightgbm", "xgboost"):
        got = library_params(TreeSpec(family, hyper))
    else:
        got = spec_parameters(neural_spec(family, hyper))
    assert {k: got[k] for k in params} == params


def test_the_objective_is_the_pooled_mape_of_a_naive_loop():
    data = training_data(random_walk_export(400, seed=1, horizon="1w"), "1w")
    spec = WalkForwardSpec(5, data.dates[300].astype(dt.date), 30, 20, 50)
    plan = tuning_plan(data.dates, data.labelled, spec, blocks=3)
    rng = np.random.default_rng(0)

    def predict(d, fold):
        return FoldFit(rng.normal(0, 0.01, fold.test_rows.size))

    seen = []
    value, per_fold = walk_forward_error(
        prefix_data(data, plan.rows), plan.folds, predict, lambda *a: seen.append(a)
    )
    rng = np.random.default_rng(0)
    naive, total = [], []
    for fold in plan.folds:
        draws = rng.normal(0, 0.01, fold.test_rows.size)
        e = [
            abs(data.target[r] - data.price[r] * np.exp(x)) / data.target[r] * 100
            for r, x in zip(fold.test_rows, draws, strict=True)
        ]
        total += e
        naive.append((sum(total) / len(total), sum(e) / len(e)))
    assert value == pytest.approx(naive[-1][0], rel=1e-12)
    assert per_fold == pytest.approx([f for _, f in naive], rel=1e-12)
    assert [s[1] for s in seen] == pytest.approx([p for p, _ in naive], rel=1e-12)
    assert [s[0] for s in seen] == list(range(len(plan.folds)))


TINY_TREES = {"n_estimators": 40, "early_stopping_rounds": 10, "num_threads": 1}


def tiny_build(params):
    return tree_predictor(
        TreeSpec("lightgbm", {**TINY_TREES, **params}, max_features=8, max_bin=16, seed=3)
    )


def scored(record):
    """A trial without its timing."""
    return record.number, record.state, record.params, record.value, record.fold_values


def poisoned(frame: pl.DataFrame, first: dt.date) -> pl.DataFrame:
    """Every feature, label and price on/after ``first`` replaced: NaN or 1e30 for features,
    1e9 for prices and targets (still valid inputs, so only a leak could notice)."""
    after = pl.col("date") >= first
    features = feature_columns(frame)
    return frame.with_columns(
        *[
            pl.when(after).then(None if i % 2 else 1e30).otherwise(pl.col(c)).alias(c)
            for i, c in enumerate(features)
        ],
        pl.when(after).then(1e9).otherwise(pl.col("price")).alias("price"),
        pl.when(after).then(1e9).otherwise(pl.col("target_1w")).alias("target_1w"),
    )


def test_a_poisoned_test_period_changes_no_tuning_result():
    frame = random_walk_export(700, seed=5, horizon="1w")
    first = frame["date"][560]
    spec = WalkForwardSpec(5, first, refit_step=40, validation_rows=40, min_train_rows=100)
    tspec = TuningSpec("lightgbm", trials=4, seed=3, blocks=2)
    clean = tune(training_data(frame, "1w"), spec, tspec, tiny_build)
    dirty_data = training_data(poisoned(frame, first), "1w")
    dirty = tune(dirty_data, spec, tspec, tiny_build)
    assert scored(clean.baseline) == scored(dirty.baseline)
    assert [scored(t) for t in clean.trials] == [scored(t) for t in dirty.trials]
    assert scored(clean.best) == scored(dirty.best) and clean.params == dirty.params
    assert rows_sha256(training_data(frame, "1w"), clean.plan.rows) == rows_sha256(
        dirty_data, dirty.plan.rows
    )
    # The poison has teeth: the same change one tuning row earlier changes the result.
    last_tuning_row = frame["date"][clean.plan.rows - 1]
    leaky = training_data(poisoned(frame, last_tuning_row), "1w")
    leaked, _ = walk_forward_error(
        prefix_data(leaky, clean.plan.rows), clean.plan.folds, tiny_build({})
    )
    assert leaked != clean.baseline.value


def test_the_study_is_seeded_prunes_after_a_fold_and_finds_a_planted_optimum():
    data = training_data(random_walk_export(500, seed=2, horizon="1w"), "1w")
    spec = WalkForwardSpec(5, data.dates[420].astype(dt.date), 30, 20, 50)

    def build(params):
        bias = (params.get("learning_rate", 0.05) - 0.05) * 2  # best at the default's 0.05

        def predict(d, fold):
            return FoldFit(np.full(fold.test_rows.size, bias))

        return predict

    tspec = TuningSpec("lightgbm", trials=16, seed=11, blocks=3)
    first, again = tune(data, spec, tspec, build), tune(data, spec, tspec, build)
    assert [scored(t) for t in first.trials] == [scored(t) for t in again.trials]  # the seed
    pruned = [t for t in first.trials if t.state == "pruned"]
    assert pruned and all(t.value is None and len(t.fold_values) < 3 for t in pruned)
    complete = [t for t in first.trials if t.state == "complete"]
    assert all(len(t.fold_values) == 3 for t in complete)
    assert first.best.value == min(t.value for t in complete)
    assert abs(first.best.params["learning_rate"] - 0.05) < 0.03
    # the defaults are the planted optimum: no trial beats them, so training keeps them
    assert first.baseline.value <= first.best.value and first.params == {}


def test_a_network_is_tuned_through_the_spec_training_builds():
    data = training_data(random_walk_export(360, seed=4, horizon="1w"), "1w")
    spec = WalkForwardSpec(5, data.dates[330].astype(dt.date), 20, 20, 60)
    hyper = {
        **get_config_for_model("gru", "1w", SYSTEM),
        "max_epochs": 2,
        "sequence_length": 8,
        "batch_size": 32,
        "max_features": 8,
    }
    built = []

    def build(params):
        built.append(neural_spec("gru", {**hyper, **params}, {"seed": 1}))
        return neural_predictor(built[-1])

    result = tune(data, spec, TuningSpec("gru", trials=2, seed=1, blocks=2), build)
    assert built[0].hidden_size == 32  # the defaults first, then each trial's parameters
    for trial, net in zip(result.trials, built[1:], strict=True):
        assert trial.value is not None and len(trial.fold_values) == 2
        assert {k: getattr(net, k) for k in trial.params} == trial.params
