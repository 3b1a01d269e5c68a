"""Evaluation and promotion over a data root with hand-made predictions."""

import json

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core.intervals import QUANTILE_COLUMNS, QUANTILE_LEVELS
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps import data as tasks
from cbi_pipeline.steps import evaluation as evaluate
from cbi_pipeline.steps.promotion import Override, PromotionError, promote
from cbi_pipeline.store.root import DataRoot, write_json, write_parquet

H = "1w"


def with_quantiles(frame: pl.DataFrame) -> pl.DataFrame:
    """Hand-made quantiles calibrated by construction: each level is y_pred scaled by that
    quantile of the rows' own log residuals, so every central interval covers its nominal share
    of these rows (to one row)."""
    residual = np.log(frame["y_true"].to_numpy() / frame["y_pred"].to_numpy())
    y_pred = frame["y_pred"].to_numpy()
    return frame.with_columns(
        pl.Series(col, y_pred * np.exp(np.quantile(residual, level)))
        for col, level in zip(QUANTILE_COLUMNS, QUANTILE_LEVELS, strict=True)
    )


def predictions(root: DataRoot, export: pl.DataFrame, family: str, y_pred: np.ndarray) -> None:
    labelled = export.filter(pl.col(f"target_{H}").is_not_null()).tail(len(y_pred))
    frame = pl.DataFrame(
        {
            "date": labelled["date"],
            "horizon": [H] * labelled.height,
            "family": [family] * labelled.height,
            "fold": [i // 50 for i in range(labelled.height)],
            "price": labelled["price"],
            "y_true": labelled[f"target_{H}"],
            "y_pred": y_pred,
            "pred_return": np.log(y_pred / labelled["price"].to_numpy()),
            "market_regime": labelled["market_regime"],
        }
    )
    write_parquet(with_quantiles(frame), root.predictions(H, family))
    write_json(
        {"family": family, "final": {"pred_return": 0.001}},
        root.model_dir(H, family) / "manifest.json",
    )


@pytest.fixture
def state(tmp_path, tiny_market):
    market = tmp_path / "m.parquet"
    tiny_market.write_parquet(market)
    settings = Settings(data_root=str(tmp_path / "root"), market_paths=(str(market),))
    root = DataRoot(settings.data_root)
    tasks.write_raw(root, tasks.load_raw(settings))
    (result,) = tasks.build_exports(root, settings, [H], panel=tasks.build_panel(root, settings))
    export = result.frame
    labelled = export.filter(pl.col(f"target_{H}").is_not_null()).tail(200)
    price, y_true = labelled["price"].to_numpy(), labelled[f"target_{H}"].to_numpy()
    write_json(
        {"passed": True, "checks": {"export_target_is_aligned": {"passed": True}}},
        root.diagnostics(H),
    )
    return settings, root, export, price, y_true


def test_model_worse_than_random_walk_meeting_mape_is_not_promoted(state):
    _settings, root, export, price, _y_true = state
    predictions(root, export, "random_walk", price)
    worse = price * 1.004  # under the 3% MAPE gate on this calm data, yet worse than no change
    predictions(root, export, "drift", worse)
    out = evaluate.evaluate_root(root, H)
    gates = {g.name: g for g in out.gates}
    assert out.evaluation.candidate == "drift"
    assert gates["mape_threshold"].passed, gates["mape_threshold"].detail
    assert not gates["skill_vs_random_walk"].passed
    result = promote(root, H)
    assert not result.promoted and result.champion is None
    assert "skill_vs_random_walk" in result.reason
    assert not root.champion_pointer(H).exists()


def good_predictions(price: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    return price + 0.9 * (y_true - price)


def test_every_gate_passing_promotes_and_a_later_failure_keeps_the_champion(state):
    _settings, root, export, price, y_true = state
    predictions(root, export, "random_walk", price)
    predictions(root, export, "lightgbm", good_predictions(price, y_true))
    out = evaluate.evaluate_root(root, H)
    assert out.payload["promotable"], [g.detail for g in out.gates if not g.passed]
    result = promote(root, H)
    assert result.promoted and result.family == "lightgbm"
    pointer = json.loads(root.champion_pointer(H).read_text())
    snapshot = root.path(pointer["model_dir"])
    assert (snapshot / "manifest.json").exists() and "champions" in pointer["model_dir"]

    # a new, worse lightgbm: the gates fail and the previous champion (its snapshot) stays
    predictions(root, export, "lightgbm", price * 1.004)
    out = evaluate.evaluate_root(root, H)
    assert not out.payload["promotable"]
    result = promote(root, H)
    assert not result.promoted and result.champion is not None
    assert result.champion["model_dir"] == pointer["model_dir"] and snapshot.exists()
    assert "keeping lightgbm" in result.reason


def test_promotion_refuses_a_stale_evaluation_and_failing_diagnostics(state):
    _settings, root, export, price, y_true = state
    predictions(root, export, "random_walk", price)
    predictions(root, export, "lightgbm", good_predictions(price, y_true))
    evaluate.evaluate_root(root, H)
    predictions(root, export, "lightgbm", good_predictions(price, y_true) * 1.0001)
    with pytest.raises(PromotionError, match="stale"):
        promote(root, H)
    evaluate.evaluate_root(root, H)
    write_json(
        {"passed": False, "checks": {"export_has_no_future_leak": {"passed": False}}},
        root.diagnostics(H),
    )
    result = promote(root, H)
    assert not result.promoted and "export_has_no_future_leak" in result.reason


def test_override_needs_who_and_why_and_is_recorded(state):
    _settings, root, export, price, _y_true = state
    predictions(root, export, "random_walk", price)
    predictions(root, export, "drift", price * 1.004)
    evaluate.evaluate_root(root, H)
    with pytest.raises(PromotionError, match="who"):
        Override("drift", "", "")
    with pytest.raises(PromotionError, match="cannot be promoted"):
        Override("random_walk", "ana", "test")
    result = promote(root, H, Override("drift", "ana", "desk call"))
    assert result.promoted and result.champion["override"] == {"by": "ana", "reason": "desk call"}


def test_gate_table_lists_every_gate(state):
    _settings, root, export, price, _y_true = state
    predictions(root, export, "random_walk", price)
    predictions(root, export, "drift", price * 1.004)
    evaluate.evaluate_root(root, H)
    table = evaluate.gate_table(root, (H,))
    row = table.row(0, named=True)
    assert (
        row["candidate"] == "drift" and row["skill_gate"] == "FAIL" and row["mape_gate"] == "pass"
    )
    assert row["max_%"] == 3.0 and row["min_sharpe"] == 1.2 and row["champion"] == "none"


def test_no_evaluation_yet_means_no_promotion_and_a_plain_table_row(state):
    _settings, root, _export, _price, _y_true = state
    result = promote(root, H)
    assert not result.promoted and result.champion is None
    assert "no evaluation of 1w yet" in result.reason
    row = evaluate.gate_table(root, (H,)).row(0, named=True)
    assert row["candidate"] == "not evaluated" and row["champion"] == "none"
    assert row["promotable"] is False
