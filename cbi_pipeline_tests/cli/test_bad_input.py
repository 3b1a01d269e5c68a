"""Bad input never overwrites good output: each case builds a good data root with ``cbi export``,
feeds one bad input, and checks the error names its file (or setting, or regime) and what was
expected, and that every file of the earlier good run is byte-identical afterwards."""

import datetime as dt
import hashlib
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbi_pipeline.cli.main import main
from cbi_pipeline_tests.conftest import make_tiny_curve, make_tiny_market

N = 320


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def without_cache(files: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in files.items() if not k.startswith("exports/cache/")}


def ohlc(frame: pl.DataFrame) -> pl.DataFrame:
    """A consistent OHLC market from closes: open = close, high/low 1% around it."""
    return frame.with_columns(
        open=pl.col("close"), high=pl.col("close") * 1.01, low=pl.col("close") * 0.99
    )


@pytest.fixture
def good(tmp_path):
    market = ohlc(make_tiny_market(n=N))
    path = tmp_path / "market.csv"
    market.write_csv(path)
    root = tmp_path / "root"
    assert main(["export", "--market", str(path), "--data-root", str(root)]) == 0
    return market, root, snapshot(root)


def export_with(
    tmp_path: Path, root: Path, frame: pl.DataFrame | str, *extra: str
) -> tuple[int, str, Path]:
    path = tmp_path / "bad.csv"
    if isinstance(frame, str):
        path.write_text(frame)
    else:
        frame.write_csv(path)
    return main(["export", "--market", str(path), "--data-root", str(root), *extra]), "", path


def set_row(frame: pl.DataFrame, row: int, **values: object) -> pl.DataFrame:
    hit = pl.int_range(pl.len()) == row
    return frame.with_columns(
        pl.when(hit).then(pl.lit(v)).otherwise(pl.col(c)).alias(c) for c, v in values.items()
    )


CASES = {
    "future date": (
        lambda m: set_row(m, 5, date=dt.date.today() + dt.timedelta(days=400)),
        ["column 'date' is after", "no future dates"],
    ),
    "date before the floor": (
        lambda m: set_row(m, 5, date=dt.date(1800, 1, 1)),
        ["column 'date' is before 1900-01-01"],
    ),
    "high below low": (
        lambda m: set_row(m, 7, high=1.0, low=2.0),
        ["column 'high' is below 'low'", "high >= low"],
    ),
    "close outside the range": (
        lambda m: set_row(m, 7, close=float(m["high"][7]) * 2),
        ["column 'close' is outside [low, high]"],
    ),
    "implausible price": (
        lambda m: set_row(m, 9, close=1e300, high=1e300),
        ["is more than 1000x away from its symbol's median", "1e+300"],
    ),
    "a symbol differing only in case": (
        lambda m: set_row(m, 1, symbol="zl"),
        ["column 'symbol': ['ZL', 'zl'] differ only in case"],
    ),
    "a column named twice": (
        lambda m: (
            m.with_columns(pl.col("close").alias("close2"))
            .write_csv()
            .replace("close2", "close", 1)
        ),
        ["the header names column(s) more than once ('close' 2 times)"],
    ),
    "too short for the long horizons": (
        lambda m: m.filter(pl.col("date") < m["date"].min() + dt.timedelta(days=60)),
        ["too few to label", "3m (needs more than 63)", "12m (needs more than 252)"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_market_file_is_refused_by_name_and_leaves_every_file_as_it_was(
    case, good, tmp_path, capsys
):
    market, root, before = good
    corrupt, expected = CASES[case]
    code, _, path = export_with(tmp_path, root, corrupt(market))
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(path) in err
    for text in expected:
        assert text in err
    assert snapshot(root) == before


@pytest.mark.parametrize(
    ("calendar", "expected"),
    [
        (
            [{"name": "calm", "start": "2000-01-01", "weight": 100, "crisis": "false"}],
            "regime 'calm': crisis 'false' is not a JSON boolean",
        ),
        (
            [{"name": "calm", "start": "2000-01-01", "weight": "abc"}],
            "regime 'calm': weight 'abc' is not a number",
        ),
        (
            [
                {"name": "a", "start": "2000-01-01", "end": "2012-01-01", "weight": 100},
                {"name": "b", "start": "2005-01-01", "weight": 200},
            ],
            "must be contiguous",
        ),
    ],
)
def test_a_bad_regime_calendar_fails_before_the_raw_copies_are_replaced(
    calendar, expected, good, tmp_path, capsys
):
    _market, root, before = good
    regimes = tmp_path / "regimes.json"
    regimes.write_text(json.dumps(calendar))
    path = tmp_path / "market.csv"
    code = main(
        ["export", "--market", str(path), "--data-root", str(root), "--regimes", str(regimes)]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(regimes) in err and expected in err
    assert snapshot(root) == before


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(["value", "date", "symbol", "duplicate", "drop"]),
    row=st.integers(0, 6 * N - 100),
    factor=st.sampled_from([0.0, -1.0, 1e6, 1e-6, float("nan"), 1.02]),
)
def test_a_single_point_corruption_either_builds_a_correct_export_or_changes_nothing(
    kind, row, factor, tmp_path_factory
):
    # Every example starts from its own freshly built good root: no state carries over.
    base = tmp_path_factory.mktemp("corruption")
    market = ohlc(make_tiny_market(n=N))
    good_path = base / "market.csv"
    market.write_csv(good_path)
    root = base / "root"
    assert main(["export", "--market", str(good_path), "--data-root", str(root)]) == 0
    before = snapshot(root)
    row = min(row, market.height - 1)
    if kind == "value":
        bad = set_row(market, row, close=float(market["close"][row]) * factor)
    elif kind == "date":
        bad = set_row(market, row, date=dt.date(2099, 1, 1) if factor > 1 else dt.date(1850, 1, 1))
    elif kind == "symbol":
        bad = set_row(market, row, symbol="" if factor > 1 else "zl ")
    elif kind == "duplicate":
        bad = pl.concat([market, market.slice(row, 1)])
    else:
        bad = market.filter(pl.int_range(pl.len()) != row)
    path = base / "corrupt.csv"
    bad.write_csv(path)
    code = main(["export", "--market", str(path), "--data-root", str(root)])
    assert code in (0, 2)
    if code == 0:
        # accepted: the export it built is a sane one
        export = pl.read_parquet(root / "exports" / "zl_training_prod_allhistory_1m.parquet")
        assert export["price"].is_finite().all() and (export["price"] > 0).all()
        assert export["date"].is_sorted() and export["date"].n_unique() == export.height
    else:
        assert snapshot(root) == before


def test_a_failure_while_writing_the_exports_leaves_the_previous_set(
    good, tmp_path, monkeypatch, capsys
):
    """Write all, then swap: the raw copies and the panel of the new run are already written
    (to temporary files) when the 6m export fails; none of them replaces anything."""
    import cbi_pipeline.steps.data as data

    market, root, before = good
    real = data.build_export

    def failing(features, catalog, horizon, spec):
        if horizon == "6m":
            raise OSError("disk full while writing the 6m export")
        return real(features, catalog, horizon, spec)

    monkeypatch.setattr(data, "build_export", failing)
    newer = market.with_columns(pl.col("close") * 1.01)
    with pytest.raises(OSError, match="disk full"):
        export_with(tmp_path, root, newer)
    # The correlation cache is not part of the set: a partition is checked against the
    # fingerprint of the data it was built from and rebuilt on a mismatch, so the one refreshed
    # for the new data before the failure is never used with the old panel.
    assert without_cache(snapshot(root)) == without_cache(before)
    assert not list(root.rglob("*.tmp")) and not (root / ".pending-swap.json").exists()


def test_a_crash_during_the_swap_is_completed_by_the_next_writer(good, tmp_path, monkeypatch):
    """A crash between the renames leaves the journal; the next ``cbi export`` first finishes
    the interrupted swap, so raw, panel and exports are never left out of step."""
    import cbi_pipeline.store.root as store_root

    market, root, before = good
    newer = market.with_columns(pl.col("close") * 1.01)
    clean = tmp_path / "clean"
    newer_path = tmp_path / "newer.csv"
    newer.write_csv(newer_path)
    assert main(["export", "--market", str(newer_path), "--data-root", str(clean)]) == 0
    expected = snapshot(clean)

    real_replace, calls = store_root.os.replace, []

    journal = root / ".pending-swap.json"

    def crash_after_two(src, dst):
        if journal.exists():  # the batch's commit: its journal is written first
            calls.append(dst)
            if len(calls) > 2:
                raise KeyboardInterrupt("killed between renames")
        return real_replace(src, dst)

    monkeypatch.setattr(store_root.os, "replace", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        main(["export", "--market", str(newer_path), "--data-root", str(root)])
    monkeypatch.setattr(store_root.os, "replace", real_replace)
    assert journal.exists()
    half = snapshot(root)
    assert half != before and half != expected  # two files new, the rest old: out of step

    renames = json.loads(journal.read_text())["renames"]
    moved = store_root.DataRoot(root).finish_swap()
    assert len(moved) == len(renames) - 2
    assert not journal.exists() and not list(root.rglob("*.tmp"))
    assert without_cache(snapshot(root)) == without_cache(expected)


def test_labels_spanning_a_hole_in_the_target_are_null_and_reported(tmp_path, capsys):
    """A 400-day hole in ZL: a 1w label across it would be a 13-month move. Such labels are
    null (and the export says how many and where); every other label is the close h rows on."""
    market = ohlc(make_tiny_market(n=900))
    days = market.filter(pl.col("symbol") == "ZL")["date"]
    start = days[300]
    hole = (pl.col("symbol") == "ZL") & pl.col("date").is_between(
        start, start + dt.timedelta(days=399)
    )
    path = tmp_path / "holey.csv"
    market.filter(~hole).write_csv(path)
    root = tmp_path / "root"
    assert main(["export", "--market", str(path), "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    before, after = (
        str(days[299]),
        str(market.filter(~hole & (pl.col("symbol") == "ZL"))["date"][300]),
    )
    assert "1w: 5 labels set to null because their window spans a hole" in out
    assert f"{before}..{after}" in out
    export = pl.read_parquet(root / "exports" / "zl_training_prod_allhistory_1w.parquet")
    nulled = export.filter(
        pl.col("target_1w").is_null() & (pl.int_range(pl.len()) < export.height - 5)
    )
    assert nulled["date"].to_list() == export["date"][295:300].to_list()
    kept = export.with_columns(pl.col("price").shift(-5).alias("later")).filter(
        pl.col("target_1w").is_not_null()
    )
    assert (kept["target_1w"] == kept["later"]).all()
    # the nulled labels are what the alignment check expects, not a misalignment
    assert main(["diagnostics", "--data-root", str(root), "--horizon", "1w"]) in (0, 1)
    payload = json.loads((root / "diagnostics" / "1w.json").read_text())
    assert payload["checks"]["export_target_is_aligned"]["passed"], payload["checks"]


def test_a_bad_input_through_cbi_cycle_is_named_and_changes_nothing(good, tmp_path, capsys):
    """Future-dated rows through ``cbi cycle`` (once a DagsterUnknownPartitionError traceback):
    the data step fails with the file's own message, the cycle exits 2, and every file of the
    earlier good export is as it was (the cycle adds only its Dagster instance and MLflow store)."""
    market, root, before = good
    bad = set_row(market, 5, date=dt.date.today() + dt.timedelta(days=400))
    path = tmp_path / "future.csv"
    bad.write_csv(path)
    code = main(["cycle", "--horizon", "1w", "--market", str(path), "--data-root", str(root)])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert f"{path}: column 'date' is after" in captured.err
    assert "Traceback" not in captured.err + captured.out
    after = {
        k: v for k, v in snapshot(root).items() if not k.startswith(("dagster_home/", "mlflow/"))
    }
    assert after == before


CURVE_CASES = {
    "a close after the contract's expiry": (
        lambda c: c.with_columns(
            pl.when(pl.int_range(pl.len()) == 3)
            .then(pl.col("expiry") - dt.timedelta(days=400))
            .otherwise(pl.col("expiry"))
            .alias("expiry")
        ),
        ["column 'expiry'"],
    ),
    "a duplicated contract row": (lambda c: pl.concat([c, c.slice(10, 1)]), ["duplicate"]),
    "a non-positive close": (
        lambda c: c.with_columns(
            pl.when(pl.int_range(pl.len()) == 5).then(-1.0).otherwise("close").alias("close")
        ),
        ["column 'close'"],
    ),
}


@pytest.mark.parametrize("case", list(CURVE_CASES))
def test_a_bad_curve_file_is_refused_by_name_and_leaves_every_file_as_it_was(
    case, good, tmp_path, capsys
):
    _market, root, before = good
    corrupt, expected = CURVE_CASES[case]
    curve = tmp_path / "curve.csv"
    corrupt(make_tiny_curve(n=N)).write_csv(curve)
    market_path = tmp_path / "market.csv"
    code = main(
        ["export", "--market", str(market_path), "--curve", str(curve), "--data-root", str(root)]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(curve) in err
    for text in expected:
        assert text in err, err
    assert snapshot(root) == before


def test_an_unknown_target_or_a_series_apart_from_it_is_refused_naming_the_file(
    good, tmp_path, capsys
):
    market, root, before = good
    code, _, path = export_with(tmp_path, root, market, "--target", "ZX")
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{path}: column 'symbol': unknown target symbol 'ZX'" in err
    assert snapshot(root) == before
    later = pl.when(pl.col("symbol") == "CL").then(pl.col("date") + dt.timedelta(days=3000))
    apart = market.with_columns(later.otherwise(pl.col("date")).alias("date"))
    code, _, path = export_with(tmp_path, root, apart)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{path}: column 'symbol': symbol(s) ['CL'] have no dates overlapping" in err
    assert snapshot(root) == before


def test_a_signal_named_like_a_feature_fails_before_anything_is_written(good, tmp_path, capsys):
    """A signal series called ``zl_close`` collides with the panel's target column: refused
    with the name, before the raw copies are replaced."""
    from cbi_pipeline_tests.conftest import make_tiny_signals

    _market, root, before = good
    signals = tmp_path / "signals.csv"
    make_tiny_signals(n=N).filter(pl.col("series") == "weather_test_anom").with_columns(
        pl.lit("zl_close").alias("series")
    ).write_csv(signals)
    market_path = tmp_path / "market.csv"
    args = ["export", "--market", str(market_path), "--signals", str(signals)]
    code = main([*args, "--data-root", str(root)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert (
        f"{signals}: column 'series': signal series ['zl_close'] take a name of the market" in err
    )
    assert snapshot(root) == before
