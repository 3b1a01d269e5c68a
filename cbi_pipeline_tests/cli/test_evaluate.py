"""``cbi evaluate`` on hand-made predictions: the point block always, the probabilistic block
(pinball, CRPS, coverage, width; overall and per regime) and the coverage gates only with the
nine quantile columns."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.cli.main import main
from cbi_pipeline.core.intervals import QUANTILE_COLUMNS, QUANTILE_LEVELS
from cbi_pipeline.core.probabilistic import probabilistic_breakdown, probabilistic_set
from cbi_pipeline.core.vocabulary import GATE_COVERAGE_80, GATE_COVERAGE_90
from cbi_pipeline_tests.conftest import business_days

ROWS = 200


def frame(quantiles: str | None) -> pl.DataFrame:
    """Good 1w point predictions (90% of the realised move) on a seeded random walk; quantiles
    ``calibrated`` (the empirical quantiles of the log errors: covers about nominal) or
    ``narrow`` (±0.01%: covers almost nothing)."""
    rng = np.random.default_rng(3)
    price = 30.0 * np.exp(np.cumsum(rng.normal(0, 0.01, ROWS)))
    y_true = price * np.exp(rng.normal(0, 0.02, ROWS))
    y_pred = price + 0.9 * (y_true - price)
    out = pl.DataFrame(
        {
            "date": business_days(dt.date(2020, 1, 1), ROWS),
            "price": price,
            "y_true": y_true,
            "y_pred": y_pred,
            "market_regime": ["covid"] * 100 + ["inflation"] * 100,
        }
    )
    if quantiles == "calibrated":
        z = np.quantile(np.log(y_true / y_pred), QUANTILE_LEVELS)
        q = {c: y_pred * np.exp(z[j]) for j, c in enumerate(QUANTILE_COLUMNS)}
    elif quantiles == "narrow":
        q = {
            c: y_pred * (1 + 1e-4 * (p - 0.5))
            for c, p in zip(QUANTILE_COLUMNS, QUANTILE_LEVELS, strict=True)
        }
    else:
        return out
    return out.with_columns(pl.Series(c, v) for c, v in q.items())


def evaluate(tmp_path, data: pl.DataFrame, capsys, *extra: str) -> tuple[int, str, str]:
    path = tmp_path / "preds.parquet"
    data.write_parquet(path)
    argv = ["evaluate", "--predictions", str(path), "--y-true-col", "y_true", "--y-pred-col"]
    code = main([*argv, "y_pred", "--horizon", "1w", "--regime-col", "market_regime", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_quantile_columns_add_the_probabilistic_block_and_the_coverage_gates(tmp_path, capsys):
    data = frame("calibrated")
    code, out, _ = evaluate(tmp_path, data, capsys)
    assert "probabilistic (quantiles q2.5..q97.5)" in out
    for column in ("pinball_%", "crps_%", "cover_50", "cover_95", "width_80_%", "width_90_%"):
        assert column in out
    overall = probabilistic_set(data)
    assert f"{overall.pinball:.4f}" in out and f"{overall.crps:.4f}" in out
    assert f"{overall.width['90']:.4f}" in out
    for regime, m in probabilistic_breakdown(data, "market_regime").items():
        line = [r for r in out.splitlines() if r.startswith(f"| {regime} ")][-1]  # after mape's
        assert f"{m.pinball:.4f}" in line, (regime, line)
    assert overall.coverage["80"] == pytest.approx(0.8, abs=0.03)
    assert GATE_COVERAGE_80 in out and GATE_COVERAGE_90 in out
    assert code == 0 and "every gate passes" in out


def test_intervals_that_cover_too_little_fail_a_coverage_gate_and_exit_1(tmp_path, capsys):
    code, out, _ = evaluate(tmp_path, frame("narrow"), capsys)
    assert code == 1
    assert out.splitlines()[-1] == f"a gate fails: {GATE_COVERAGE_80}, {GATE_COVERAGE_90}"
    code, out, _ = evaluate(tmp_path, frame("narrow"), capsys, "--coverage-tolerance", "0.95")
    assert code == 0 and "(within ±95 points of nominal" in out


def test_without_quantile_columns_there_is_no_probabilistic_block(tmp_path, capsys):
    code, out, _ = evaluate(tmp_path, frame(None), capsys)
    assert code == 0 and "every gate passes" in out
    assert "probabilistic" not in out and "pinball" not in out
    assert GATE_COVERAGE_80 not in out


def test_a_partial_set_of_quantile_columns_is_bad_input_naming_the_file(tmp_path, capsys):
    code, _, err = evaluate(tmp_path, frame("calibrated").drop("q97.5"), capsys)
    assert code == 2
    assert f"{tmp_path / 'preds.parquet'}: frame has quantile columns" in err and "q97.5" in err


def test_crossed_or_non_positive_quantiles_are_bad_input(tmp_path, capsys):
    data = frame("calibrated")
    crossed = data.with_columns(pl.col("q5").alias("q10"), pl.col("q10").alias("q5"))
    code, _, err = evaluate(tmp_path, crossed, capsys)
    assert code == 2 and "quantiles decrease across levels" in err
    code, _, err = evaluate(tmp_path, data.with_columns(pl.lit(-1.0).alias("q2.5")), capsys)
    assert code == 2 and "column 'q2.5' has 200 null, non-finite or non-positive" in err
