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
from cbi_pipeline_tests.conftest import make_tiny_market

N = 320


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


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
