import datetime as dt
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbi_pipeline.core.metrics import mape
from cbi_pipeline.core.models.baselines import walk_forward_baseline
from cbi_pipeline.core.models.ets import (
    ETS_MODEL,
    EtsError,
    EtsFit,
    damped_steps,
    ets_final_forecast,
    ets_final_return,
    ets_fit_from_model,
    ets_fold,
    ets_forecast,
    ets_states,
    fit_ets,
)
from cbi_pipeline.core.vocabulary import ETS, RANDOM_WALK, horizon_days, target_column
from cbi_pipeline.core.walkforward import WalkForwardSpec, plan_folds, training_data
from cbi_pipeline_tests.conftest import business_days


def local_level_prices(n: int, seed: int, noise: float = 0.01, step: float = 0.01) -> np.ndarray:
    """Log price = random-walk level + iid noise: exponential smoothing with alpha < 1 fits it."""
    rng = np.random.default_rng(seed)
    level = np.log(30.0) + np.cumsum(rng.normal(0.0005, step, n))
    return np.exp(level + rng.normal(0.0, noise, n))


def damped_trend_prices(n: int, seed: int) -> np.ndarray:
    """Log returns = a mean-reverting (AR(1), 0.95) trend + noise: AutoETS picks ETS(A,Ad,N)."""
    rng = np.random.default_rng(seed)
    trend = np.zeros(n)
    for t in range(1, n):
        trend[t] = 0.95 * trend[t - 1] + rng.normal(0.0, 0.002)
    return 30.0 * np.exp(np.cumsum(trend + rng.normal(0.0, 0.003, n)))


def export_of(price: np.ndarray, horizon: str) -> pl.DataFrame:
    h, n = horizon_days(horizon), price.size
    target = np.concatenate([price[h:], np.full(h, np.nan)])
    return pl.DataFrame(
        {
            "date": business_days(dt.date(2012, 1, 2), n),
            "price": price,
            "feature_a": np.linspace(0.0, 1.0, n),
            "market_regime": ["policy"] * n,
            "training_weight": np.full(n, 5000.0),
            target_column(horizon): target,
        }
    ).with_columns(pl.col(target_column(horizon)).fill_nan(None))


def folds_of(data, first_row: int, step: int, validation: int = 20, min_train: int = 50):
    spec = WalkForwardSpec(
        data.horizon_days, data.dates[first_row].astype(dt.date), step, validation, min_train
    )
    return plan_folds(data.dates, data.labelled, spec)


def sf_return(y_fit: np.ndarray, y_upto: np.ndarray, h: int) -> float:
    """The oracle: AutoETS fitted on ``y_fit``, statsforecast's own filter run over ``y_upto``,
    and the textbook h-step sum ``l + (phi + ... + phi**h) b`` (a loop) from its last state,
    as a log return from ``y_upto[-1]``."""
    from statsforecast.ets import forward_ets
    from statsforecast.models import AutoETS

    model = AutoETS(season_length=1, model=ETS_MODEL).fit(y_fit).model_
    state = forward_ets(model, y_upto)["states"][-1]
    trend = state[1] if model["components"][1] == "A" else 0.0
    phi = model["par"][3] if model["components"][3] == "D" else 1.0
    weight, power = 0.0, 1.0
    for _ in range(h):
        power *= phi
        weight += power
    return float(state[0] + weight * trend - y_upto[-1])


# --- the recursion ------------------------------------------------------------------------------


def test_ets_states_match_hand_computed_cases():
    # ANN, alpha 0.5 from level 1: 1 + .5 * (2 - 1) = 1.5; 1.5 + .5 * .5 = 1.75; 1.75 + .5 * 2.25.
    ann = EtsFit("ETS(A,N,N)", 0.5, 0.0, 1.0, 1.0, 0.0, 3)
    level, trend = ets_states(ann, np.array([2.0, 2.0, 4.0]))
    assert level.tolist() == [1.5, 1.75, 2.875] and trend.tolist() == [0.0, 0.0, 0.0]
    assert ets_forecast(ann, level, trend, 21).tolist() == [1.5, 1.75, 2.875]
    # AAN from (0, 1): f = 1, e = 1, l = 1 + .5 = 1.5, b = 1 + .25 = 1.25; 2 steps: 1.5 + 2.5 = 4.
    aan = EtsFit("ETS(A,A,N)", 0.5, 0.25, 1.0, 0.0, 1.0, 1)
    level, trend = ets_states(aan, np.array([2.0]))
    assert (level[0], trend[0]) == (1.5, 1.25)
    assert ets_forecast(aan, level, trend, 2)[0] == 4.0
    # AAdN, phi .5: f = .5, e = 1.5, l = .5 + .75 = 1.25, b = .5 + .375 = .875;
    # 2 steps: 1.25 + (.5 + .25) * .875 = 1.90625.
    aadn = EtsFit("ETS(A,Ad,N)", 0.5, 0.25, 0.5, 0.0, 1.0, 1)
    level, trend = ets_states(aadn, np.array([2.0]))
    assert (level[0], trend[0]) == (1.25, 0.875)
    assert ets_forecast(aadn, level, trend, 2)[0] == 1.90625


def test_damped_steps_equals_a_loop_and_is_h_without_damping():
    for phi in (1.0, 0.98, 0.5):
        for h in (1, 5, 252):
            total, power = 0.0, 1.0
            for _ in range(h):
                power *= phi
                total += power
            assert damped_steps(phi, h) == pytest.approx(total, rel=1e-12)
    assert damped_steps(1.0, 63) == 63.0


@pytest.mark.parametrize(
    ("model", "damped", "method"),
    [("ANN", None, "ETS(A,N,N)"), ("AAN", False, "ETS(A,A,N)"), ("AAN", True, "ETS(A,Ad,N)")],
)
def test_states_run_forward_equal_statsforecast_states_and_forecasts(model, damped, method):
    from statsforecast.ets import forward_ets
    from statsforecast.models import AutoETS

    y = np.log(local_level_prices(260, seed=3))
    fitted = AutoETS(season_length=1, model=model, damped=damped).fit(y[:200])
    fit = ets_fit_from_model(fitted.model_, 200)
    assert fit.method == method and fit == fit_ets(y[:200], model, damped)
    level, trend = ets_states(fit, y)
    states = forward_ets(fitted.model_, y)["states"][1:]  # row t: after y[0..t]
    assert np.allclose(level, states[:, 0], rtol=0, atol=1e-12)
    assert np.allclose(trend, states[:, 1] if model == "AAN" else 0.0, rtol=0, atol=1e-12)
    # statsforecast's public forward agrees one step ahead, and at any horizon without damping
    # (its damped multi-step sum differs from the textbook one: see core/models/ets.py).
    for h in (1, 21) if not damped else (1,):
        ours = ets_forecast(fit, level, trend, h)
        for t in range(150, 260, 7):
            theirs = float(fitted.forward(y[: t + 1], h)["mean"][-1])
            assert ours[t] == pytest.approx(theirs, abs=1e-10)


@pytest.mark.parametrize(
    ("price", "method"),
    [(local_level_prices(300, seed=5), "ETS(A,N,N)"), (damped_trend_prices(300, 0), "ETS(A,Ad,N)")],
)
def test_ets_fold_equals_statsforecast_fit_at_the_origin_and_filter_to_each_test_origin(
    price, method
):
    data = training_data(export_of(price, "1w"), "1w")
    fold = folds_of(data, 200, 40)[1]
    got = ets_fold(data, fold)
    assert got.info["ets_model"] == method
    y = np.log(data.price)
    s = fold.test_origin
    for i in (0, 17, fold.test_rows.size - 1):
        t = int(fold.test_rows[i])
        assert got.pred_return[i] == pytest.approx(sf_return(y[: s + 1], y[: t + 1], 5), abs=1e-10)
    assert got.info["ets_fit_rows"] == s + 1
    assert got.info["ets_fit_prices"] == [str(data.dates[0]), str(data.dates[s])]


# --- causality (the purge of a model that reads prices) -----------------------------------------

CAUSAL_DATA = training_data(export_of(damped_trend_prices(300, seed=0), "1w"), "1w")
CAUSAL_FOLDS = folds_of(CAUSAL_DATA, 200, 40)


def perturbed(data, after_row: int, seed: int):
    """The same export with every price after ``after_row`` multiplied by a random factor."""
    rng = np.random.default_rng(seed)
    price = data.price.copy()
    price[after_row + 1 :] *= np.exp(rng.normal(0.0, 0.05, price.size - after_row - 1))
    return training_data(export_of(price, data.horizon), data.horizon)


@settings(max_examples=25, deadline=None)
@given(fold_index=st.integers(0, 2), position=st.floats(0.0, 1.0), seed=st.integers(0, 10**6))
def test_prices_after_an_origin_never_change_its_forecast_or_the_folds_parameters(
    fold_index, position, seed
):
    fold = CAUSAL_FOLDS[fold_index]
    k = int(position * (fold.test_rows.size - 1))
    t = int(fold.test_rows[k])
    base = ets_fold(CAUSAL_DATA, fold)
    after_t = ets_fold(perturbed(CAUSAL_DATA, t, seed), fold)
    assert after_t.pred_return[: k + 1].tolist() == base.pred_return[: k + 1].tolist()
    assert after_t.info == base.info
    after_origin = ets_fold(perturbed(CAUSAL_DATA, fold.test_origin, seed), fold)
    assert after_origin.info == base.info
    assert after_origin.pred_return[0] == base.pred_return[0]


def test_the_price_at_the_origin_does_change_the_forecast():
    fold = CAUSAL_FOLDS[1]
    t = int(fold.test_rows[10])
    base = ets_fold(CAUSAL_DATA, fold)
    moved = ets_fold(perturbed(CAUSAL_DATA, t - 1, seed=1), fold)
    assert moved.pred_return[10] != base.pred_return[10]
    assert moved.pred_return[:10].tolist() == base.pred_return[:10].tolist()


# --- the family on the walk-forward ---------------------------------------------------------------


def test_ets_mape_is_within_one_percent_of_the_random_walk_on_a_simulated_random_walk():
    rng = np.random.default_rng(2024)
    price = 30.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, 1400)))
    data = training_data(export_of(price, "1m"), "1m")
    folds = folds_of(data, 800, 126, validation=63, min_train=252)
    ets = walk_forward_baseline(data, folds, ETS).predictions
    rw = walk_forward_baseline(data, folds, RANDOM_WALK).predictions
    ratio = mape(ets["y_true"], ets["y_pred"]) / mape(rw["y_true"], rw["y_pred"])
    assert abs(ratio - 1.0) < 0.01, ratio


def test_walk_forward_ets_is_finite_shaped_like_the_folds_and_deterministic():
    data = training_data(export_of(local_level_prices(300, seed=5), "1w"), "1w")
    folds = folds_of(data, 200, 40)
    first = walk_forward_baseline(data, folds, ETS)
    again = walk_forward_baseline(data, folds, ETS)
    assert first.predictions.equals(again.predictions)
    preds = first.predictions
    assert preds.height == sum(f.test_rows.size for f in folds)
    assert preds["date"].to_list() == [
        data.dates[r].astype(dt.date) for f in folds for r in f.test_rows
    ]
    assert np.isfinite(preds["pred_return"].to_numpy()).all()
    assert (preds["family"] == ETS).all()
    assert [r.info["ets_fit_rows"] for r in first.folds] == [f.test_origin + 1 for f in folds]


def test_ets_final_return_forecasts_from_the_last_row_with_every_price():
    price = local_level_prices(300, seed=8)
    data = training_data(export_of(price, "1w"), "1w")
    y = np.log(price)
    final = ets_final_forecast(data)
    assert final.pred_return == pytest.approx(sf_return(y, y, 5), abs=1e-10)
    assert ets_final_return(data) == final.pred_return
    assert final.fit.fit_rows == 300 and final.origin == str(data.dates[-1])
    # The last row has no target, but its price is known tonight and is used.
    moved = price.copy()
    moved[-1] *= 1.03
    assert ets_final_return(training_data(export_of(moved, "1w"), "1w")) != final.pred_return


# --- errors and laziness --------------------------------------------------------------------------


def test_fit_ets_says_what_it_could_not_fit():
    with pytest.raises(EtsError, match="could not be fitted to 4 observations"):
        fit_ets(np.array([1.0, 1.1, 1.05, 1.2]))
    with pytest.raises(EtsError, match="one-dimensional finite series"):
        fit_ets(np.array([1.0, np.nan, 1.2]))
    with pytest.raises(EtsError, match="components 'MNNN'"):
        ets_fit_from_model({"components": "MNNN", "method": "ETS(M,N,N)", "par": []}, 10)


def test_importing_the_baselines_does_not_import_statsforecast():
    code = (
        "import sys, cbi_pipeline.core.models.baselines; "
        "assert 'statsforecast' not in sys.modules, 'statsforecast imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
