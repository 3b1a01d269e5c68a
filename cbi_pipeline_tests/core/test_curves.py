import datetime as dt
import io
import math

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core.contracts import DataContractError
from cbi_pipeline.core.curves.contract import (
    CURVE_SCHEMA,
    combine_curves,
    delivery_month,
    normalize_curve,
)
from cbi_pipeline.core.curves.roll import (
    RollError,
    RollSpec,
    continuous_series,
    first_notice_day,
    roll_schedule,
    roll_table,
)
from cbi_pipeline_tests.conftest import REAL_DATA, business_days

REAL_CURVE = REAL_DATA.parent / "dev_curve_1995_2010.csv"
HEADER = "date,symbol,contract,expiry,close,volume,open_interest\n"
GOOD = (
    HEADER + "2020-01-02,ZL,ZLH2020,2020-03-13,30.1,10,100\n"
    "2020-01-02,ZL,ZLK2020,2020-05-14,30.5,,\n"
    "2020-01-03,ZL,ZLH2020,2020-03-13,30.2,12,101\n"
)


def _csv(text: str) -> pl.DataFrame:
    return pl.read_csv(io.StringIO(text), infer_schema=False)


def _norm(text: str) -> pl.DataFrame:
    return normalize_curve(_csv(text), "c.csv")


# --- the contract code and the first notice day --------------------------------------------------


def test_delivery_month_and_first_notice_day():
    assert delivery_month("ZLF1996") == (1996, 1)
    assert delivery_month("HOZ2001") == (2001, 12)
    assert first_notice_day("ZLF1996") == dt.date(1995, 12, 29)  # Friday
    assert first_notice_day("ZLH1996") == dt.date(1996, 2, 29)  # leap year, Thursday
    assert first_notice_day("ZLH2020") == dt.date(2020, 2, 28)  # Feb 29 2020 is a Saturday
    assert first_notice_day("HOG1995") == dt.date(1995, 1, 31)  # HO: its last trade date
    with pytest.raises(ValueError, match="contract code 'ZL1996'"):
        first_notice_day("ZL1996")


@pytest.mark.parametrize("bad", [-1, 1.5, True, "5"])
def test_roll_spec_refuses_a_bad_day_count(bad):
    with pytest.raises(ValueError, match=r"RollSpec.days_before_notice is .*expected an integer"):
        RollSpec(days_before_notice=bad)
    with pytest.raises(ValueError, match=r"RollSpec.max_missing_days is .*expected an integer"):
        RollSpec(max_missing_days=bad)


# --- normalize_curve: the good path --------------------------------------------------------------


def test_text_and_typed_frames_give_the_same_typed_curve():
    out = _norm(GOOD)
    assert out.schema == pl.Schema(CURVE_SCHEMA)
    assert out["contract"].to_list() == ["ZLH2020", "ZLK2020", "ZLH2020"]
    assert out["volume"].to_list() == [10.0, None, 12.0]
    typed = _csv(GOOD).with_columns(
        pl.col("date", "expiry").str.to_date(),
        pl.col("close").cast(pl.Float64),
        pl.col("volume", "open_interest").cast(pl.Int64),
    )
    assert normalize_curve(typed, "c.parquet").equals(out)
    minimal = normalize_curve(_csv(GOOD).drop("volume", "open_interest"), "c.csv")
    assert minimal.columns == list(CURVE_SCHEMA)
    assert minimal["open_interest"].null_count() == 3


def test_heating_oil_may_expire_in_the_month_before_delivery():
    out = _norm(HEADER + "1995-01-03,HO,HOG1995,1995-01-31,49.94,1,1\n")
    assert out["expiry"].to_list() == [dt.date(1995, 1, 31)]


# --- normalize_curve: each broken rule names the file, the column and the rule ------------------


def test_missing_required_column_names_found_and_expected():
    with pytest.raises(
        DataContractError,
        match=r"c\.csv: missing required column\(s\) \['expiry'\] for the raw curve contract; "
        r"found columns \['date', 'symbol', 'contract', 'close'\]; expected at least",
    ):
        _norm("date,symbol,contract,close\n2020-01-02,ZL,ZLH2020,30\n")


def test_empty_file_is_refused():
    with pytest.raises(DataContractError, match=r"c\.csv: the file is empty"):
        _norm(HEADER)


BAD_ROWS = [
    # (bad row, column, the words of the rule in the message)
    ("02/01/2020,ZL,ZLH2020,2020-03-13,30,1,1", "date", "is missing or unparsable.*ISO dates"),
    ("2020-01-02,ZL,ZLH2020,13.03.2020,30,1,1", "expiry", "is missing or unparsable.*ISO dates"),
    ("1899-12-29,ZL,ZLH1900,1900-03-13,30,1,1", "date", "is before 1900-01-01"),
    ("2020-01-02,ZL,ZLH2020,2020-03-13,,1,1", "close", "is missing, non-positive.*> 0"),
    ("2020-01-02,ZL,ZLH2020,2020-03-13,0,1,1", "close", "is missing, non-positive.*> 0"),
    ("2020-01-02,ZL,ZLH2020,2020-03-13,inf,1,1", "close", "is missing, non-positive.*> 0"),
    ("2020-01-02,ZL,ZLH2020,2020-03-13,abc,1,1", "close", "is not numeric.*decimal numbers"),
    ("2020-01-02,ZL,ZLH2020,2020-03-13,30,-1,1", "volume", "is negative.*volume >= 0"),
    ("2020-01-02,ZL,ZLH2020,2020-03-13,30,x,1", "volume", "is not numeric.*decimal numbers"),
    ("2020-01-02,ZL,ZLH2020,2020-03-13,30,1,-5", "open_interest", "is negative.*interest >= 0"),
    ("2020-01-02,ZL,ZLH20,2020-03-13,30,1,1", "contract", "is not a contract code.*ZLF1996"),
    ("2020-01-02,ZL,ZLA2020,2020-03-13,30,1,1", "contract", "is not a contract code.*F G H"),
    ("2020-01-02,ZL,zlh2020,2020-03-13,30,1,1", "contract", "is not a contract code"),
    ("2020-01-02,,ZLH2020,2020-03-13,30,1,1", "symbol", "is empty.*a symbol such as ZL"),
    (
        "2020-01-02,ZL,ZLH2020,2020-05-14,30,1,1",
        "expiry",
        "is not in the contract code's delivery month or the month before it.*last trade date",
    ),
    (
        "2020-01-02,ZL,ZLH2020,2020-01-31,30,1,1",
        "expiry",
        "is not in the contract code's delivery month or the month before it",
    ),
    ("2020-03-16,ZL,ZLH2020,2020-03-13,30,1,1", "date", "is after the contract's expiry"),
    (
        "2020-01-06,ZL,ZLH2020,2020-03-12,30,1,1",
        "expiry",
        r"differs within one contract.*one expiry per \(symbol, contract\)",
    ),
    (
        "2020-01-02,ZL,ZLH2020,2020-03-13,31,1,1",
        "contract",
        r"is duplicated for one \(date, symbol\).*one row per \(date, symbol, contract\)",
    ),
]


@pytest.mark.parametrize(("row", "column", "rule"), BAD_ROWS)
def test_each_bad_row_is_refused_with_file_column_and_rule(row, column, rule):
    with pytest.raises(DataContractError, match=rf"(?s)c\.csv: column '{column}' {rule}"):
        _norm(GOOD + row + "\n")


def test_the_message_counts_and_shows_the_offending_rows():
    text = (
        GOOD + "2020-01-06,ZL,ZLH2020,2020-03-13,-2,1,1\n2020-01-07,ZL,ZLH2020,2020-03-13,0,1,1\n"
    )
    with pytest.raises(DataContractError) as err:
        _norm(text)
    msg = str(err.value)
    assert "c.csv: column 'close' is missing, non-positive or non-finite in 2 row(s)" in msg
    assert "row 4: date=2020-01-06, symbol='ZL', contract='ZLH2020', close=-2.0" in msg
    assert "row 5: date=2020-01-07" in msg


def test_future_dates_are_refused_but_a_future_expiry_is_not():
    today = dt.date(2020, 1, 2)
    assert normalize_curve(_csv(GOOD), "c.csv", today=today).height == 3
    with pytest.raises(DataContractError, match=r"c\.csv: column 'date' is after 2020-01-02"):
        normalize_curve(_csv(GOOD), "c.csv", today=dt.date(2020, 1, 1))


def test_combine_refuses_a_row_in_two_files_naming_both():
    a = _norm(GOOD)
    b = normalize_curve(_csv(HEADER + "2020-01-03,ZL,ZLH2020,2020-03-13,30.2,,\n"), "d.csv")
    with pytest.raises(
        DataContractError,
        match=r"c\.csv, d\.csv: column 'contract': duplicated \(date, symbol, contract\)"
        r" in 2 row\(s\).*expected one row per \(date, symbol, contract\) across all files",
    ):
        combine_curves([a, b], ["c.csv", "d.csv"])


def test_combine_refuses_one_contract_with_two_expiries_across_files():
    a = _norm(GOOD)
    b = normalize_curve(_csv(HEADER + "2020-01-06,ZL,ZLH2020,2020-03-12,30.2,,\n"), "d.csv")
    with pytest.raises(
        DataContractError,
        match=r"c\.csv, d\.csv: column 'expiry': one contract has different expiries",
    ):
        combine_curves([a, b], ["c.csv", "d.csv"])


def test_combine_concatenates_and_sorts():
    a = _norm(GOOD)
    b = normalize_curve(_csv(HEADER + "2020-01-02,ZS,ZSH2020,2020-03-13,900,,\n"), "d.csv")
    out = combine_curves([b, a], ["d.csv", "c.csv"])
    assert out.height == 4 and out["symbol"].to_list() == ["ZL", "ZL", "ZL", "ZS"]
    with pytest.raises(DataContractError, match="no raw curve files were given"):
        combine_curves([], [])


# --- the roll, on a hand-built curve ----------------------------------------------------------------

DAYS = business_days(dt.date(2020, 1, 2), 40)  # 2020-01-02 (position 0) .. 2020-02-26 (39)
# contract: (expiry, first position quoted, last position quoted, close at position 0)
HAND = {
    "ZLG2020": (dt.date(2020, 2, 14), 0, 31, 100.0),  # FND 2020-01-31 (position 21)
    "ZLH2020": (dt.date(2020, 3, 13), 0, 39, 110.0),  # FND 2020-02-28 (past the data)
    "ZLJ2020": (dt.date(2020, 4, 14), 0, 39, 121.0),  # FND 2020-03-31
}


def _hand_curve() -> pl.DataFrame:
    rows = [
        {"date": d, "symbol": "ZL", "contract": c, "expiry": e, "close": base + i}
        for c, (e, first, last, base) in HAND.items()
        for i, d in enumerate(DAYS)
        if first <= i <= last
    ]
    return normalize_curve(pl.DataFrame(rows), "hand")


def test_hand_built_schedule():
    """days_before_notice=2 (the dates are every weekday, so positions count weekdays).
    ZLG2020: FND Fri 2020-01-31 is position 21, so its roll date is two weekdays earlier, Wed
    2020-01-29 (position 19), and it is held on positions 0..18 (last on Tue 01-28, closing the
    position at that close). ZLH2020: FND Fri 2020-02-28; roll date Wed 02-26, the last date
    (position 39): ZLJ2020 is held on the last day. ZLJ2020: FND Tue 2020-03-31, roll date Fri
    03-27, 22 weekdays after 02-26."""
    assert DAYS[21] == dt.date(2020, 1, 31) and DAYS[39] == dt.date(2020, 2, 26)
    sched = roll_schedule(_hand_curve(), RollSpec(days_before_notice=2))
    assert sched.columns == [
        "date",
        "symbol",
        "contract",
        "next_contract",
        "rolled",
        "days_to_roll",
        "quoted",
    ]
    assert sched["date"].to_list() == DAYS
    held = ["ZLG2020"] * 19 + ["ZLH2020"] * 20 + ["ZLJ2020"]
    assert sched["contract"].to_list() == held
    assert sched["next_contract"].to_list() == ["ZLH2020"] * 19 + ["ZLJ2020"] * 20 + [None]
    assert [i for i, r in enumerate(sched["rolled"]) if r] == [19, 39]
    expected_days = [19 - i for i in range(19)] + [39 - i for i in range(19, 39)] + [61 - 39]
    assert sched["days_to_roll"].to_list() == expected_days
    assert sched["quoted"].all()


def test_hand_built_adjustment_and_roll_table():
    """Closes are base + position: ZLG 100 + i, ZLH 110 + i, ZLJ 121 + i. The roll onto ZLH on
    position 19 moves at position 18's close: factor ZLH/ZLG = 128/118. The roll onto ZLJ on
    position 39 moves at position 38's close: factor 159/148. The last segment is the price."""
    curve = _hand_curve()
    spec = RollSpec(days_before_notice=2)
    f1, f2 = 128 / 118, 159 / 148
    table = roll_table(curve, spec)
    assert table["date"].to_list() == [DAYS[19], DAYS[39]]
    assert table["from_contract"].to_list() == ["ZLG2020", "ZLH2020"]
    assert table["to_contract"].to_list() == ["ZLH2020", "ZLJ2020"]
    assert table["factor"].to_list() == pytest.approx([f1, f2], rel=1e-15)
    series = continuous_series(curve, spec)
    assert series.columns == ["date", "symbol", "contract", "front", "adjusted"]
    front = [100 + i for i in range(19)] + [110 + i for i in range(19, 39)] + [121 + 39]
    assert series["front"].to_list() == front
    adjusted = (
        [(100 + i) * f1 * f2 for i in range(19)] + [(110 + i) * f2 for i in range(19, 39)] + [160]
    )
    assert series["adjusted"].to_list() == pytest.approx(adjusted, rel=1e-14)


def test_days_before_notice_zero_is_refused_for_want_of_a_holiday_calendar():
    with pytest.raises(ValueError, match=r"days_before_notice is 0; expected an integer >= 1"):
        RollSpec(days_before_notice=0)


def test_the_held_contract_on_a_date_does_not_depend_on_other_dates():
    """The roll counts weekdays, so a missing day (an exchange holiday) or a cut after t leaves
    every other date's schedule as it was: the rule is causal."""
    curve = _hand_curve()
    spec = RollSpec(days_before_notice=2)
    full = roll_schedule(curve, spec)
    for missing in (dt.date(2020, 1, 27), dt.date(2020, 1, 29), dt.date(2020, 1, 31)):
        holed = roll_schedule(curve.filter(pl.col("date") != missing), spec)
        kept = full.filter(pl.col("date") != missing)
        cols = ["date", "contract", "next_contract", "days_to_roll"]
        assert holed.select(cols).equals(kept.select(cols)), missing
    for t in DAYS[5:]:
        cut = roll_schedule(curve.filter(pl.col("date") <= t), spec)
        assert cut.equals(full.filter(pl.col("date") <= t)), t


def _random_curve(seed: int, n: int = 260) -> pl.DataFrame:
    """Two symbols, contracts of every month quoted from 9 months before expiry until expiry,
    each contract its own random walk."""
    rng = np.random.default_rng(seed)
    days = business_days(dt.date(2011, 1, 3), n)
    rows = []
    for symbol in ("ZL", "HO"):
        for year in (2011, 2012):
            for month in range(1, 13):
                letter = "FGHJKMNQUVXZ"[month - 1]
                expiry = dt.date(year, month, 14)
                while expiry.weekday() >= 5:
                    expiry -= dt.timedelta(days=1)
                path = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
                for i, d in enumerate(days):
                    if expiry - dt.timedelta(days=270) <= d <= expiry:
                        rows.append(
                            {
                                "date": d,
                                "symbol": symbol,
                                "contract": f"{symbol}{letter}{year}",
                                "expiry": expiry,
                                "close": float(path[i]),
                            }
                        )
    return normalize_curve(pl.DataFrame(rows), f"random {seed}")


def _check_returns(curve: pl.DataFrame, spec: RollSpec) -> None:
    """Each day's adjusted return is the held contract's own return since the previous row."""
    series = continuous_series(curve, spec).sort("symbol", "date")
    own = curve.select("symbol", "date", "contract", "close")
    checked = (
        series.with_columns(
            pl.col("date").shift(1).over("symbol").alias("prev"),
            (pl.col("adjusted") / pl.col("adjusted").shift(1)).over("symbol").alias("adj_ret"),
            (pl.col("contract") != pl.col("contract").shift(1)).over("symbol").alias("roll"),
        )
        .join(
            own.rename({"date": "prev", "close": "prev_close"}),
            on=["symbol", "prev", "contract"],
            how="left",
        )
        .drop_nulls("prev")
    )
    own_ret = (checked["front"] / checked["prev_close"]).to_numpy()
    assert np.allclose(checked["adj_ret"].to_numpy(), own_ret, rtol=1e-12, atol=0)
    rolls = checked.filter(pl.col("roll"))
    assert rolls.height == roll_table(curve, spec).height
    assert rolls["prev_close"].null_count() == 0
    last = series.group_by("symbol").agg(pl.col("contract").last().alias("c"))
    tail = series.join(last, on="symbol").filter(pl.col("contract") == pl.col("c"))
    assert tail["adjusted"].to_list() == pytest.approx(tail["front"].to_list(), rel=1e-15)


@pytest.mark.parametrize(("seed", "days"), [(1, 1), (2, 3), (3, 5), (4, 9)])
def test_adjusted_returns_are_the_held_contracts_own_returns(seed, days):
    curve = _random_curve(seed)
    spec = RollSpec(days_before_notice=days)
    _check_returns(curve, spec)
    sched = roll_schedule(curve, spec)
    assert sched.filter(pl.col("rolled")).height == roll_table(curve, spec).height
    assert (sched["days_to_roll"] >= 1).all()


# --- the roll's errors ---------------------------------------------------------------------------


def _drop(curve: pl.DataFrame, contract: str, positions: list[int]) -> pl.DataFrame:
    gone = [DAYS[p] for p in positions]
    return curve.filter(~((pl.col("contract") == contract) & pl.col("date").is_in(gone)))


def test_a_one_day_gap_of_the_held_contract_is_flagged_and_skipped():
    curve = _drop(_hand_curve(), "ZLH2020", [25])
    spec = RollSpec(days_before_notice=2)
    sched = roll_schedule(curve, spec)
    assert sched.height == 40
    assert sched.filter(~pl.col("quoted"))["date"].to_list() == [DAYS[25]]
    series = continuous_series(curve, spec)
    assert DAYS[25] not in series["date"].to_list() and series.height == 39
    _check_returns(curve, spec)


def test_a_longer_gap_of_the_held_contract_names_symbol_contract_and_date():
    curve = _drop(_hand_curve(), "ZLH2020", [25, 26])
    with pytest.raises(
        RollError,
        match=r"symbol 'ZL': the held contract has no quote on more than 1 consecutive "
        r"trading day\(s\) in 1 run\(s\): ZLH2020 from 2020-02-06 \(2 day\(s\)\)",
    ):
        roll_schedule(curve, RollSpec(days_before_notice=2))
    with pytest.raises(RollError, match=r"ZLH2020 from 2020-02-06 \(1 day\(s\)\)"):
        roll_schedule(
            _drop(_hand_curve(), "ZLH2020", [25]),
            RollSpec(days_before_notice=2, max_missing_days=0),
        )


def test_a_roll_without_the_new_contracts_previous_close_is_refused():
    curve = _drop(_hand_curve(), "ZLH2020", [18])
    with pytest.raises(
        RollError,
        match=r"1 roll\(s\) lack the new contract's close on the day before the roll: ZL "
        r"ZLG2020 -> ZLH2020 on 2020-01-29 \(no ZLH2020 close on 2020-01-28\)",
    ):
        continuous_series(curve, RollSpec(days_before_notice=2))


def test_no_contract_left_to_hold_is_refused():
    curve = _hand_curve().filter(pl.col("contract") == "ZLG2020")
    with pytest.raises(RollError, match=r"symbol 'ZL': no contract left to hold on 2020-01-29"):
        roll_schedule(curve, RollSpec(days_before_notice=2))


# --- the real curve ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_curve() -> pl.DataFrame:
    if not REAL_CURVE.is_file():
        pytest.skip(f"{REAL_CURVE} is absent")
    return normalize_curve(pl.read_csv(REAL_CURVE, infer_schema=False), REAL_CURVE.name)


@pytest.mark.realdata
def test_real_curve_rolls_before_every_first_notice_day(real_curve):
    assert real_curve.height == 147_260
    assert sorted(real_curve["symbol"].unique()) == ["HO", "ZC", "ZL", "ZM", "ZS", "ZW"]
    spec = RollSpec()
    sched = roll_schedule(real_curve, spec)
    pairs = real_curve.select("symbol", "date").unique()
    assert sched.height == pairs.height
    assert sched.select("symbol", "date").n_unique() == sched.height
    fnd = {c: first_notice_day(c) for c in sched["contract"].unique()}
    last_held = sched.group_by("contract").agg(pl.col("date").max()).rows()
    assert all(d < fnd[c] for c, d in last_held)
    # the one day the held contract has no quote in the file
    gaps = sched.filter(~pl.col("quoted")).select("symbol", "date", "contract").rows()
    assert gaps == [("ZS", dt.date(1999, 11, 4), "ZSF2000")]
    series = continuous_series(real_curve, spec)
    assert series.height == sched.height - 1
    assert series["adjusted"].is_finite().all() and (series["adjusted"] > 0).all()
    _check_returns(real_curve, spec)
    rolls = dict(roll_table(real_curve, spec).group_by("symbol").len().rows())
    assert rolls == {"HO": 188, "ZC": 69, "ZL": 125, "ZM": 85, "ZS": 110, "ZW": 79}
    assert all(math.isfinite(v) for v in roll_table(real_curve, spec)["factor"])
