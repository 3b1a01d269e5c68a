import json

import polars as pl

from cbi_pipeline.cli.main import main


def test_cbi_config_prints_each_family(capsys):
    assert main(["config", "--json", "--cores", "3", "--ram-gb", "16", "--device", "cpu"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["system"]["cores"] == 3
    assert payload["families"] == ["lightgbm", "xgboost", "lstm", "gru"]  # all enabled
    assert set(payload["hyperparameters"]) == {"lightgbm", "xgboost", "lstm", "gru"}
    assert payload["hyperparameters"]["lstm"]["batch_size"] == 128
    assert payload["hyperparameters"]["lightgbm"]["num_threads"] == 3


def test_cbi_export_builds_the_requested_horizon(tmp_path, tiny_market, capsys):
    market = tmp_path / "m.parquet"
    tiny_market.write_parquet(market)
    root = tmp_path / "root"
    code = main(
        [
            "export",
            "--horizon",
            "1m",
            "--surface",
            "test",
            "--market",
            str(market),
            "--data-root",
            str(root),
        ]
    )
    assert code == 0
    out = root / "exports" / "zl_training_test_allhistory_1m.parquet"
    assert pl.read_parquet(out)["target_1m"].null_count() == 21
    assert "1m: 320 rows" in capsys.readouterr().out


def test_cbi_export_reports_bad_input_and_exits_nonzero(tmp_path, capsys):
    bad = tmp_path / "m.csv"
    bad.write_text("date,symbol,close\n2020-01-02,ZS,1\n")
    assert main(["export", "--market", str(bad), "--data-root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err
    assert "unknown target symbol 'ZL'" in err
    assert not (tmp_path / "root").exists()


def test_cbi_export_reports_missing_file(tmp_path, capsys):
    assert (
        main(["export", "--market", str(tmp_path / "nope*.csv"), "--data-root", str(tmp_path)]) == 2
    )
    assert "no market file found" in capsys.readouterr().err
