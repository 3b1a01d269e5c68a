import itertools
import math

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core.blocks import BLOCKS
from cbi_pipeline.core.features import build_features, crush_margin, truncation_mismatches
from cbi_pipeline.core.panel import build_market_panel


@pytest.fixture
def tiny_features(tiny_market, tiny_signals):
    panel = build_market_panel(tiny_market, tiny_signals)
    frame, catalog = build_features(panel)
    return panel, frame, catalog


def naive_vol(p: list[float | None], w: int) -> list[float | None]:
    r = [None] + [
        None if a is None or b is None else math.log(b / a) for a, b in itertools.pairwise(p)
    ]
    out: list[float | None] = []
    for i in range(len(p)):
        window = [x for x in r[max(0, i - w + 1) : i + 1] if x is not None]
        if len(window) < max(2, 2 * w // 3):
            out.append(None)
        else:
            out.append(float(np.std(window, ddof=1)) * math.sqrt(252))
    return out


def naive_rsi(p: list[float], n: int = 14) -> list[float | None]:
    gains, losses, out = None, None, [None]
    for i in range(1, len(p)):
        d = p[i] - p[i - 1]
        g, lo = max(d, 0.0), max(-d, 0.0)
        if gains is None:
            gains, losses = g, lo
        else:
            gains = (1 - 1 / n) * gains + g / n
            losses = (1 - 1 / n) * losses + lo / n
        out.append(None if i < n else 100 - 100 / (1 + gains / losses))
    return out


def assert_close(actual: list, expected: list, tol: float = 1e-9) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        if e is None:
            assert a is None, f"row {i}: expected null, got {a}"
        else:
            assert a is not None and math.isclose(a, e, rel_tol=tol, abs_tol=tol), (
                f"row {i}: {a} != {e}"
            )


def test_returns_match_naive_loop(tiny_features):
    panel, frame, _ = tiny_features
    for sym, w in (("ZL", 1), ("ZL", 21), ("ZS", 5), ("CL", 63)):
        p = panel[f"{sym}_close"].to_list()
        expected = [
            None if i < w or p[i] is None or p[i - w] is None else math.log(p[i] / p[i - w])
            for i in range(len(p))
        ]
        assert_close(frame[f"{sym.lower()}_ret_{w}d"].to_list(), expected)


def test_volatility_matches_naive_loop(tiny_features):
    panel, frame, _ = tiny_features
    for sym in ("ZL", "ZM"):
        assert_close(
            frame[f"{sym.lower()}_vol_21d"].to_list(),
            naive_vol(panel[f"{sym}_close"].to_list(), 21),
            1e-7,
        )


def test_rsi_matches_wilder_loop(tiny_features):
    panel, frame, _ = tiny_features
    assert_close(frame["zl_rsi_14"].to_list(), naive_rsi(panel["ZL_close"].to_list()), 1e-7)


def test_crush_margin_hand_computed():
    frame = pl.DataFrame({"zl": [50.0], "zm": [400.0], "zs": [1300.0]})
    value = frame.select(crush_margin(pl.col("zl"), pl.col("zm"), pl.col("zs"))).item()
    assert math.isclose(value, 0.022 * 400 + 0.11 * 50 - 13.0)  # = 1.3 USD/bu


def test_spread_features_present_only_when_inputs_exist(tiny_features):
    _, _frame, catalog = tiny_features
    names = {d.name for d in catalog}
    assert {"spread_crush_margin", "spread_palm_soy", "spread_oil_share"} <= names
    assert "spread_soy_corn" not in names  # no ZC in the tiny market


def test_catalog_describes_every_feature(tiny_features):
    _, frame, catalog = tiny_features
    assert [d.name for d in catalog] == frame.columns[2:]
    for d in catalog:
        assert d.block in BLOCKS and d.definition and d.inputs
    blocks = {d.name: d.block for d in catalog}
    assert blocks["weather_test_anom_level"] == "Weather"
    assert blocks["policy_test_index_z63"] == "Policy/Political"
    assert blocks["spread_crush_margin"] == "Spreads"


def test_no_infinite_values(tiny_features):
    _, frame, _ = tiny_features
    floats = frame.select(pl.col(pl.Float64))
    assert not floats.select(pl.any_horizontal(pl.all().is_infinite().any())).item()
    assert not floats.select(pl.any_horizontal(pl.all().is_nan().any())).item()


def leaky_builder(market: pl.DataFrame, signals: pl.DataFrame) -> pl.DataFrame:
    frame, _ = build_features(build_market_panel(market, signals))
    return frame.with_columns(pl.col("ZL_close").shift(-3).alias("zl_leak"))


def default_builder(
    market: pl.DataFrame, signals: pl.DataFrame, curve: pl.DataFrame | None = None
) -> pl.DataFrame:
    return build_features(build_market_panel(market, signals, curve=curve))[0]


def test_truncation_property_on_tiny_data(tiny_market, tiny_signals):
    full = default_builder(tiny_market, tiny_signals)
    dates = [full["date"][i] for i in (30, 150, 260, 319)]
    assert truncation_mismatches(tiny_market, tiny_signals, dates, default_builder) == {}


def test_truncation_check_catches_a_feature_from_the_future(tiny_market, tiny_signals):
    full = default_builder(tiny_market, tiny_signals)
    dates = [full["date"][i] for i in (30, 150, 319)]
    found = truncation_mismatches(tiny_market, tiny_signals, dates, leaky_builder)
    # the last date has no future to leak (shift gives null either way)
    assert found == {dates[0]: ["zl_leak"], dates[1]: ["zl_leak"]}


def test_truncation_property_on_the_default_sample_features():
    """Default features over the whole sample market and its curve, cut at dates in several
    regimes."""
    import datetime as dt

    from cbi_pipeline.core.sample.generator import SampleSpec, generate_sample_market

    sample = generate_sample_market(SampleSpec(end=dt.date(2024, 6, 28)))
    dates = [
        dt.date(2001, 3, 1),
        dt.date(2008, 10, 15),
        dt.date(2013, 5, 2),
        dt.date(2020, 3, 16),
        dt.date(2022, 6, 15),
        dt.date(2024, 6, 27),
    ]
    trading = set(sample.market.filter(pl.col("symbol") == "ZL")["date"].to_list())
    dates = [d if d in trading else max(x for x in trading if x < d) for d in dates]
    full = default_builder(sample.market, sample.signals, sample.curve)
    assert full.width - 2 >= 150
    assert {"zl_carry", "zs_curve_slope", "ho_oi_share", "zw_days_to_roll"} <= set(full.columns)
    found = truncation_mismatches(
        sample.market, sample.signals, dates, default_builder, curve=sample.curve
    )
    assert found == {}


def test_truncation_handles_series_that_start_after_the_cut(tiny_market, tiny_signals):
    late = tiny_market.filter((pl.col("symbol") != "CL") | (pl.col("date") > pl.date(2008, 3, 1)))
    full = default_builder(late, tiny_signals)
    early = full.filter(pl.col("date") < pl.date(2008, 2, 1))["date"][-1]
    assert truncation_mismatches(late, tiny_signals, [early], default_builder) == {}
