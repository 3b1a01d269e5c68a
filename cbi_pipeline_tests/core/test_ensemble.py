import dataclasses
import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbi_pipeline.core.metrics import mape
from cbi_pipeline.core.models.ensemble import (
    EnsembleError,
    EnsembleSpec,
    combination_weights,
    shrinkage,
    simplex_least_squares,
    track_record,
    walk_forward_ensemble,
)
from cbi_pipeline.core.probabilistic import diebold_mariano
from cbi_pipeline.core.vocabulary import DRIFT, ENSEMBLE, LIGHTGBM, RANDOM_WALK, XGBOOST
from cbi_pipeline.core.walkforward import (
    PREDICTION_COLUMNS,
    TrainingData,
    WalkForwardSpec,
    plan_folds,
    prediction_frame,
    training_data,
)
from cbi_pipeline_tests.conftest import business_days

# --- helpers ------------------------------------------------------------------------------------


def sq_error(R, y, w):
    """The objective as a plain loop: sum over rows of (label - combined return)**2."""
    total = 0.0
    for i in range(len(y)):
        combined = 0.0
        for f in range(len(w)):
            combined += w[f] * R[i][f]
        total += (y[i] - combined) ** 2
    return total


def with_rw(*columns):
    """A member matrix with the random walk (zeros) as column 0."""
    cols = [np.asarray(c, float) for c in columns]
    return np.column_stack([np.zeros(cols[0].size), *cols])


def export_frame(n, seed, horizon="1w", h=5, vol=0.015):
    """A tiny export whose price is a seeded random walk; target = price h rows later."""
    rng = np.random.default_rng(seed)
    price = 40.0 * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    target = [float(price[i + h]) if i + h < n else None for i in range(n)]
    return pl.DataFrame(
        {
            "date": business_days(dt.date(2001, 1, 1), n),
            "price": price,
            "x": rng.normal(size=n),
            "market_regime": ["recovery"] * n,
            "training_weight": np.ones(n),
            f"target_{horizon}": target,
        }
    )


def direct_data(price, h, target=None):
    """TrainingData built directly (any h): target = price h rows later unless given."""
    n = price.size
    if target is None:
        target = np.full(n, np.nan)
        target[: n - h] = price[h:]
    labelled = ~np.isnan(target)
    label = np.full(n, np.nan)
    label[labelled] = np.log(target[labelled] / price[labelled])
    return TrainingData(
        horizon="1w",
        horizon_days=h,
        dates=np.asarray(business_days(dt.date(2001, 1, 1), n), dtype="datetime64[D]"),
        price=price,
        target=target,
        label=label,
        weight=np.ones(n),
        regime=np.array(["recovery"] * n, dtype=object),
        features=("x",),
        X=np.zeros((n, 1), np.float32),
        labelled=labelled,
    )


def oof_rows(data, first_row, step, validation=3, min_train=3):
    spec = WalkForwardSpec(
        data.horizon_days,
        data.dates[first_row].astype(dt.date),
        refit_step=step,
        validation_rows=validation,
        min_train_rows=min_train,
    )
    folds = plan_folds(data.dates, data.labelled, spec)
    rows = np.concatenate([f.test_rows for f in folds])
    fold_of = np.concatenate([np.full(f.test_rows.size, f.index) for f in folds])
    return rows, fold_of


def member_frames(data, rows, fold_of, preds):
    """Members in the prediction_frame contract: random walk (zeros) plus the given returns."""
    frames = {RANDOM_WALK: prediction_frame(data, rows, fold_of, np.zeros(rows.size), RANDOM_WALK)}
    for family, pred in preds.items():
        frames[family] = prediction_frame(data, rows, fold_of, np.asarray(pred, float), family)
    return frames


# --- combination_weights ------------------------------------------------------------------------


def test_hand_computed_single_member_weights_and_shrinkage():
    # r = [1, 2], y = [1, 1]: unshrunk w1 = sum(r y) / sum(r^2) = 3 / 5 = 0.6 (inside [0, 1]).
    R = with_rw([1.0, 2.0])
    y = np.array([1.0, 1.0])
    np.testing.assert_allclose(simplex_least_squares(R, y), [0.4, 0.6], atol=1e-12)
    # n = 2, h = 1, shrinkage 2 periods: lam = 2 / (2 + 2) = 0.5 -> 0.5 [0.4, 0.6] + 0.5 [1, 0].
    w = combination_weights(R, y, 1, EnsembleSpec(shrinkage_periods=2.0))
    np.testing.assert_allclose(w, [0.7, 0.3], atol=1e-12)


def test_shrinkage_formula_by_hand():
    # n = 40 rows at h = 4 -> 10 independent periods; with 20 prior periods lam = 10 / 30.
    assert shrinkage(40, 4, EnsembleSpec(20.0)) == pytest.approx(1 / 3)
    assert shrinkage(63, 63, EnsembleSpec(1.0)) == pytest.approx(0.5)
    assert shrinkage(5, 1, EnsembleSpec(0.0)) == 1.0
    assert shrinkage(0, 5, EnsembleSpec(20.0)) == 0.0
    # A member equal to the label: w_ls = e_1, so the shrunk weights are [1 - lam, lam, 0].
    rng = np.random.default_rng(0)
    y = rng.normal(0, 0.02, 40)
    R = with_rw(y, rng.normal(0, 0.02, 40))
    np.testing.assert_allclose(
        combination_weights(R, y, 4, EnsembleSpec(20.0)), [2 / 3, 1 / 3, 0.0], atol=1e-9
    )


def test_no_rows_give_all_weight_to_the_random_walk():
    R = np.zeros((0, 3))
    w = combination_weights(R, np.zeros(0), 5, EnsembleSpec())
    assert w.tolist() == [1.0, 0.0, 0.0]
    assert simplex_least_squares(R, np.zeros(0)).tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("seed", range(6))
def test_simplex_solution_matches_a_brute_force_grid(seed):
    # Three members (random walk + two), 12 rows; the grid has step 1/200 over the simplex.
    rng = np.random.default_rng(seed)
    n = 12
    a, b = rng.normal(0, 1, n), rng.normal(0, 1, n)
    # seed-dependent label: interior optima, boundary optima (a member at 0) and vertices.
    y = rng.uniform(-1, 1) * a + rng.uniform(-1, 1) * b + rng.normal(0, 0.5, n)
    R = with_rw(a, b)
    steps = 200
    grid = [
        (1 - i / steps - j / steps, i / steps, j / steps)
        for i in range(steps + 1)
        for j in range(steps + 1 - i)
    ]
    values = [sq_error(R.tolist(), y.tolist(), w) for w in grid]
    best_grid = min(values)
    w = simplex_least_squares(R, y)
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0, abs=1e-12)
    solver = sq_error(R.tolist(), y.tolist(), w.tolist())
    # The exact minimum is at or below every grid point, and the grid comes close to it.
    assert solver <= best_grid + 1e-9
    assert best_grid - solver <= 1e-3 * solver
    # ... and the grid's argmin sits within a few steps of the exact minimiser
    np.testing.assert_allclose(grid[int(np.argmin(values))], w, atol=3 / steps)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 30),
    members=st.integers(1, 5),
    shrink=st.floats(0.0, 50.0),
    h=st.integers(1, 10),
)
def test_weights_lie_on_the_simplex_and_beat_every_other_simplex_point(seed, n, members, shrink, h):
    rng = np.random.default_rng(seed)
    R = with_rw(*(rng.normal(0, 1, n) for _ in range(members)))
    if members > 1 and seed % 3 == 0:
        R[:, 2] = R[:, 1]  # collinear members: a singular face
    y = rng.normal(0, 1, n) + R[:, 1] * rng.uniform(-1, 2)
    w_ls = simplex_least_squares(R, y)
    w = combination_weights(R, y, h, EnsembleSpec(shrink))
    for v in (w_ls, w):
        assert (v >= 0).all() and v.sum() == pytest.approx(1.0, abs=1e-12)
    lam = (n / h) / (n / h + shrink)
    np.testing.assert_allclose(w, lam * w_ls + (1 - lam) * np.eye(members + 1)[0], atol=1e-12)
    best = sq_error(R.tolist(), y.tolist(), w_ls.tolist())
    others = rng.dirichlet(np.ones(members + 1), size=50).tolist() + np.eye(members + 1).tolist()
    for other in others:
        assert best <= sq_error(R.tolist(), y.tolist(), other) + 1e-9 * (1 + best)


def test_a_member_equal_to_the_label_gets_nearly_all_weight_with_ample_evidence():
    rng = np.random.default_rng(3)
    n = 4000
    y = rng.normal(0, 0.03, n)
    R = with_rw(rng.normal(0, 0.03, n), y, y + rng.normal(0, 0.03, n))
    w = combination_weights(R, y, 1, EnsembleSpec(20.0))
    # lam = 4000 / 4020: the exact member keeps all of it.
    assert w[2] == pytest.approx(4000 / 4020, abs=1e-9)
    assert w[2] > 0.99


def test_combination_weights_reject_bad_inputs_precisely():
    with pytest.raises(EnsembleError, match=r"column 0 .* random walk"):
        combination_weights(np.ones((3, 2)), np.ones(3), 1, EnsembleSpec())
    with pytest.raises(EnsembleError, match=r"label must have shape \(3,\)"):
        combination_weights(np.zeros((3, 2)), np.ones(4), 1, EnsembleSpec())
    with pytest.raises(EnsembleError, match="finite"):
        combination_weights(np.zeros((2, 2)), np.array([1.0, np.nan]), 1, EnsembleSpec())
    with pytest.raises(EnsembleError, match="h must be an integer >= 1"):
        combination_weights(np.zeros((2, 2)), np.ones(2), 0, EnsembleSpec())
    with pytest.raises(EnsembleError, match="shrinkage_periods must be a finite number >= 0"):
        EnsembleSpec(shrinkage_periods=-1.0)


# --- walk_forward_ensemble ----------------------------------------------------------------------


def naive_earned(data, rows, proposal_preds, calib, spec):
    """The proposals' record beats the random walk's absolute percentage errors on ``calib`` with
    a one-sided Diebold–Mariano p-value below ``spec.departure_p`` (losses written as a loop)."""
    h = data.horizon_days
    if len(calib) <= 2 * h:
        return False
    ape, rw = [], []
    for j in calib:
        y = data.target[rows[j]]
        p0 = data.price[rows[j]]
        ape.append(abs(y - p0 * math.exp(proposal_preds[j])) / y * 100)
        rw.append(abs(y - p0) / y * 100)
    diffs = [a - b for a, b in zip(ape, rw, strict=True)]
    if max(diffs) == min(diffs):
        return False
    return diebold_mariano(ape, rw, h).p_value < spec.departure_p


def naive_ensemble(data, rows, fold_of, R, spec):
    """The purge, the combination and the earned-departure rule written as plain loops."""
    h = data.horizon_days
    weights, preds, proposal_preds = {}, {}, {}
    rw_only = np.eye(R.shape[1])[0]
    for k in sorted(set(fold_of.tolist())):
        own = [j for j in range(rows.size) if fold_of[j] == k]
        origin = min(rows[j] for j in own)
        calib = [j for j in range(rows.size) if fold_of[j] < k and rows[j] + h < origin]
        proposal = combination_weights(R[calib], data.label[rows[calib]], h, spec)
        for j in own:
            proposal_preds[j] = sum(proposal[f] * R[j, f] for f in range(R.shape[1]))
        w = proposal if naive_earned(data, rows, proposal_preds, calib, spec) else rw_only
        weights[k] = w
        for j in own:
            preds[int(rows[j])] = sum(w[f] * R[j, f] for f in range(R.shape[1]))
    final = [j for j in range(rows.size) if rows[j] + h <= data.rows - 1]
    final_w = combination_weights(R[final], data.label[rows[final]], h, spec)
    if not naive_earned(data, rows, proposal_preds, final, spec):
        final_w = rw_only
    return weights, preds, final_w


def test_walk_forward_ensemble_equals_the_naive_loop():
    data = training_data(export_frame(160, seed=1), "1w")
    rows, fold_of = oof_rows(data, 60, 20)
    rng = np.random.default_rng(2)
    noisy = data.label[rows] + rng.normal(0, 0.005, rows.size)
    preds = {DRIFT: np.full(rows.size, 0.001), LIGHTGBM: noisy, XGBOOST: -noisy}
    # mapping order does not matter: the random walk first, then the vocabulary's order
    members = member_frames(data, rows, fold_of, dict(reversed(preds.items())))
    members[LIGHTGBM] = members[LIGHTGBM].with_columns(pl.lit(1.0).alias("q2.5"))  # ignored
    spec = EnsembleSpec(5.0)
    run = walk_forward_ensemble(members, data, spec)
    assert run.members == (RANDOM_WALK, DRIFT, LIGHTGBM, XGBOOST)
    R = np.column_stack([np.zeros(rows.size), *preds.values()])
    weights, naive_preds, naive_final = naive_ensemble(data, rows, fold_of, R, spec)
    earned = [r.info["earned"] for r in run.result.folds]
    assert earned[:2] == [False, False]  # no record yet: the random walk
    assert any(earned)  # a member close to the label earns its departure

    p = run.result.predictions
    assert run.result.family == ENSEMBLE
    assert tuple(p.columns) == PREDICTION_COLUMNS
    assert p["family"].unique().to_list() == [ENSEMBLE]
    assert p["fold"].to_list() == fold_of.tolist()
    assert p["date"].to_list() == data.dates[rows].astype(dt.date).tolist()
    np.testing.assert_allclose(p["pred_return"].to_numpy(), [naive_preds[int(r)] for r in rows])
    np.testing.assert_allclose(
        p["y_pred"].to_numpy(), data.price[rows] * np.exp(p["pred_return"].to_numpy())
    )
    assert len(run.fold_weights) == len(run.result.folds) == len(weights)
    assert run.fold_weights[0] == {RANDOM_WALK: 1.0, DRIFT: 0.0, LIGHTGBM: 0.0, XGBOOST: 0.0}
    for k, record in enumerate(run.result.folds):
        np.testing.assert_allclose(list(run.fold_weights[k].values()), weights[k], atol=1e-15)
        own = fold_of == k
        calib = (fold_of < k) & (rows + 5 < rows[own].min())
        assert record.fold == k
        assert record.fit_rows == record.info["calibration_rows"] == int(calib.sum())
        assert record.validation == [] and record.validation_rows == 0
        assert record.test_rows == int(own.sum())
        assert record.test == [str(data.dates[rows[own][0]]), str(data.dates[rows[own][-1]])]
        if calib.any():
            assert record.fit == [str(data.dates[rows[calib][0]]), str(data.dates[rows[calib][-1]])]
        assert record.info["shrinkage"] == round(shrinkage(int(calib.sum()), 5, spec), 6)
        assert record.info["weights"] == {f: round(w, 6) for f, w in run.fold_weights[k].items()}
        assert record.val_mape == pytest.approx(
            mape(data.target[rows[own]], data.price[rows[own]] * np.exp(R[own] @ weights[k]))
        )
    # final weights: every out-of-fold row whose label ended by the last export row
    np.testing.assert_allclose(list(run.final_weights.values()), naive_final, atol=1e-15)
    assert run.final_weights[LIGHTGBM] > 0.7  # a member close to the label earns weight


def test_pure_noise_members_stay_close_to_the_random_walk_out_of_fold():
    # A seeded random walk, h = 5, 15 folds of 100 rows; three members of pure noise with the
    # label's own scale. Each alone is ~40% worse than the random walk. The least-squares weight
    # of an independent member is noise of order 1 / sqrt(n_eff) and is cut to 0 half the time by
    # w >= 0, so the expected excess squared error is about (members / 2) / n_eff, shrunk by
    # lam**2; with n_eff >= 100 here that is <= 1.5% of the squared error, i.e. <= ~0.75% of MAPE
    # (MAPE grows like its square root). The margin is 1%; over 40 seeds the worst was +0.38%.
    data = training_data(export_frame(2000, seed=11), "1w")
    rows, fold_of = oof_rows(data, 500, 100, validation=20, min_train=20)
    rng = np.random.default_rng(12)
    sd = 0.015 * np.sqrt(5)
    noise = {f: rng.normal(0, sd, rows.size) for f in (DRIFT, LIGHTGBM, XGBOOST)}
    run = walk_forward_ensemble(member_frames(data, rows, fold_of, noise), data)
    rw_mape = run.result.random_walk_mape
    assert run.result.val_mape <= rw_mape * 1.01
    lone = mape(data.target[rows], data.price[rows] * np.exp(noise[LIGHTGBM]))
    assert lone > rw_mape * 1.2  # the members are bad alone: the test has teeth
    for k, record in enumerate(run.result.folds):
        assert run.fold_weights[k][RANDOM_WALK] >= 1 - record.info["shrinkage"] - 1e-12


@st.composite
def purge_cases(draw):
    h = draw(st.integers(1, 8))
    n = draw(st.integers(50, 120))
    step = draw(st.integers(5, 25))
    seed = draw(st.integers(0, 10_000))
    shrink = draw(st.floats(0.0, 30.0))
    return h, n, step, seed, shrink


@settings(max_examples=40, deadline=None)
@given(case=purge_cases(), data_draw=st.data())
def test_fold_weights_ignore_rows_whose_label_reaches_the_origin(case, data_draw):
    h, n, step, seed, shrink = case
    rng = np.random.default_rng(seed)
    price = 30.0 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    data = direct_data(price, h)
    rows, fold_of = oof_rows(data, 25, step, validation=2, min_train=2)
    preds = {LIGHTGBM: rng.normal(0, 0.03, rows.size), XGBOOST: data.label[rows] * 0.5}
    spec = EnsembleSpec(shrink)
    base = walk_forward_ensemble(member_frames(data, rows, fold_of, preds), data, spec)

    k = data_draw.draw(st.integers(0, int(fold_of.max())), label="fold")
    s_k = int(rows[fold_of == k].min())
    late = rows + h >= s_k  # label windows that reach fold k's origin
    # perturb member predictions and labels (targets) on those rows only
    bumped = {f: np.where(late, p + rng.normal(0, 1.0, rows.size), p) for f, p in preds.items()}
    target = data.target.copy()
    late_rows = rows[late]
    target[late_rows] = target[late_rows] * np.exp(rng.normal(0, 0.5, late_rows.size))
    moved = dataclasses.replace(data, target=target, label=np.log(target / data.price))
    other = walk_forward_ensemble(member_frames(moved, rows, fold_of, bumped), moved, spec)
    for j in range(k + 1):  # fold k, and every earlier fold (their origins come first)
        assert other.fold_weights[j] == base.fold_weights[j]
        assert other.result.folds[j].fit_rows == base.result.folds[j].fit_rows


# --- errors that name the family ---------------------------------------------------------------


@pytest.fixture
def tiny():
    data = training_data(export_frame(120, seed=5), "1w")
    rows, fold_of = oof_rows(data, 50, 20)
    rng = np.random.default_rng(6)
    return data, rows, fold_of, {LIGHTGBM: rng.normal(0, 0.01, rows.size)}


def test_missing_random_walk_is_an_error_that_names_it(tiny):
    data, rows, fold_of, preds = tiny
    members = member_frames(data, rows, fold_of, preds)
    del members[RANDOM_WALK]
    with pytest.raises(EnsembleError, match=f"must include '{RANDOM_WALK}'.*'{LIGHTGBM}'"):
        walk_forward_ensemble(members, data)


def test_mismatched_dates_name_the_family_and_example_dates(tiny):
    data, rows, fold_of, preds = tiny
    members = member_frames(data, rows, fold_of, preds)
    members[LIGHTGBM] = members[LIGHTGBM].slice(1)
    dropped = str(data.dates[rows[0]])
    with pytest.raises(EnsembleError, match=f"'{LIGHTGBM}'.*1 missing \\(e.g. {dropped}\\)"):
        walk_forward_ensemble(members, data)


def test_mismatched_folds_name_the_family_and_example_dates(tiny):
    data, rows, fold_of, preds = tiny
    members = member_frames(data, rows, fold_of, preds)
    members[LIGHTGBM] = members[LIGHTGBM].with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(99).otherwise(pl.col("fold")).alias("fold")
    )
    with pytest.raises(EnsembleError, match=f"'{LIGHTGBM}': fold numbers.*{data.dates[rows[3]]}"):
        walk_forward_ensemble(members, data)


def test_dates_outside_the_export_and_bad_members_are_errors(tiny):
    data, rows, fold_of, preds = tiny
    members = member_frames(data, rows, fold_of, preds)
    shifted = {
        f: frame.with_columns(pl.col("date") + pl.duration(days=20_000))
        for f, frame in members.items()
    }
    with pytest.raises(EnsembleError, match=f"'{RANDOM_WALK}': .* not rows of the 1w export"):
        walk_forward_ensemble(shifted, data)
    bad_rw = dict(members)
    bad_rw[RANDOM_WALK] = members[RANDOM_WALK].with_columns(pl.lit(0.01).alias("pred_return"))
    with pytest.raises(EnsembleError, match=f"'{RANDOM_WALK}': pred_return must be 0"):
        walk_forward_ensemble(bad_rw, data)
    with pytest.raises(EnsembleError, match=f"must not include '{ENSEMBLE}'"):
        walk_forward_ensemble({**members, ENSEMBLE: members[LIGHTGBM]}, data)
    with pytest.raises(
        EnsembleError, match=f"'{LIGHTGBM}': missing column\\(s\\) \\['pred_return'\\]"
    ):
        walk_forward_ensemble({**members, LIGHTGBM: members[LIGHTGBM].drop("pred_return")}, data)
    with pytest.raises(EnsembleError, match=f"'{XGBOOST}': column 'family' must be '{XGBOOST}'"):
        walk_forward_ensemble({**members, XGBOOST: members[LIGHTGBM]}, data)
    nan = members[LIGHTGBM].with_columns(pl.lit(float("nan")).alias("pred_return"))
    with pytest.raises(EnsembleError, match=f"'{LIGHTGBM}': pred_return is not finite"):
        walk_forward_ensemble({**members, LIGHTGBM: nan}, data)


def test_the_simplex_solver_enumerates_only_a_small_number_of_members():
    with pytest.raises(EnsembleError, match="at most 12"):
        simplex_least_squares(np.zeros((3, 13)), np.zeros(3))


def test_members_that_never_beat_the_random_walk_out_of_sample_never_move_it():
    """Earned departure: noise members may win in-sample, but their proposals' out-of-sample
    record loses to no change, so every fold and the final forecast stay the random walk."""
    data = training_data(export_frame(400, seed=5), "1w")
    rows, fold_of = oof_rows(data, 60, 30)
    rng = np.random.default_rng(6)
    scale = float(np.std(data.label[rows]))
    preds = {f: rng.normal(0, scale, rows.size) for f in (DRIFT, LIGHTGBM, XGBOOST)}
    run = walk_forward_ensemble(member_frames(data, rows, fold_of, preds), data, EnsembleSpec(5.0))
    assert not any(r.info["earned"] for r in run.result.folds)
    assert (run.result.predictions["pred_return"] == 0).all()
    assert run.final_weights[RANDOM_WALK] == 1.0
    proposals = [r.info["proposal_weights"][RANDOM_WALK] for r in run.result.folds[2:]]
    assert min(proposals) < 1.0  # the proposals did depart: the record is what held them back


def test_a_record_earns_departure_only_when_its_lead_is_more_than_noise():
    """The same small lead over the random walk: significant on a long record, not on a short one;
    the plain "lower mean error" rule is departure_p = 0.5."""
    rng = np.random.default_rng(11)
    n = 3000
    label = rng.normal(0, 0.02, n)
    # a fifth of each label plus noise: a small, real edge over no change
    proposal = 0.2 * label + rng.normal(0, 0.01, n)
    strict, plain = EnsembleSpec(departure_p=0.05), EnsembleSpec(departure_p=0.5)
    long = track_record(label, proposal, 1, strict)
    assert long["proposal_ape"] < long["random_walk_ape"]
    assert long["dm_p_value"] < 0.05 and long["earned"] and long["why"] is None
    short = track_record(label[:40], proposal[:40], 1, strict)
    assert short["dm_p_value"] >= 0.05 and not short["earned"]
    assert "not below 0.05" in short["why"]
    lower = short["proposal_ape"] < short["random_walk_ape"]
    assert track_record(label[:40], proposal[:40], 1, plain)["earned"] == lower


def test_a_record_too_short_for_the_test_or_identical_to_the_random_walk_earns_nothing():
    label = np.linspace(-0.01, 0.01, 10)
    short = track_record(label, label, 5, EnsembleSpec(departure_p=1.0))
    assert not short["earned"] and "needs more than 10" in short["why"]
    same = track_record(label, np.zeros(10), 1, EnsembleSpec(departure_p=1.0))
    assert not same["earned"] and "never differed" in same["why"]
    with pytest.raises(EnsembleError, match=r"departure_p must be a number in \(0, 1\]"):
        EnsembleSpec(departure_p=0.0)
