import datetime as dt
import io
import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch

from cbi_pipeline.core.hardware import detect_system, get_config_for_model
from cbi_pipeline.core.models.neural.files import model_from_files
from cbi_pipeline.core.models.neural.fit import fit_neural_model, warm_state
from cbi_pipeline.core.models.neural.learner import walk_forward_neural
from cbi_pipeline.core.models.neural.network import autocast_dtype, fit_scaler, sequence_windows
from cbi_pipeline.core.models.neural.spec import (
    NeuralModelFileError,
    NeuralSpec,
    NeuralTrainingError,
    neural_spec,
    resolve_device,
)
from cbi_pipeline.core.walkforward import WalkForwardSpec, plan_folds, training_data
from cbi_pipeline_tests.conftest import business_days

H = 5


def synthetic_export(n: int = 400, seed: int = 0) -> pl.DataFrame:
    """The 5-row log return is 0.03 * signal + noise; 'noise_*' columns carry nothing."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    log_price = np.log(30.0) + np.cumsum(rng.normal(0, 0.004, n))
    for t in range(n - H):
        log_price[t + H] = log_price[t] + 0.03 * signal[t] + rng.normal(0, 0.003)
    price = np.exp(log_price)
    regime = np.where(np.arange(n) < n // 2, "precrisis", "policy")
    return pl.DataFrame(
        {
            "date": business_days(dt.date(2015, 1, 1), n),
            "price": price,
            "signal": signal,
            "noise_a": rng.normal(size=n),
            "noise_b": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n) * 50 + 7),
            "market_regime": regime,
            "training_weight": np.where(regime == "policy", 5000.0, 100.0),
            "target_1w": np.concatenate([price[H:], np.full(H, np.nan)]),
        }
    ).with_columns(pl.col("target_1w", "noise_b").fill_nan(None))


def tiny_spec(family: str = "lstm", **overrides) -> NeuralSpec:
    values = {
        "sequence_length": 6,
        "batch_size": 32,
        "hidden_size": 8,
        "max_epochs": 2,
        "patience": 5,
        "max_features": 2,
        "device": "cpu",
        "threads": 1,
        "seed": 3,
        **overrides,
    }
    return NeuralSpec(family, **values)


def folds_for(data, first_row: int = 250):
    spec = WalkForwardSpec(H, data.dates[first_row].astype(dt.date), 50, 40, 100)
    return plan_folds(data.dates, data.labelled, spec)


@pytest.fixture(scope="module")
def data():
    return training_data(synthetic_export(), "1w")


def test_sequence_windows_match_a_naive_loop():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(9, 3)).astype(np.float32)
    rows = np.array([0, 1, 4, 8, 2])
    got = sequence_windows(Z, rows, 4)
    assert got.shape == (5, 4, 3) and got.flags.c_contiguous
    for k, t in enumerate(rows):
        for j in range(4):
            source = t - 3 + j  # the window's j-th step, oldest first
            expected = Z[source] if source >= 0 else np.zeros(3, np.float32)
            assert np.array_equal(got[k, j], expected)
    with pytest.raises(NeuralTrainingError, match=r"window rows outside 0\.\.8"):
        sequence_windows(Z, np.array([9]), 4)


def test_fit_scaler_is_nan_aware_and_flat_columns_get_unit_std():
    X = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, np.nan], [np.nan, 5.0, 2.0], [5.0, 5.0, np.nan]])
    y = np.array([0.1, -0.1, 0.3, 0.1])
    s = fit_scaler(X, y, clip=1.5)
    # Column 0: values 1, 3, 5 -> mean 3, population std sqrt(8/3); constant and single-value
    # columns keep their mean and get std 1.
    assert s.mean.tolist() == pytest.approx([3.0, 5.0, 2.0])
    assert s.std.tolist() == pytest.approx([np.sqrt(8 / 3), 1.0, 1.0], rel=1e-6)
    # The label is scaled about 0 (a zero output = no change) unless centred on its mean.
    assert (s.target_mean, s.target_std) == pytest.approx((0.0, np.sqrt(0.12 / 4)))
    centred = fit_scaler(X, y, clip=1.5, center_target=True)
    assert (centred.target_mean, centred.target_std) == pytest.approx((0.1, np.std(y)))
    Z = s.transform(np.array([[3.0 + np.sqrt(8 / 3), 5.0, np.nan], [100.0, 4.0, -9.0]]))
    assert np.allclose(Z, [[1.0, 0.0, 0.0], [1.5, -1.0, -1.5]], rtol=1e-6)
    with pytest.raises(NeuralTrainingError, match="label must be finite"):
        fit_scaler(X, np.array([0.1, np.nan, 0.0, 0.0]), 5.0)


def test_spec_from_the_hardware_config_with_overrides():
    system = detect_system(cores=3, ram_gb=40, device="cpu")
    spec = neural_spec("gru", get_config_for_model("gru", "1m", system), {"dropout": 0.2})
    assert (spec.batch_size, spec.sequence_length, spec.hidden_size) == (256, 60, 32)
    assert spec.threads == 1 and spec.max_epochs == 40 and spec.patience == 3
    assert spec.dropout == 0.2 and spec.device == "cpu" and spec.mixed_precision is False
    with pytest.raises(NeuralTrainingError, match="unknown gru setting 'hiden_size'"):
        neural_spec("gru", {}, {"hiden_size": 3})
    with pytest.raises(NeuralTrainingError, match="dropout must be in"):
        tiny_spec(dropout=1.0)
    with pytest.raises(NeuralTrainingError, match="unknown neural family 'tcn'"):
        NeuralSpec("tcn")


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_a_two_epoch_walk_forward_is_deterministic(data, family):
    folds = folds_for(data)
    a = walk_forward_neural(data, folds, tiny_spec(family))
    b = walk_forward_neural(data, folds, tiny_spec(family))
    pa, pb = a.result.predictions, b.result.predictions
    assert pa.height == sum(f.test_rows.size for f in folds) and len(folds) == 3
    assert np.array_equal(pa["pred_return"].to_numpy(), pb["pred_return"].to_numpy())
    # Trained folds vary their predictions; a fold that kept epoch 0 (the zero head) predicts
    # no change, exactly the random walk.
    trained = [h.best_epoch > 0 for h in a.histories]
    assert any(trained)
    for fold, was_trained in zip(folds, trained, strict=True):
        per_fold = pa.filter(pl.col("fold") == fold.index)["pred_return"]
        assert (per_fold.n_unique() > 1) if was_trained else (per_fold == 0.0).all()
    assert a.final.weights_bytes() == b.final.weights_bytes()
    for ha, hb in zip(a.histories, b.histories, strict=True):
        assert ha.train_loss == hb.train_loss and ha.validation_loss == hb.validation_loss
        assert ha.epochs <= 2 and len(ha.validation_loss) == ha.epochs + 1
    # The global torch settings are restored afterwards.
    assert not torch.are_deterministic_algorithms_enabled()


def test_the_scaler_uses_the_fit_rows_only(data):
    fold = folds_for(data)[0]
    model, _ = fit_neural_model(data, tiny_spec(), fold.fit_rows, fold.validation_rows)
    columns = [data.features.index(f) for f in model.features]
    X = data.X[np.ix_(fold.fit_rows, columns)].astype(np.float64)
    assert np.allclose(model.scaler.mean, np.nanmean(X, axis=0), rtol=1e-6)
    assert np.allclose(model.scaler.std, np.nanstd(X, axis=0), rtol=1e-5)
    y = data.label[fold.fit_rows]
    assert model.scaler.target_mean == 0.0
    assert model.scaler.target_std == pytest.approx(float(np.sqrt(np.mean(y**2))))


def poisoned_from(data, origin: int, seed: int = 9):
    """Huge features from ``origin`` on, and every label whose window reaches ``origin`` (and
    every later price, target and weight) scrambled."""
    rng = np.random.default_rng(seed)
    rows = np.arange(data.rows)
    late = rows >= origin
    X = data.X.copy()
    X[late] = rng.normal(0, 1e6, X[late].shape).astype(np.float32)
    return replace(
        data,
        X=X,
        label=np.where(rows + H >= origin, rng.normal(0, 5.0, data.rows), data.label),
        target=np.where(late, data.target * 3.0, data.target),
        weight=np.where(late, 1e6, data.weight),
    )


@pytest.mark.parametrize(("family", "warm_start"), [("lstm", True), ("gru", False)])
def test_no_fold_scaler_or_early_stopping_sees_its_test_rows(data, family, warm_start):
    """Poisoning everything from fold k's test origin on changes nothing up to fold k's training:
    the same features, scaler statistics and per-epoch train and validation losses, and the same
    predictions for every earlier fold (the warm-start chain included)."""
    folds = folds_for(data)
    k = 1
    spec = tiny_spec(family, max_epochs=3, patience=1, warm_start=warm_start)
    clean = walk_forward_neural(data, folds, spec)
    dirty_data = poisoned_from(data, folds[k].test_origin)
    dirty = walk_forward_neural(dirty_data, folds, spec)
    for i in range(k + 1):
        assert clean.histories[i].train_loss == dirty.histories[i].train_loss
        assert clean.histories[i].validation_loss == dirty.histories[i].validation_loss
        assert clean.histories[i].best_epoch == dirty.histories[i].best_epoch
    before = clean.result.predictions["fold"] < k
    assert np.array_equal(
        clean.result.predictions.filter(before)["pred_return"].to_numpy(),
        dirty.result.predictions.filter(before)["pred_return"].to_numpy(),
    )
    # Fold k itself: the same fitted model (predicting its clean test rows identically).
    fold = folds[k]
    a, _ = fit_neural_model(data, spec, fold.fit_rows, fold.validation_rows)
    b, _ = fit_neural_model(dirty_data, spec, fold.fit_rows, fold.validation_rows)
    assert a.features == b.features
    assert np.array_equal(a.scaler.mean, b.scaler.mean) and np.array_equal(
        a.scaler.std, b.scaler.std
    )
    assert a.weights_bytes() == b.weights_bytes()
    assert np.array_equal(a.predict(data, fold.test_rows), b.predict(data, fold.test_rows))
    # The poison is real: fold k's predictions read its (poisoned) test features.
    assert not np.array_equal(
        b.predict(data, fold.test_rows), b.predict(dirty_data, fold.test_rows)
    )


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience(data):
    fold = folds_for(data)[0]
    spec = tiny_spec(max_epochs=12, patience=2, learning_rate=0.05)
    model, history = fit_neural_model(data, spec, fold.fit_rows, fold.validation_rows)
    losses = history.validation_loss
    assert history.best_epoch == int(np.argmin(losses))
    assert history.epochs == min(12, history.best_epoch + 2)
    # The kept weights reproduce the best validation loss.
    v = fold.validation_rows
    pred = model.predict(data, v)
    w = data.weight[v] / data.weight[v].mean()
    scaled_err = (pred - data.label[v]) / model.scaler.target_std
    assert float(np.sum(w * scaled_err**2) / w.sum()) == pytest.approx(min(losses), rel=1e-4)


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_the_networks_learn_the_signal(data, family):
    folds = folds_for(data)
    spec = tiny_spec(family, max_epochs=40, patience=8, learning_rate=0.01, hidden_size=8)
    run = walk_forward_neural(data, folds, spec)
    p = run.result.predictions
    truth = np.log(p["y_true"].to_numpy() / p["price"].to_numpy())
    assert np.corrcoef(p["pred_return"].to_numpy(), truth)[0, 1] > 0.7
    assert run.result.val_mape < 0.7 * run.result.random_walk_mape
    assert "signal" in run.final.features


def test_warm_start_carries_input_weights_by_feature_name(data):
    fold = folds_for(data)[0]
    spec = tiny_spec(max_features=3)
    first, _ = fit_neural_model(data, spec, fold.fit_rows, fold.validation_rows)
    arch = replace(first.arch)
    state = warm_state(first, arch, ("noise_b", "brand_new", first.features[0]))
    old = first.module.state_dict()["rnn.weight_ih_l0"]
    new = state["rnn.weight_ih_l0"]
    assert torch.equal(new[:, 0], old[:, first.features.index("noise_b")])
    assert torch.equal(new[:, 1], torch.zeros(old.shape[0]))
    assert torch.equal(new[:, 2], old[:, 0])
    assert torch.equal(state["rnn.weight_hh_l0"], first.module.state_dict()["rnn.weight_hh_l0"])


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_saved_weights_and_config_load_with_weights_only(data, family):
    fold = folds_for(data)[0]
    model, _ = fit_neural_model(
        data, tiny_spec(family, num_layers=2, dropout=0.1), fold.fit_rows, fold.validation_rows
    )
    config = json.loads(json.dumps(model.config({"horizon": "1w"})))
    weights = model.weights_bytes()
    loaded = model_from_files(config, weights, "models/1w/x/model.pt")
    assert loaded.features == model.features and loaded.arch == model.arch
    test = fold.test_rows
    assert np.array_equal(loaded.predict(data, test), model.predict(data, test))
    # A file that is not a plain state_dict is refused by weights_only loading.
    bad = io.BytesIO()
    torch.save({"w": torch.zeros(1), "f": np.mean}, bad)
    with pytest.raises(
        NeuralModelFileError, match=r"^bad\.pt: weights unreadable with weights_only"
    ):
        model_from_files({**config, "weights_sha256": None}, bad.getvalue(), "bad.pt")


def test_a_config_that_does_not_fit_the_weights_fails_naming_the_file(data):
    fold = folds_for(data)[0]
    model, _ = fit_neural_model(data, tiny_spec(), fold.fit_rows, fold.validation_rows)
    config = model.config()
    weights = model.weights_bytes()
    bigger = {**config, "architecture": {**config["architecture"], "hidden_size": 9}}
    with pytest.raises(
        NeuralModelFileError, match=r"m\.pt: weights do not fit .*rnn\.weight_hh_l0"
    ):
        model_from_files(bigger, weights, "m.pt")
    with pytest.raises(NeuralModelFileError, match=r"m\.pt: weights do not match .*sha256"):
        model_from_files(config, weights + b"x", "m.pt")
    with pytest.raises(NeuralModelFileError, match=r"m\.pt: 3 features, input_size 2"):
        model_from_files({**config, "features": ["a", "b", "c"]}, weights, "m.pt")
    with pytest.raises(NeuralModelFileError, match="config format"):
        model_from_files({**config, "format": "v0"}, weights, "m.pt")


def test_a_fit_without_validation_needs_epochs(data):
    rows = np.flatnonzero(data.labelled)
    with pytest.raises(NeuralTrainingError, match="needs the number of epochs"):
        fit_neural_model(data, tiny_spec(), rows, None)
    _, history = fit_neural_model(data, tiny_spec(), rows, None, epochs=1)
    assert history.epochs == 1 and history.validation_loss == () and history.best_epoch == 1
    # Zero epochs keep the zero head: no change predicted, the random walk exactly.
    untrained, history = fit_neural_model(data, tiny_spec(), rows, None, epochs=0)
    assert history.epochs == 0 and (untrained.predict(data, rows) == 0.0).all()
    centred, _ = fit_neural_model(data, tiny_spec(center_target=True), rows, None, epochs=0)
    assert np.allclose(centred.predict(data, rows), np.mean(data.label[rows]), rtol=1e-12)


def test_an_absent_accelerator_is_an_error_not_a_silent_cpu_run():
    if not torch.cuda.is_available():
        with pytest.raises(NeuralTrainingError, match="'cuda' requested but torch sees no CUDA"):
            resolve_device("cuda")
    assert resolve_device("cpu") == "cpu"
    assert autocast_dtype("cpu", True) is None
