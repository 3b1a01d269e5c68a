"""The futures_curve baseline over a data root: trained with the baselines when a curve is there,
evaluated beside the random walk with its fallbacks counted, forecast from its manifest, and gone
again when the data has no curve."""

from dataclasses import replace

import numpy as np
import polars as pl

from cbi_pipeline.core.curves.market import ROLL, market_forecast
from cbi_pipeline.core.hardware import detect_system
from cbi_pipeline.core.vocabulary import FUTURES_CURVE
from cbi_pipeline.steps import data as tasks
from cbi_pipeline.steps import diagnostics as diagnosing
from cbi_pipeline.steps import evaluation as evaluating
from cbi_pipeline.steps import forecast as forecasting
from cbi_pipeline.steps import models as training
from cbi_pipeline.store.root import read_parquet
from cbi_pipeline_tests.conftest import (
    build_tiny_exports,
    make_tiny_curve,
    make_tiny_market,
    tiny_training_settings,
)

SYSTEM = detect_system(cores=1, ram_gb=16, device="cpu")


def test_futures_curve_from_training_to_forecast_and_away_without_a_curve(tmp_path):
    curve_path = tmp_path / "in" / "curve.parquet"
    curve_path.parent.mkdir()
    make_tiny_curve(n=700).write_parquet(curve_path)
    settings = tiny_training_settings(tmp_path, market_paths=(), curve_paths=(str(curve_path),))
    assert settings.front_rule == ROLL
    root = build_tiny_exports(settings)

    outputs = training.train(root, settings, "1m", "baselines", SYSTEM)
    assert [o.family for o in outputs] == ["random_walk", "drift", "ets", FUTURES_CURVE]
    fc = outputs[-1]
    export = read_parquet(root.export("zl_training_prod_allhistory_1m.parquet"), "export")
    implied = market_forecast(
        read_parquet(root.raw_curve, "curve"),
        "ZL",
        export["date"],
        export["price"],
        21,
        ROLL,
        settings.roll_spec(),
    )
    preds = fc.result.predictions.join(implied, on="date")
    expected = preds["price"] * np.exp(preds["pred_return"].fill_null(0.0))
    assert np.allclose(preds["y_pred"], expected, rtol=1e-12)
    assert preds["pred_return"].drop_nulls().len() > 0  # it forecasts, not only falls back
    fallbacks = sum(f["fallback"] for f in fc.manifest["folds"])
    assert fallbacks == preds["pred_return"].null_count()
    final = fc.manifest["final"]
    last = implied.row(-1, named=True)
    assert final["contract"] == last["contract"] and final["fell_back"] == (
        last["contract"] is None
    )

    (diag,) = diagnosing.diagnose_root(root, settings, ["1m"], plot=False)
    truncation = diag.payload["leakage"]["truncation"]
    assert truncation["status"] == "passed", truncation  # the curve features are causal
    out = evaluating.evaluate_root(root, "1m", settings=settings)
    assert FUTURES_CURVE in out.payload["families"]
    assert out.payload["futures_curve"]["fallback_rows"] == fallbacks
    assert out.payload["futures_curve"]["rows"] == out.payload["rows"]
    text = evaluating.summary_text(out.payload)
    assert f"{FUTURES_CURVE} (the market's own forecast): MAPE" in text
    assert "fell back to the random walk on" in text
    table = evaluating.gate_table(root, ("1m",))
    mape = out.payload["families"][FUTURES_CURVE]["overall"]["mape"]
    assert table["curve_mape_%"].to_list() == [mape]
    pred = forecasting.family_pred_return(
        root, settings, "1m", FUTURES_CURVE, root.model_dir("1m", FUTURES_CURVE)
    )
    assert pred == final["pred_return"]

    # the same root, now fed a market file and no curve: no curve, no futures_curve
    market = tmp_path / "in" / "market.parquet"
    make_tiny_market(n=700).write_parquet(market)
    plain = replace(settings, market_paths=(str(market),), curve_paths=())
    tasks.write_raw(root, tasks.load_raw(plain))
    tasks.build_exports(root, plain, ["1m"], panel=tasks.build_panel(root, plain))
    assert not root.raw_curve.exists()
    outputs = training.train(root, plain, "1m", "baselines", SYSTEM)
    assert FUTURES_CURVE not in [o.family for o in outputs]
    assert not root.predictions("1m", FUTURES_CURVE).exists()
    diagnosing.diagnose_root(root, plain, ["1m"], plot=False)
    again = evaluating.evaluate_root(root, "1m", settings=plain)
    assert FUTURES_CURVE not in again.payload["families"]
    assert again.payload["futures_curve"] is None
    assert evaluating.gate_table(root, ("1m",))["curve_mape_%"].to_list() == [None]
    assert pl.read_parquet(root.raw_market)["symbol"].n_unique() > 2
