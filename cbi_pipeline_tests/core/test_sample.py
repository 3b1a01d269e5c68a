"""The sample market: deterministic, well-formed, calibrated regimes, weak lead-lag relations."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core.contracts import normalize_market, normalize_signals
from cbi_pipeline.core.sample import prices
from cbi_pipeline.core.sample.generator import (
    SampleMarket,
    SampleSpec,
    generate_sample_market,
    last_business_day_before,
)
from cbi_pipeline.core.sample.prices import board_crush
from cbi_pipeline.core.sample.symbols import (
    FUTURES_SYMBOLS,
    MARKET_SYMBOLS,
    NEWS_SERIES,
    SIGNAL_SERIES,
    WEATHER_SERIES,
)

TODAY = dt.date(2026, 11, 24)
MARKET_SCHEMA = {
    "date": pl.Date,
    "symbol": pl.String,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
}
SIGNALS_SCHEMA = {"date": pl.Date, "series": pl.String, "value": pl.Float64}


@pytest.fixture(scope="module")
def full() -> SampleMarket:
    return generate_sample_market(SampleSpec(), today=TODAY)


def _closes(market: pl.DataFrame, symbol: str) -> pl.DataFrame:
    return market.filter(pl.col("symbol") == symbol).select("date", "close").sort("date")


def _ann_vol(market: pl.DataFrame, symbol: str, first: int, last: int) -> float:
    closes = _closes(market, symbol).filter(pl.col("date").dt.year().is_between(first, last))
    returns = np.diff(np.log(closes["close"].to_numpy()))
    return float(returns.std(ddof=1)) * np.sqrt(252.0)


def _series(signals: pl.DataFrame, name: str) -> pl.DataFrame:
    return signals.filter(pl.col("series") == name).sort("date")


def test_same_spec_seed_and_today_give_bit_identical_frames(full: SampleMarket) -> None:
    again = generate_sample_market(SampleSpec(), today=TODAY)
    assert again.market.equals(full.market, null_equal=True)
    assert again.signals.equals(full.signals, null_equal=True)


def test_a_different_seed_gives_different_prices_and_signals() -> None:
    spec = SampleSpec(end=dt.date(2003, 12, 31))
    a = generate_sample_market(spec)
    b = generate_sample_market(SampleSpec(end=spec.end, seed=spec.seed + 1))
    zl_a, zl_b = _closes(a.market, "ZL"), _closes(b.market, "ZL")
    assert zl_a["date"].equals(zl_b["date"])
    assert np.mean(zl_a["close"].to_numpy() != zl_b["close"].to_numpy()) > 0.9
    assert not a.signals.equals(b.signals)


def test_an_earlier_end_gives_an_exact_prefix_so_history_never_changes() -> None:
    short = generate_sample_market(SampleSpec(), today=dt.date(2009, 3, 2))
    long = generate_sample_market(SampleSpec(), today=dt.date(2011, 1, 1))
    end = short.market["date"].max()
    assert isinstance(end, dt.date)
    assert long.market.filter(pl.col("date") <= end).equals(short.market, null_equal=True)
    assert long.signals.filter(pl.col("date") <= end).equals(short.signals)


def test_schema_dtypes_and_sort_order_follow_the_raw_contracts(full: SampleMarket) -> None:
    assert dict(full.market.schema) == MARKET_SCHEMA
    assert dict(full.signals.schema) == SIGNALS_SCHEMA
    assert full.market.equals(full.market.sort("symbol", "date"), null_equal=True)
    assert full.signals.equals(full.signals.sort("series", "date"))


def test_sample_passes_the_pipelines_own_contract_validation(full: SampleMarket) -> None:
    market = normalize_market(full.market, "sample")
    signals = normalize_signals(full.signals, "sample")
    assert market.height == full.market.height
    assert signals.height == full.signals.height


def test_one_row_per_date_and_symbol_and_per_date_and_series(full: SampleMarket) -> None:
    assert not full.market.select(pl.struct("date", "symbol").is_duplicated().any()).item()
    assert not full.signals.select(pl.struct("date", "series").is_duplicated().any()).item()


def test_exactly_the_documented_symbols_and_series_are_present(full: SampleMarket) -> None:
    assert set(full.market["symbol"].unique()) == set(MARKET_SYMBOLS)
    assert set(full.signals["series"].unique()) == set(SIGNAL_SERIES)
    assert set(MARKET_SYMBOLS) == {
        *("ZL", "ZS", "ZM", "ZC", "ZW", "CL", "HO", "FCPO"),
        *("DXY", "VIX", "USDBRL", "USDMYR"),
    }
    prefixes = {name.split("_")[0] for name in SIGNAL_SERIES}
    assert prefixes == {"weather", "news", "policy", "macro"}


def test_prices_are_positive_finite_and_ohlc_consistent(full: SampleMarket) -> None:
    m = full.market
    for col in ("open", "high", "low", "close"):
        assert m[col].null_count() == 0
        assert m[col].is_finite().all()
        assert (m[col] > 0).all()
    checks = m.select(
        low_ok=(pl.col("low") <= pl.min_horizontal("open", "close")).all(),
        high_ok=(pl.max_horizontal("open", "close") <= pl.col("high")).all(),
        has_range=(pl.col("high") > pl.col("low")).mean(),
    )
    assert checks["low_ok"].item() and checks["high_ok"].item()
    assert checks["has_range"].item() > 0.99


def test_futures_have_positive_volume_and_indices_and_fx_have_none(full: SampleMarket) -> None:
    futures = full.market.filter(pl.col("symbol").is_in(FUTURES_SYMBOLS))
    assert futures["volume"].null_count() == 0
    assert (futures["volume"] > 0).all()
    others = full.market.filter(~pl.col("symbol").is_in(FUTURES_SYMBOLS))
    assert others.height > 0
    assert others["volume"].null_count() == others.height


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (dt.date(2024, 6, 10), dt.date(2024, 6, 7)),  # Monday -> Friday before
        (dt.date(2024, 6, 9), dt.date(2024, 6, 7)),  # Sunday -> Friday
        (dt.date(2024, 6, 11), dt.date(2024, 6, 10)),  # Tuesday -> Monday
        (dt.date(2024, 6, 8), dt.date(2024, 6, 7)),  # Saturday -> Friday
    ],
)
def test_end_defaults_to_the_last_business_day_strictly_before_today(
    today: dt.date, expected: dt.date
) -> None:
    assert last_business_day_before(today) == expected
    got = generate_sample_market(SampleSpec(start=dt.date(2024, 5, 1)), today=today)
    assert got.market["date"].max() == expected
    assert _closes(got.market, "ZL")["date"].max() == expected


def test_zl_trades_every_business_day_and_other_symbols_have_small_gaps(
    full: SampleMarket,
) -> None:
    end = full.market["date"].max()
    assert isinstance(end, dt.date)
    business_days = int(np.busday_count(dt.date(2000, 1, 3), end + dt.timedelta(days=1)))
    zl = _closes(full.market, "ZL")
    assert zl.height == business_days
    assert zl["date"].dt.weekday().to_numpy().max() <= 5
    for sym in MARKET_SYMBOLS:
        rows = full.market.filter(pl.col("symbol") == sym).height
        assert 0.97 * business_days <= rows <= business_days, sym


def test_an_explicit_end_wins_over_today_and_bad_specs_fail_loudly() -> None:
    spec = SampleSpec(start=dt.date(2020, 1, 1), end=dt.date(2020, 3, 31))
    got = generate_sample_market(spec, today=dt.date(2030, 1, 1))
    assert got.market["date"].max() == dt.date(2020, 3, 31)
    assert got.market["date"].min() == dt.date(2020, 1, 1)
    with pytest.raises(ValueError, match="start"):
        generate_sample_market(SampleSpec(start=dt.date(2020, 1, 6), end=dt.date(2020, 1, 3)))
    with pytest.raises(ValueError, match="seed"):
        generate_sample_market(SampleSpec(seed=-1), today=TODAY)


def test_levels_start_near_the_real_2000_levels_and_show_the_2008_peak_and_crash(
    full: SampleMarket,
) -> None:
    zl = _closes(full.market, "ZL")
    assert zl["close"][0] == pytest.approx(15.44, rel=0.01)  # the real first close
    year_2008 = zl.filter(pl.col("date").dt.year() == 2008)
    peak = year_2008["close"].to_numpy().max()
    december = year_2008.filter(pl.col("date").dt.month() == 12)["close"].to_numpy().mean()
    assert 55.0 <= peak <= 95.0  # real 2008 peak 70.4 US cents/lb
    assert december < 0.65 * peak  # real December 2008 ~31
    first_2000 = full.market.filter(pl.col("date") == dt.date(2000, 1, 3))
    starts = dict(first_2000.select("symbol", "close").iter_rows())
    assert starts["ZS"] == pytest.approx(456.5, rel=0.02)
    assert starts["CL"] == pytest.approx(25.56, rel=0.02)


def test_crisis_years_are_more_volatile_than_calm_years(full: SampleMarket) -> None:
    m = full.market
    assert _ann_vol(m, "ZL", 2008, 2009) > 1.2 * _ann_vol(m, "ZL", 2003, 2006)
    assert _ann_vol(m, "ZL", 2021, 2022) > 1.3 * _ann_vol(m, "ZL", 2017, 2019)
    vix = _closes(m, "VIX")
    calm = np.median(vix.filter(pl.col("date").dt.year().is_between(2017, 2019))["close"])
    for year in (2008, 2020):
        spike = vix.filter(pl.col("date").dt.year() == year)["close"].to_numpy().max()
        assert spike > 3.0 * calm, year


def test_usdmyr_is_pegged_near_3_80_until_july_2005(full: SampleMarket) -> None:
    myr = _closes(full.market, "USDMYR")
    peg = myr.filter(pl.col("date") < dt.date(2005, 7, 21))["close"].to_numpy()
    assert peg.min() >= 3.78 and peg.max() <= 3.82
    assert np.unique(peg).size > 10  # not a constant series (correlations stay defined)
    later = myr.filter(pl.col("date").dt.year() == 2015)["close"].to_numpy()
    assert later.max() > 4.0


def _crush_frame(market: pl.DataFrame) -> pl.DataFrame:
    wide = market.pivot(on="symbol", index="date", values="close").sort("date")
    return (
        wide.select("date", pl.col("ZL", "ZS", "ZM").forward_fill())  # carry over missing days
        .with_columns(crush=board_crush(pl.col("ZL"), pl.col("ZS"), pl.col("ZM")))
        .with_columns(dev=pl.col("crush") - pl.col("crush").rolling_mean(60))
    )


def _forward_fit(frame: pl.DataFrame, horizon: int) -> tuple[float, float]:
    """(slope, corr) of the next-h ZL log return on the crush deviation."""
    lz = pl.col("ZL").log()
    data = frame.with_columns(fwd=lz.shift(-horizon) - lz).drop_nulls(["dev", "fwd"])
    x, y = data["dev"].to_numpy(), data["fwd"].to_numpy()
    return float(np.polyfit(x, y, 1)[0]), float(np.corrcoef(x, y)[0, 1])


def test_crush_margin_mean_reversion_exists_but_is_weak(full: SampleMarket) -> None:
    crush = _crush_frame(full.market)
    assert np.median(crush["crush"]) == pytest.approx(1.0, abs=0.9)  # USD/bu, plausible margin
    for horizon in (1, 21):
        slope, corr = _forward_fit(crush, horizon)
        assert slope < 0.0, horizon
        assert abs(corr) < 0.3, horizon


def test_the_crush_mechanism_causes_the_negative_relation(
    full: SampleMarket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prices, "CRUSH_REVERSION", 0.0)  # the name price_paths reads
    without = generate_sample_market(SampleSpec(), today=TODAY)
    _, corr_with = _forward_fit(_crush_frame(full.market), 1)
    _, corr_without = _forward_fit(_crush_frame(without.market), 1)
    assert corr_with < corr_without - 0.015


def test_signals_follow_their_release_calendars(full: SampleMarket) -> None:
    s = full.signals
    zl_days = _closes(full.market, "ZL").height
    for name in (*WEATHER_SERIES, *NEWS_SERIES, "macro_us10y_yield"):
        assert _series(s, name).height == zl_days, name
    trade = _series(s, "policy_trade_tension_index")
    assert set(trade["date"].dt.weekday().unique()) == {5}  # Fridays
    trade_2019 = trade.filter(pl.col("date").dt.year() == 2019)["value"].to_numpy().mean()
    trade_2005 = trade.filter(pl.col("date").dt.year() == 2005)["value"].to_numpy().mean()
    assert trade_2019 > 2 * trade_2005
    cpi = _series(s, "macro_us_cpi_yoy")
    per_month = cpi.group_by(pl.col("date").dt.truncate("1mo")).len()
    assert per_month["len"].to_numpy().max() == 1
    assert cpi["date"].dt.day().to_numpy().min() >= 13
    fed_per_year = _series(s, "macro_fed_funds_rate").group_by(pl.col("date").dt.year()).len()
    assert fed_per_year.filter(pl.col("date") < 2026)["len"].is_between(7, 14).all()
    rfs = _series(s, "policy_rfs_mandate_bgal")
    assert rfs.filter(pl.col("date") == dt.date(2025, 6, 13))["value"].item() == 5.61
    assert rfs.group_by(pl.col("date").dt.truncate("1mo")).len()["len"].to_numpy().max() <= 2
    assert rfs["value"].n_unique() >= 10  # a step function with many announcements
    tax = _series(s, "policy_argentina_export_tax_pct")
    assert tax.group_by(pl.col("date").dt.truncate("1mo")).len()["len"].to_numpy().max() == 1


def test_sentiments_are_bounded_and_news_lags_rather_than_leads_zl(full: SampleMarket) -> None:
    s = full.signals
    for name in ("news_soyoil_sentiment", "news_biofuel_sentiment"):
        values = _series(s, name)["value"].to_numpy()
        assert values.min() >= -1.0 and values.max() <= 1.0
    assert (_series(s, "news_volume_index")["value"] > 0).all()
    zl = _closes(full.market, "ZL").with_columns(r=pl.col("close").log().diff())
    news = _series(s, "news_soyoil_sentiment").select("date", "value")
    joined = zl.join(news, on="date").with_columns(
        r_prev=pl.col("r").shift(1), r_next=pl.col("r").shift(-1)
    )
    joined = joined.drop_nulls()
    corr_prev = np.corrcoef(joined["value"], joined["r_prev"])[0, 1]
    corr_same = np.corrcoef(joined["value"], joined["r"])[0, 1]
    corr_next = np.corrcoef(joined["value"], joined["r_next"])[0, 1]
    assert corr_prev > 0.02  # sentiment reacts to yesterday's move
    assert abs(corr_same) < 0.03 and abs(corr_next) < 0.03  # and carries no news about ZL


def test_signals_dated_t_do_not_change_when_the_future_is_generated() -> None:
    """A truncation test: the sample up to t is the same whatever happens after t."""
    cut = dt.date(2012, 6, 29)
    short = generate_sample_market(SampleSpec(start=dt.date(2011, 1, 3), end=cut))
    long = generate_sample_market(SampleSpec(start=dt.date(2011, 1, 3), end=dt.date(2013, 1, 31)))
    assert long.signals.filter(pl.col("date") <= cut).equals(short.signals)
    assert long.market.filter(pl.col("date") <= cut).equals(short.market, null_equal=True)
