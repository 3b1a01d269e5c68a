"""Curve features: carry, slope, open-interest share, days to roll, and returns on the rolled
series; all of them causal (the truncation test cuts the curve with the market)."""

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core.blocks import BIG7_MACRO
from cbi_pipeline.core.contracts import DataContractError, check_signal_names
from cbi_pipeline.core.curves.contract import normalize_curve
from cbi_pipeline.core.curves.features import CURVE_FIELDS, curve_column, curve_daily
from cbi_pipeline.core.curves.roll import RollSpec, continuous_series, roll_schedule
from cbi_pipeline.core.features import build_features, truncation_mismatches
from cbi_pipeline.core.panel import PanelSpec, build_market_panel
from cbi_pipeline_tests.conftest import make_tiny_curve

CURVE_FEATURES = ("carry", "carry_z252", "carry_chg21", "curve_slope", "oi_share", "days_to_roll")


@pytest.fixture(scope="module")
def tiny_curve() -> pl.DataFrame:
    return normalize_curve(make_tiny_curve(), "tiny curve")


def curve_builder(
    market: pl.DataFrame, signals: pl.DataFrame, curve: pl.DataFrame | None = None
) -> pl.DataFrame:
    return build_features(build_market_panel(market, signals, curve=curve))[0]


def test_carry_slope_share_and_days_to_roll_on_a_known_curve(tiny_curve):
    """Every contract is spot * exp(0.03 * years to expiry): carry and slope are 0.03 exactly;
    each contract has the same open interest, so the held one's share is 1 / contracts quoted."""
    daily = curve_daily(tiny_curve)
    assert daily["carry"].to_numpy() == pytest.approx(0.03, abs=1e-12)
    assert daily["curve_slope"].to_numpy() == pytest.approx(0.03, abs=1e-12)
    quoted = tiny_curve.group_by("date", "symbol").len()
    share = daily.join(quoted, on=["date", "symbol"])
    assert share["oi_share"].to_numpy() == pytest.approx(1.0 / share["len"].to_numpy())
    sched = roll_schedule(tiny_curve).select("date", "symbol", "days_to_roll")
    days = daily.join(sched, on=["date", "symbol"], suffix="_sched")
    assert days["days_to_roll"].to_list() == days["days_to_roll_sched"].cast(pl.Float64).to_list()


def test_the_panel_and_the_catalog_carry_the_curve_features(tiny_market, tiny_signals, tiny_curve):
    panel = build_market_panel(tiny_market, tiny_signals, curve=tiny_curve)
    for symbol in ("ZL", "ZS"):
        for field in CURVE_FIELDS:
            assert curve_column(symbol, field) in panel.columns
    frame, catalog = build_features(panel)
    by_name = {d.name: d for d in catalog}
    for symbol in ("zl", "zs"):
        for name in CURVE_FEATURES:
            d = by_name[f"{symbol}_{name}"]
            assert d.block == BIG7_MACRO and frame[d.name].drop_nulls().len() > 0, d.name
    assert by_name["zl_ret_21d"].inputs == ("ZL_roll_adjusted",)
    assert "roll-adjusted ZL" in by_name["zl_ret_21d"].definition
    assert by_name["zl_rsi_14"].inputs == ("ZL_roll_adjusted",)
    # symbols without a curve keep their front close; no curve column is read as a signal
    assert by_name["cl_ret_21d"].inputs == ("CL_close",)
    assert not any(n.startswith("ZL_carry") for n in by_name)
    plain, _ = build_features(build_market_panel(tiny_market, tiny_signals))
    assert set(frame.columns) - set(plain.columns) == {
        f"{s}_{n}" for s in ("zl", "zs") for n in CURVE_FEATURES
    }


def test_returns_on_the_curve_are_the_held_contracts_own(tiny_market, tiny_signals, tiny_curve):
    """zl_ret_1d_lag1 at t is the rolled position's return of the day before: the held
    contract's own return, also across a roll, where the front close jumps."""
    frame, _ = build_features(build_market_panel(tiny_market, tiny_signals, curve=tiny_curve))
    series = continuous_series(tiny_curve.filter(pl.col("symbol") == "ZL"))
    own = (
        series.with_columns((pl.col("adjusted") / pl.col("adjusted").shift(1)).log().alias("r"))
        .with_columns(pl.col("r").shift(1).alias("lagged"), pl.col("contract").shift(1).alias("c"))
        .select("date", "lagged", "contract")
    )
    got = frame.select("date", "zl_ret_1d_lag1").join(own, on="date").drop_nulls()
    assert got.height > 250
    assert np.allclose(got["zl_ret_1d_lag1"], got["lagged"], rtol=1e-12, atol=1e-14)
    front = series.with_columns(
        (pl.col("front") / pl.col("front").shift(1)).log().alias("front_r"),
        (pl.col("adjusted") / pl.col("adjusted").shift(1)).log().alias("adj_r"),
        (pl.col("contract") != pl.col("contract").shift(1)).alias("roll"),
    ).filter(pl.col("roll"))
    assert front.height >= 4
    assert (abs(front["front_r"] - front["adj_r"]) > 1e-3).all()  # the jump the rolled series drops


def test_curve_features_pass_the_truncation_test(tiny_market, tiny_signals, tiny_curve):
    full = curve_builder(tiny_market, tiny_signals, tiny_curve)
    rolls = roll_schedule(tiny_curve.filter(pl.col("symbol") == "ZL")).filter("rolled")["date"]
    near_roll = [d for r in rolls.to_list()[:3] for d in (r - dt.timedelta(days=1), r)]
    trading = set(full["date"].to_list())
    dates = sorted({full["date"][i] for i in (40, 150, 260, 319)} | (set(near_roll) & trading))
    assert len(dates) >= 8
    found = truncation_mismatches(tiny_market, tiny_signals, dates, curve_builder, curve=tiny_curve)
    assert found == {}


def test_the_truncation_test_cuts_the_curve(tiny_market, tiny_signals, tiny_curve):
    """A feature reading the curve five days ahead is found: the curve is cut with the market."""

    def peeking(market, signals, curve):
        frame = curve_builder(market, signals, curve)
        ahead = curve_daily(curve).filter(pl.col("symbol") == "ZL")
        ahead = ahead.select("date", pl.col("carry").shift(-5).alias("zl_carry_ahead"))
        return frame.join(ahead, on="date", how="left")

    full = curve_builder(tiny_market, tiny_signals, tiny_curve)
    dates = [full["date"][i] for i in (60, 200)]
    found = truncation_mismatches(tiny_market, tiny_signals, dates, peeking, curve=tiny_curve)
    assert found == {d: ["zl_carry_ahead"] for d in dates}


def test_a_signal_named_like_a_curve_column_is_refused(tiny_market, tiny_signals):
    signals = tiny_signals.with_columns(pl.lit("zl_carry").alias("series"))
    with pytest.raises(DataContractError, match=r"signals\.csv: column 'series'.*zl_carry"):
        check_signal_names(signals, tiny_market, "ZL", "signals.csv", ["ZL_carry"])
    other = tiny_signals.with_columns(pl.lit("wheat_roll_adjusted").alias("series"))
    with pytest.raises(DataContractError, match="_roll_adjusted"):
        check_signal_names(other, tiny_market, "ZL", "signals.csv")


def test_the_roll_rule_reaches_the_panel(tiny_market, tiny_signals, tiny_curve):
    """days_to_roll follows the configured rule: two more weekdays of notice, two fewer days."""
    early = build_market_panel(
        tiny_market, tiny_signals, PanelSpec(roll=RollSpec(days_before_notice=7)), tiny_curve
    )
    late = build_market_panel(tiny_market, tiny_signals, curve=tiny_curve)
    both = early.select("date", pl.col("ZL_days_to_roll").alias("e")).join(
        late.select("date", pl.col("ZL_days_to_roll").alias("l")), on="date"
    )
    assert math.isclose((both["l"] - both["e"]).mode()[0], 2.0)
