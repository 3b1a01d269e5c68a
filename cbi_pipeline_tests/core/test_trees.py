import datetime as dt
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core.hardware import detect_system, get_config_for_model
from cbi_pipeline.core.models.baselines import walk_forward_baseline
from cbi_pipeline.core.models.learners import walk_forward_trees
from cbi_pipeline.core.models.trees import (
    TreeSpec,
    TreeTrainingError,
    correlation_scores,
    fit_tree_model,
    library_params,
    load_tree_model,
    select_features,
)
from cbi_pipeline.core.walkforward import WalkForwardSpec, plan_folds, training_data
from cbi_pipeline_tests.conftest import business_days

H = 5


def synthetic_export(n: int = 400, seed: int = 0) -> pl.DataFrame:
    """Log return over the next 5 rows = 0.02 * signal + noise; 'noise_*' columns carry nothing."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    step = rng.normal(0, 0.004, n)
    log_price = np.log(30.0) + np.cumsum(step)
    # Shape the future path so that log(price[t+5] / price[t]) = 0.02 * signal[t] + small noise.
    for t in range(n - H):
        log_price[t + H] = log_price[t] + 0.02 * signal[t] + rng.normal(0, 0.002)
    price = np.exp(log_price)
    target = np.concatenate([price[H:], np.full(H, np.nan)])
    regime = np.where(np.arange(n) < n // 2, "precrisis", "policy")
    return pl.DataFrame(
        {
            "date": business_days(dt.date(2015, 1, 1), n),
            "price": price,
            "signal": signal,
            "noise_a": rng.normal(size=n),
            "noise_b": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)),
            "market_regime": regime,
            "training_weight": np.where(regime == "policy", 5000.0, 100.0),
            "target_1w": target,
        }
    ).with_columns(pl.col("target_1w", "noise_b").fill_nan(None))


def tree_spec(family: str, **overrides) -> TreeSpec:
    hyper = get_config_for_model(family, "1w", detect_system(cores=1, ram_gb=16, device="cpu"))
    hyper = {**hyper, "n_estimators": 300, "early_stopping_rounds": 20, **overrides}
    return TreeSpec(family, hyper, max_features=2, max_bin=32, seed=7)


def folds_for(data, first_row: int = 250):
    spec = WalkForwardSpec(H, data.dates[first_row].astype(dt.date), 50, 40, 100)
    return plan_folds(data.dates, data.labelled, spec)


def test_correlation_scores_match_a_naive_pairwise_loop():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 5))
    y = 0.7 * X[:, 0] - 0.2 * X[:, 3] + rng.normal(size=80)
    X[rng.random((80, 5)) < 0.2] = np.nan
    X[:, 2] = 4.0  # constant: no correlation defined
    X[:79, 4] = np.nan  # one finite value
    got = correlation_scores(X, y)
    for j in range(5):
        m = np.isfinite(X[:, j])
        if m.sum() < 2 or np.std(X[m, j]) == 0:
            assert got[j] == -1.0
        else:
            assert got[j] == pytest.approx(abs(np.corrcoef(X[m, j], y[m])[0, 1]), rel=1e-12)


def test_select_features_keeps_the_best_in_column_order():
    X = np.array([[1.0, 5.0, 1.0], [2.0, 1.0, 2.1], [3.0, 4.0, 2.9], [4.0, 2.0, 4.2]])
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert select_features(X, y, 2).tolist() == [0, 2]
    assert select_features(X, y, 0).tolist() == [0, 1, 2]
    assert select_features(X, y, 9).tolist() == [0, 1, 2]


@pytest.mark.parametrize("family", ["lightgbm", "xgboost"])
def test_trees_learn_the_signal_and_stop_early(family):
    data = training_data(synthetic_export(), "1w")
    folds = folds_for(data)
    run = walk_forward_trees(data, folds, tree_spec(family))
    p = run.result.predictions
    assert p.height == sum(f.test_rows.size for f in folds)
    truth = np.log(p["y_true"].to_numpy() / p["price"].to_numpy())
    assert np.corrcoef(p["pred_return"].to_numpy(), truth)[0, 1] > 0.8
    assert run.result.val_mape < 0.5 * run.result.random_walk_mape
    for record in run.result.folds:
        assert 1 <= record.info["trees"] <= record.info["rounds"] <= 300
        # Early stopping grows at most `patience` trees past the best one.
        assert record.info["rounds"] == min(300, record.info["trees"] + 20)
    assert run.final.trees == run.result.folds[-1].info["trees"]
    assert run.final.rounds == run.final.trees
    assert "signal" in run.final.features


@pytest.mark.parametrize("family", ["lightgbm", "xgboost"])
def test_refits_are_deterministic_and_the_saved_model_predicts_the_same(family):
    data = training_data(synthetic_export(), "1w")
    fold = folds_for(data)[0]
    a = fit_tree_model(data, tree_spec(family), fold.fit_rows, fold.validation_rows)
    b = fit_tree_model(data, tree_spec(family), fold.fit_rows, fold.validation_rows)
    test = data.X[fold.test_rows]
    assert np.array_equal(a.predict(test), b.predict(test))
    assert a.to_bytes() == b.to_bytes()
    loaded = load_tree_model(family, a.to_bytes())
    assert np.allclose(loaded(test[:, a.columns]), a.predict(test), rtol=0, atol=1e-7)


@pytest.mark.parametrize("family", ["lightgbm", "xgboost"])
def test_only_weight_ratios_matter(family):
    export = synthetic_export()
    data = training_data(export, "1w")
    scaled = training_data(export.with_columns(pl.col("training_weight") * 37.0), "1w")
    fold = folds_for(data)[0]
    a = fit_tree_model(data, tree_spec(family), fold.fit_rows, fold.validation_rows)
    b = fit_tree_model(scaled, tree_spec(family), fold.fit_rows, fold.validation_rows)
    assert np.array_equal(a.predict(data.X[fold.test_rows]), b.predict(data.X[fold.test_rows]))


@pytest.mark.parametrize("family", ["lightgbm", "xgboost"])
def test_a_fold_sees_nothing_at_or_after_its_test_origin(family):
    """Scrambling every label window that reaches the origin, and every feature from the origin
    on, leaves the fold's predictions for its own (unchanged) test features identical."""
    data = training_data(synthetic_export(), "1w")
    fold = folds_for(data)[1]
    s = fold.test_origin
    rng = np.random.default_rng(5)
    rows = np.arange(data.rows)
    label = np.where(rows + H >= s, rng.normal(0, 0.5, data.rows), data.label)
    X = data.X.copy()
    X[s:] = rng.normal(size=X[s:].shape).astype(np.float32)
    scrambled = replace(data, label=label, X=X)
    a = fit_tree_model(data, tree_spec(family), fold.fit_rows, fold.validation_rows)
    b = fit_tree_model(scrambled, tree_spec(family), fold.fit_rows, fold.validation_rows)
    assert a.features == b.features
    test = data.X[fold.test_rows]
    assert np.array_equal(a.predict(test), b.predict(test))


def test_feature_selection_uses_the_fit_rows_only():
    """A column that tracks the label only from the validation slice on is never selected, though a
    selection over fit and validation rows would take it."""
    data = training_data(synthetic_export(), "1w")
    fold = folds_for(data)[0]
    late = np.where(np.arange(data.rows) >= fold.validation_rows[0], data.label * 100, 0.0)
    X = np.column_stack([data.X, np.nan_to_num(late)]).astype(np.float32)
    leaky = replace(data, X=X, features=(*data.features, "late_leak"))
    both = np.concatenate([fold.fit_rows, fold.validation_rows])
    assert 3 in select_features(X[both], data.label[both], 2)  # the trap is real
    model = fit_tree_model(leaky, tree_spec("lightgbm"), fold.fit_rows, fold.validation_rows)
    assert "late_leak" not in model.features
    assert "signal" in model.features


def test_library_params_fix_seed_determinism_and_threads():
    lgb = library_params(tree_spec("lightgbm"))
    assert lgb["deterministic"] is True and lgb["force_row_wise"] is True
    assert lgb["seed"] == 7 and lgb["num_threads"] == 1 and lgb["max_bin"] == 32
    assert lgb["num_leaves"] == 31 and lgb["max_depth"] == 6 and lgb["learning_rate"] == 0.05
    assert "n_estimators" not in lgb and "horizon_days" not in lgb
    xgb = library_params(tree_spec("xgboost"))
    assert xgb["seed"] == 7 and xgb["nthread"] == 1 and xgb["max_depth"] == 8
    assert xgb["tree_method"] == "hist" and "n_jobs" not in xgb


def test_tree_spec_rejects_unknown_family_and_missing_rounds():
    with pytest.raises(TreeTrainingError, match="unknown tree family 'catboost'"):
        TreeSpec("catboost", {"n_estimators": 1, "early_stopping_rounds": 1})
    with pytest.raises(TreeTrainingError, match="early_stopping_rounds must be an integer >= 1"):
        TreeSpec("lightgbm", {"n_estimators": 10})


def test_baselines_on_the_same_folds():
    data = training_data(synthetic_export(), "1w")
    folds = folds_for(data)
    rw = walk_forward_baseline(data, folds, "random_walk").predictions
    assert rw["y_pred"].to_list() == rw["price"].to_list()
    assert (rw["pred_return"] == 0).all()
    drift = walk_forward_baseline(data, folds, "drift").predictions
    for fold in folds:
        rows = [i for i in range(data.rows) if data.labelled[i] and i + H < fold.test_origin]
        mu = sum(float(np.log(data.target[i] / data.price[i])) for i in rows) / len(rows)
        got = drift.filter(pl.col("fold") == fold.index)["pred_return"]
        assert got.n_unique() == 1 and got[0] == pytest.approx(mu, rel=1e-12)
