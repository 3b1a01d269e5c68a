"""The sample futures curve: its nearest contract is the market's front month, it passes the curve
contract and the roll rule, it is deterministic and it has the exchange's months, expiries, carry
regimes and open-interest roll."""

from __future__ import annotations

import calendar
import datetime as dt
import time

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core.curves.contract import CURVE_SCHEMA, delivery_month, normalize_curve
from cbi_pipeline.core.curves.roll import (
    RollSpec,
    continuous_series,
    first_notice_day,
    roll_schedule,
    roll_table,
)
from cbi_pipeline.core.sample.curve import (
    contract_calendar,
    sample_curve,
    skew_transform,
)
from cbi_pipeline.core.sample.curve_calibration import (
    CARRY_BY_MONTH,
    CONTRACT_MONTHS,
    CONTRACTS_PER_DATE,
    CURVE_SYMBOLS,
)
from cbi_pipeline.core.sample.generator import SampleMarket, SampleSpec, generate_sample_market

TODAY = dt.date(2026, 12, 2)
SHORT = SampleSpec(start=dt.date(2000, 1, 3), end=dt.date(2003, 12, 31))


@pytest.fixture(scope="module")
def short() -> SampleMarket:
    return generate_sample_market(SHORT)


@pytest.fixture(scope="module")
def full() -> SampleMarket:
    return generate_sample_market(SampleSpec(), today=TODAY)


def _ranked(curve: pl.DataFrame) -> pl.DataFrame:
    """The curve with ``k``: 1 for the earliest expiry of each (symbol, date), then 2, ..."""
    return curve.sort("symbol", "date", "expiry").with_columns(
        k=pl.int_range(1, pl.len() + 1).over("symbol", "date")
    )


def _first_two(curve: pl.DataFrame) -> pl.DataFrame:
    ranked = _ranked(curve)
    one = ranked.filter(pl.col("k") == 1).drop("k")
    two = ranked.filter(pl.col("k") == 2).select(
        "symbol",
        "date",
        pl.col("close").alias("close2"),
        pl.col("open_interest").alias("oi2"),
    )
    return one.join(two, on=["symbol", "date"])


def _naive_expiry(symbol: str, year: int, month: int) -> dt.date:
    """The exchange rule by a plain loop: CBOT the last weekday before the 15th of the delivery
    month; NYMEX heating oil the last weekday of the month before it."""
    if symbol == "HO":
        y, m = (year - 1, 12) if month == 1 else (year, month - 1)
        day = dt.date(y, m, calendar.monthrange(y, m)[1])
    else:
        day = dt.date(year, month, 14)
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


# --- the nearest contract is the market's front month -----------------------------------------


def test_nearest_contract_has_exactly_the_market_close_and_volume_on_every_date(
    full: SampleMarket,
) -> None:
    market = full.market.filter(pl.col("symbol").is_in(CURVE_SYMBOLS)).select(
        "date", "symbol", pl.col("close").alias("m_close"), pl.col("volume").alias("m_volume")
    )
    nearest = _ranked(full.curve).filter(pl.col("k") == 1)
    joined = nearest.join(market, on=["date", "symbol"], how="full", coalesce=True)
    assert joined.height == market.height == nearest.height  # same (date, symbol) pairs
    assert (joined["close"] == joined["m_close"]).all()  # bit for bit, not approximately
    assert (joined["volume"] == joined["m_volume"]).all()


def test_a_date_the_market_lacks_for_a_symbol_has_no_curve_rows(short: SampleMarket) -> None:
    days = set(short.market["date"].unique().to_list())
    for sym in ("ZS", "HO"):
        mine = set(short.market.filter(pl.col("symbol") == sym)["date"].to_list())
        quoted = set(short.curve.filter(pl.col("symbol") == sym)["date"].to_list())
        assert quoted == mine
        assert len(days - mine) > 0  # the sample drops ~1% of days for every symbol but ZL


def test_the_market_is_unchanged_by_the_curve(short: SampleMarket) -> None:
    again = generate_sample_market(SHORT)
    assert again.market.equals(short.market, null_equal=True)
    assert sample_curve(short.market, SHORT.seed).equals(short.curve, null_equal=True)


# --- the curve contract and the roll rule ----------------------------------------------------


def test_the_default_curve_passes_normalize_curve_and_the_roll_rule(full: SampleMarket) -> None:
    curve = full.curve
    assert dict(curve.schema) == dict(CURVE_SCHEMA)
    assert curve.equals(curve.sort("symbol", "date", "expiry"), null_equal=True)
    normalized = normalize_curve(curve, "sample curve", TODAY)
    assert normalized.equals(curve, null_equal=True)
    series = continuous_series(normalized, RollSpec())
    rolls = roll_table(normalized, RollSpec())
    schedule = roll_schedule(normalized, RollSpec())
    assert schedule["quoted"].all()  # the held contract is quoted on every date
    assert series.height == schedule.height == curve.select("symbol", "date").unique().height
    assert set(rolls["symbol"].unique()) == set(CURVE_SYMBOLS)
    years = 27
    per_symbol = dict(rolls.group_by("symbol").len().iter_rows())
    for sym in CURVE_SYMBOLS:
        assert per_symbol[sym] >= years * len(CONTRACT_MONTHS[sym]) - 2, sym


def test_each_date_quotes_the_nearest_unexpired_contract_and_the_next_ones(
    short: SampleMarket,
) -> None:
    for sym in CURVE_SYMBOLS:
        _, codes, expiry = contract_calendar(sym, 1999, 2005)
        listing = pl.DataFrame(
            {
                "contract": codes.tolist(),
                "position": np.arange(codes.size),
                "prev_expiry": pl.Series(np.roll(expiry, 1), dtype=pl.Date),
            }
        )
        per_date = (
            short.curve.filter(pl.col("symbol") == sym)
            .join(listing, on="contract")
            .group_by("date")
            .agg(
                pl.len(),
                pl.col("position").min().alias("first"),
                pl.col("position").max().alias("last"),
                pl.col("expiry").min(),
                pl.col("prev_expiry").sort_by("position").first(),
            )
        )
        assert per_date["len"].unique().to_list() == [CONTRACTS_PER_DATE[sym]], sym
        assert (per_date["last"] - per_date["first"] + 1 == per_date["len"]).all()  # consecutive
        assert (per_date["expiry"] >= per_date["date"]).all()  # the nearest is unexpired ...
        assert (per_date["prev_expiry"] < per_date["date"]).all()  # ... and no earlier one is


def test_a_contract_is_quoted_through_its_expiry_day_and_never_after(short: SampleMarket) -> None:
    life = short.curve.group_by("symbol", "contract").agg(
        pl.col("date").max().alias("last"), pl.col("expiry").first()
    )
    assert (life["last"] <= life["expiry"]).all()
    market_days = short.market.select("symbol", pl.col("date").alias("expiry"), traded=True)
    expired = life.filter(pl.col("expiry") <= SHORT.end).join(
        market_days, on=["symbol", "expiry"], how="left"
    )
    traded_on_expiry = expired.filter(pl.col("traded").fill_null(False))
    assert traded_on_expiry.height > 0.95 * expired.height
    assert (traded_on_expiry["last"] == traded_on_expiry["expiry"]).all()


def test_contracts_are_the_exchange_months_and_expire_by_the_exchange_rule(
    short: SampleMarket,
) -> None:
    contracts = short.curve.group_by("symbol", "contract").agg(pl.col("expiry").first())
    for sym, code, expiry in contracts.iter_rows():
        assert code.startswith(sym) and len(code) == len(sym) + 5, code
        year, month = delivery_month(code)
        assert code[len(sym)] in CONTRACT_MONTHS[sym], code
        assert expiry == _naive_expiry(sym, year, month), code
        if sym == "HO":
            assert expiry == first_notice_day(code)  # NYMEX: the FND is the last trade date
        else:
            assert (expiry.year, expiry.month) == (year, month)
            assert expiry > first_notice_day(code)
    assert set(CONTRACT_MONTHS) == set(CURVE_SYMBOLS)
    assert CONTRACT_MONTHS["ZS"] == "FHKNQUX" and CONTRACT_MONTHS["ZC"] == "HKNUZ"
    assert CONTRACT_MONTHS["HO"] == "FGHJKMNQUVXZ"


# --- deterministic -----------------------------------------------------------------------------


def test_same_market_and_seed_give_a_bit_identical_curve_and_another_seed_another(
    short: SampleMarket,
) -> None:
    assert sample_curve(short.market, SHORT.seed).equals(short.curve, null_equal=True)
    other = sample_curve(short.market, SHORT.seed + 1)
    assert other.select("date", "symbol", "contract").equals(
        short.curve.select("date", "symbol", "contract")
    )
    later = _ranked(other)["k"] > 1
    differ = other.filter(later)["close"] != short.curve.filter(later)["close"]
    assert differ.mean() > 0.8  # type: ignore[operator]


def test_an_earlier_end_gives_an_exact_prefix_of_the_curve(short: SampleMarket) -> None:
    cut = generate_sample_market(SampleSpec(start=SHORT.start, end=dt.date(2002, 6, 28)))
    head = short.curve.filter(pl.col("date") <= dt.date(2002, 6, 28))
    assert cut.curve.equals(head, null_equal=True)


# --- carry and roll dynamics ------------------------------------------------------------------


def test_contango_and_backwardation_both_occur_for_every_symbol(full: SampleMarket) -> None:
    spreads = _first_two(full.curve)
    shares = spreads.group_by("symbol").agg(
        (pl.col("close2") > pl.col("close")).mean().alias("contango"),
        (pl.col("close2") < pl.col("close")).mean().alias("backwardation"),
    )
    for sym, contango, backwardation in shares.iter_rows():
        assert contango > 0.2, sym
        assert backwardation > 0.01, sym  # real 1995-2010: ZC 5%, HO 27%, ZM 58%


def test_grain_old_crop_new_crop_inversion_and_heating_oil_winter_backwardation(
    full: SampleMarket,
) -> None:
    ranked = _ranked(full.curve).with_columns(
        next_close=pl.col("close").shift(-1).over("symbol", "date"),
        month=pl.col("contract").str.slice(-5, 1),
    )
    mean_log_spread = dict(
        ranked.filter(pl.col("next_close").is_not_null())
        .group_by("symbol", "month")
        .agg((pl.col("next_close") / pl.col("close")).log().mean())
        .select(pl.concat_str("symbol", "month"), "next_close")
        .iter_rows()
    )
    assert mean_log_spread["ZSQ"] < 0 < mean_log_spread["ZSX"]  # Aug->Sep inverted, Nov->Jan not
    assert mean_log_spread["HOH"] < 0 < mean_log_spread["HOU"]  # winter inverted, autumn not


def test_open_interest_rolls_to_the_next_contract_before_the_first_notice_day(
    short: SampleMarket,
) -> None:
    pairs = _first_two(short.curve)
    over = (
        pairs.filter(pl.col("oi2") > pl.col("open_interest"))
        .group_by("symbol", "contract")
        .agg(pl.col("date").min().alias("over"))
    )
    done = pairs.filter(pl.col("expiry") <= SHORT.end).select("symbol", "contract").unique()
    crossed = done.join(over, on=["symbol", "contract"], how="left").with_columns(
        fnd=pl.col("contract").map_elements(first_notice_day, return_dtype=pl.Date)
    )
    before = crossed.select((pl.col("over") < pl.col("fnd")).fill_null(False).mean()).item()
    assert crossed.height > 100
    assert before > 0.8  # real 2000-2010: 96-100% per symbol
    # The nearest's open interest falls as its expiry nears.
    near = pairs.with_columns(left=pl.business_day_count(pl.col("date"), pl.col("expiry")))
    late = near.filter(pl.col("left") < 5)["open_interest"].median()
    early = near.filter(pl.col("left").is_between(25, 40))["open_interest"].median()
    assert isinstance(late, float) and isinstance(early, float)
    assert late < 0.2 * early


def test_volume_and_open_interest_are_whole_non_negative_numbers(short: SampleMarket) -> None:
    for col in ("volume", "open_interest"):
        values = short.curve[col]
        assert values.null_count() == 0
        assert (values >= 0).all() and (values == values.round()).all()


# --- helpers, input checks and speed -------------------------------------------------------


def test_skew_transform_is_standardised_and_the_identity_at_zero() -> None:
    z = np.random.default_rng(0).standard_normal(400_000)
    for lam in (-0.5, 0.3, 0.9):
        g = skew_transform(z, lam)
        assert abs(g.mean()) < 0.01 and abs(g.std() - 1.0) < 0.01
        assert np.sign(float(skew_transform(np.zeros(1), lam)[0])) == np.sign(lam)
    assert np.array_equal(skew_transform(z[:10], 0.0), z[:10])
    # bounded above at (1 / lam - mean) / sd: contango is capped, backwardation is not
    mean, sd = -np.expm1(0.125) / 0.5, np.sqrt(np.exp(0.25) * np.expm1(0.25)) / 0.5
    assert skew_transform(np.array([50.0]), 0.5)[0] == pytest.approx((2.0 - mean) / sd)
    assert skew_transform(np.array([-50.0]), 0.5)[0] < -1e6


def test_carry_knots_are_ordered_by_days_to_expiry() -> None:
    for sym in CURVE_SYMBOLS:
        assert set(CARRY_BY_MONTH[sym]) == set(CONTRACT_MONTHS[sym])
        for knots in CARRY_BY_MONTH[sym].values():
            days = [k[0] for k in knots]
            assert days == sorted(days) and len(knots) == CONTRACTS_PER_DATE[sym] - 1


def test_sample_curve_refuses_a_frame_that_is_not_a_sample_market(short: SampleMarket) -> None:
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['volume'\]"):
        sample_curve(short.market.drop("volume"), 1)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        sample_curve(short.market, -1)
    bad = short.market.with_columns(
        close=pl.when((pl.col("symbol") == "ZL") & (pl.col("date") == SHORT.start))
        .then(0.0)
        .otherwise(pl.col("close"))
    )
    with pytest.raises(ValueError, match=r"1 market closes .* 2000-01-03 ZL close=0.0"):
        sample_curve(bad, 1)
    zl_row = short.market.filter(pl.col("symbol") == "ZL").head(1)
    with pytest.raises(
        ValueError, match=r"2 market rows share a \(date, symbol\), e.g. 2000-01-03 ZL"
    ):
        sample_curve(pl.concat([short.market, zl_row]), 1)


def test_a_curve_symbol_missing_from_the_market_has_no_rows(short: SampleMarket) -> None:
    curve = sample_curve(short.market.filter(pl.col("symbol") != "HO"), SHORT.seed)
    assert "HO" not in curve["symbol"].to_list()
    assert curve.equals(short.curve.filter(pl.col("symbol") != "HO"), null_equal=True)
    assert sample_curve(short.market.clear(), 1).schema == short.curve.schema


def test_the_default_curve_generates_well_under_two_seconds(full: SampleMarket) -> None:
    started = time.perf_counter()
    sample_curve(full.market, 7)
    assert time.perf_counter() - started < 2.0
