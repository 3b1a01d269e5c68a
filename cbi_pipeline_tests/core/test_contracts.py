import math

import polars as pl
import pytest

from cbi_pipeline.core.contracts import (
    DataContractError,
    check_market_coverage,
    combine_market,
    combine_signals,
    normalize_market,
    normalize_signals,
)


def _csv_frame(text: str) -> pl.DataFrame:
    import io

    return pl.read_csv(io.StringIO(text), infer_schema=False)


GOOD = "date,symbol,close\n2020-01-02,ZL,30.1\n2020-01-03,ZL,30.2\n2020-01-02,ZS,900\n"


def test_valid_csv_is_typed_in_contract_order():
    out = combine_market([normalize_market(_csv_frame(GOOD), "m.csv")])
    assert out.columns == ["date", "symbol", "open", "high", "low", "close", "volume"]
    assert out.schema["date"] == pl.Date and out.schema["close"] == pl.Float64
    assert out.height == 3


def test_missing_close_names_file_and_column():
    with pytest.raises(
        DataContractError, match=r"m\.csv: missing required column\(s\) \['close'\]"
    ):
        normalize_market(_csv_frame("date,symbol,price\n2020-01-02,ZL,1\n"), "m.csv")


def test_empty_file_is_rejected():
    with pytest.raises(DataContractError, match=r"m\.csv: the file is empty"):
        normalize_market(_csv_frame("date,symbol,close\n"), "m.csv")


def test_unparsable_date_shows_rows():
    text = "date,symbol,close\n2020-01-02,ZL,1\n02/01/2020,ZL,2\nnot-a-date,ZL,3\n"
    with pytest.raises(DataContractError) as err:
        normalize_market(_csv_frame(text), "m.csv")
    msg = str(err.value)
    assert "m.csv: column 'date' is missing or unparsable in 2 row(s)" in msg
    assert "row 2: date='02/01/2020'" in msg and "row 3: date='not-a-date'" in msg
    assert "expected ISO dates" in msg


@pytest.mark.parametrize("bad", ["0", "-1.5", "inf", "NaN", ""])
def test_non_positive_or_non_finite_close_is_rejected(bad):
    text = f"date,symbol,close\n2020-01-02,ZL,30\n2020-01-03,ZL,{bad}\n"
    with pytest.raises(
        DataContractError, match=r"column 'close' is missing, non-positive or non-finite in 1 row"
    ) as err:
        normalize_market(_csv_frame(text), "m.csv")
    assert "row 2" in str(err.value) and "2020-01-03" in str(err.value)


def test_non_numeric_close_is_rejected():
    with pytest.raises(DataContractError, match="column 'close' is not numeric"):
        normalize_market(_csv_frame("date,symbol,close\n2020-01-02,ZL,abc\n"), "m.csv")


def test_bad_optional_price_is_rejected_but_empty_is_fine():
    ok = normalize_market(_csv_frame("date,symbol,close,open\n2020-01-02,ZL,30,\n"), "m.csv")
    assert ok["open"].to_list() == [None]
    with pytest.raises(DataContractError, match="column 'open'"):
        normalize_market(_csv_frame("date,symbol,close,open\n2020-01-02,ZL,30,-2\n"), "m.csv")


def test_duplicates_across_files_name_both_files():
    a = normalize_market(_csv_frame(GOOD), "a.csv")
    b = normalize_market(_csv_frame("date,symbol,close\n2020-01-03,ZL,31\n"), "b.csv")
    with pytest.raises(DataContractError) as err:
        combine_market([a, b])
    msg = str(err.value)
    assert "a.csv, b.csv: duplicated (date, symbol)" in msg
    assert "a.csv row 2" in msg and "b.csv row 1" in msg


def test_unknown_target_lists_symbols():
    market = combine_market([normalize_market(_csv_frame(GOOD), "m.csv")])
    with pytest.raises(DataContractError, match=r"unknown target symbol 'XX'.*\['ZL', 'ZS'\]"):
        check_market_coverage(market, "XX")


def test_symbol_without_overlapping_dates_is_rejected():
    text = GOOD + "1999-01-04,OLD,5\n1999-01-05,OLD,6\n"
    market = combine_market([normalize_market(_csv_frame(text), "m.csv")])
    with pytest.raises(
        DataContractError, match=r"\['OLD'\] have no dates overlapping the target ZL"
    ):
        check_market_coverage(market, "ZL")
    check_market_coverage(market.filter(pl.col("symbol") != "OLD"), "ZL")


def test_parquet_datetime_dates_are_accepted():
    frame = pl.DataFrame({"date": ["2020-01-02 00:00:00"], "symbol": ["ZL"], "close": [1.0]})
    frame = frame.with_columns(pl.col("date").str.to_datetime())
    assert normalize_market(frame, "m.parquet")["date"].dtype == pl.Date


def test_signals_contract():
    good = normalize_signals(_csv_frame("date,series,value\n2020-01-02,w,-1.5\n"), "s.csv")
    assert math.isclose(good["value"][0], -1.5)
    with pytest.raises(DataContractError, match="column 'value' is missing or non-finite"):
        normalize_signals(_csv_frame("date,series,value\n2020-01-02,w,inf\n"), "s.csv")
    with pytest.raises(DataContractError, match=r"duplicated \(date, series\)"):
        combine_signals([good, good])
