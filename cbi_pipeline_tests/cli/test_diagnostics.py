import json

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.cli.main import main
from cbi_pipeline.core.diagnostics_schema import schema_errors
from cbi_pipeline_tests.conftest import make_tiny_market, make_tiny_signals


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli_diag")
    market, signals = base / "market.parquet", base / "signals.parquet"
    make_tiny_market(n=700).write_parquet(market)
    make_tiny_signals(n=700).write_parquet(signals)
    args = ["export", "--horizon", "1m", "--market", str(market), "--signals", str(signals)]
    assert main([*args, "--data-root", str(base / "root")]) == 0
    return base / "root"


@pytest.fixture
def export(root) -> pl.DataFrame:
    return pl.read_parquet(root / "exports" / "zl_training_prod_allhistory_1m.parquet")


def test_user_export_without_raw_data_passes_and_says_truncation_was_not_run(
    root, tmp_path, capsys
):
    user = tmp_path / "mine.parquet"
    pl.read_parquet(root / "exports" / "zl_training_prod_allhistory_1m.parquet").write_parquet(user)
    out = tmp_path / "report.json"
    assert main(["diagnostics", "--data-path", str(user), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1m: 700 rows" in printed
    assert "truncation not run: no raw data given" in printed
    payload = json.loads(out.read_text())
    assert schema_errors(payload) == []
    assert payload["horizon"] == "1m"  # inferred from the target_1m column
    assert payload["leakage"]["truncation"]["status"] == "not_run"
    assert payload["missing_data"]["features"][0]["block"] == "Uncatalogued"


def test_pipeline_export_with_its_data_root_runs_truncation(root, capsys):
    path = root / "exports" / "zl_training_prod_allhistory_1m.parquet"
    code = main(["diagnostics", "--data-path", str(path), "--data-root", str(root)])
    assert code == 0
    payload = json.loads(
        (root / "exports" / "zl_training_prod_allhistory_1m.diagnostics.json").read_text()
    )
    assert payload["leakage"]["truncation"]["status"] == "passed"
    blocks = {f["block"] for f in payload["missing_data"]["features"]}
    assert "Spreads" in blocks  # from the feature catalog beside the export
    capsys.readouterr()


def test_data_root_mode_writes_the_layout_file(root, capsys):
    assert main(["diagnostics", "--data-root", str(root), "--horizon", "1m"]) == 0
    assert schema_errors(json.loads((root / "diagnostics" / "1m.json").read_text())) == []
    assert (root / "diagnostics" / "1m.png").exists()
    assert "wrote " in capsys.readouterr().out


def test_future_target_column_fails_and_is_named(export, tmp_path, capsys):
    target = export["target_1m"].cast(pl.Float64).to_numpy()
    noisy = target * (1 + np.random.default_rng(9).normal(0, 0.005, target.size))
    path = tmp_path / "leaky.parquet"
    export.with_columns(pl.Series("zl_hint", noisy).fill_nan(None)).write_parquet(path)
    assert main(["diagnostics", "--data-path", str(path), "--horizon", "1m"]) == 1
    err = capsys.readouterr().err
    assert "FAIL 1m export_has_no_future_leak" in err
    assert "[zl_hint]" in err


def test_target_shifted_by_one_day_fails_alignment(export, tmp_path, capsys):
    path = tmp_path / "shifted.parquet"
    export.with_columns(pl.col("price").shift(-22).alias("target_1m")).write_parquet(path)
    assert main(["diagnostics", "--data-path", str(path)]) == 1
    err = capsys.readouterr().err
    assert "FAIL 1m export_target_is_aligned" in err
    assert "matches the price 22 rows ahead instead of 21" in err


def test_missing_file_and_missing_columns_exit_2(export, tmp_path, capsys):
    assert main(["diagnostics", "--data-path", str(tmp_path / "nope.parquet")]) == 2
    assert "nope.parquet: export file not found" in capsys.readouterr().err
    path = tmp_path / "no_regime.parquet"
    export.drop("market_regime").write_parquet(path)
    assert main(["diagnostics", "--data-path", str(path)]) == 2
    assert "missing column(s) ['market_regime']" in capsys.readouterr().err


@pytest.mark.realdata
@pytest.mark.slow
def test_every_check_passes_on_the_real_file_for_every_horizon(real_data, tmp_path, capsys):
    root = tmp_path / "real"
    assert main(["export", "--market", str(real_data), "--data-root", str(root)]) == 0
    assert main(["diagnostics", "--data-root", str(root)]) == 0
    for h in ("1w", "1m", "3m", "6m", "12m"):
        payload = json.loads((root / "diagnostics" / f"{h}.json").read_text())
        assert payload["passed"], {k: v["summary"] for k, v in payload["checks"].items()}
        assert payload["leakage"]["truncation"]["status"] == "passed"
        assert payload["leakage"]["canary"]["passed"]
    capsys.readouterr()


def test_a_user_export_with_an_infinite_feature_fails_naming_the_column(export, tmp_path, capsys):
    feature = next(c for c in export.columns if c.startswith("zl_") and export.schema[c].is_float())
    rows = pl.int_range(pl.len()) == 300
    bad = export.with_columns(
        pl.when(rows).then(float("inf")).otherwise(pl.col(feature)).alias(feature)
    )
    user = tmp_path / "mine.parquet"
    bad.write_parquet(user)
    out = tmp_path / "report.json"
    assert main(["diagnostics", "--data-path", str(user), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{user}: 1 feature column(s) hold infinite values: {feature} (1 rows)" in err
    assert str(export["date"][300]) in err
    assert not out.exists()


def test_a_one_day_bad_print_is_reported_with_its_date(export, tmp_path, capsys):
    """A price that jumps 60% for one day and comes back (a vendor artefact): reported in the
    payload and the printed summary with its date; it fails no check."""
    row = 300
    bad = export["price"][row] * 1.6
    spiked = export.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(bad).otherwise(pl.col("price")).alias("price"),
        pl.when(pl.int_range(pl.len()) == row - 21)
        .then(bad)
        .otherwise(pl.col("target_1m"))
        .alias("target_1m"),
    )
    path = tmp_path / "spiked.parquet"
    spiked.write_parquet(path)
    out = tmp_path / "report.json"
    assert main(["diagnostics", "--data-path", str(path), "--out", str(out)]) == 0
    day = str(export["date"][row])
    assert f"One-day price spikes that reversed the next day (check the vendor file): {day}" in (
        capsys.readouterr().out
    )
    payload = json.loads(out.read_text())
    assert schema_errors(payload) == []
    assert [s["date"] for s in payload["price_spikes"]["spikes"]] == [day]


def test_a_one_day_forward_return_in_a_user_export_is_named_with_its_lag(export, tmp_path, capsys):
    """A user's own export (no raw data, so no truncation test): the lag screen alone names a
    planted next-day return with its lag and evidence, and the run exits 1."""
    p = export["price"].to_numpy()
    ahead = np.r_[np.log(p[1:] / p[:-1]), np.nan]
    path = tmp_path / "mine.parquet"
    export.with_columns(pl.Series("zl_edge", ahead).fill_nan(None)).write_parquet(path)
    out = tmp_path / "report.json"
    assert main(["diagnostics", "--data-path", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "FAIL 1m export_has_no_future_leak" in err
    assert "zl_edge: its level knows the target's one-day return 1 day(s) ahead" in err
    (flagged,) = json.loads(out.read_text())["leakage"]["lags"]["flagged"]
    assert flagged["feature"] == "zl_edge" and flagged["lag"] == 1 and flagged["z"] > 5
