import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbi_pipeline.core.export import build_export
from cbi_pipeline.core.features import FeatureSpec, build_features
from cbi_pipeline.core.leakage.alignment import check_alignment
from cbi_pipeline.core.leakage.canary import CANARY_PREFIX, run_canary
from cbi_pipeline.core.leakage.screen import masked_corr, screen_features
from cbi_pipeline.core.leakage.spec import LeakageSpec
from cbi_pipeline.core.leakage.truncation import (
    compare_truncated,
    feature_builder,
    recompute_at_dates,
    truncation_dates,
)
from cbi_pipeline.core.panel import PanelSpec, build_market_panel
from cbi_pipeline.core.vocabulary import HORIZON_LABELS, horizon_days
from cbi_pipeline_tests.conftest import make_tiny_market, make_tiny_signals

N = 700  # rows: enough non-overlapping windows for the correlation rule at 1w and 1m


@pytest.fixture(scope="module")
def raw() -> tuple[pl.DataFrame, pl.DataFrame]:
    return make_tiny_market(n=N, seed=11), make_tiny_signals(n=N, seed=12)


@pytest.fixture(scope="module")
def features(raw):
    return build_features(build_market_panel(*raw))


def export_for(features, horizon: str) -> pl.DataFrame:
    frame, catalog = features
    return build_export(frame, catalog, horizon)


def with_column(export: pl.DataFrame, name: str, values: np.ndarray) -> pl.DataFrame:
    return export.with_columns(pl.Series(name, values, dtype=pl.Float64).fill_nan(None))


def future_target_plus_noise(export: pl.DataFrame, horizon: str, noise: float) -> np.ndarray:
    target = export[f"target_{horizon}"].cast(pl.Float64).to_numpy()
    rng = np.random.default_rng(5)
    return target * (1 + rng.normal(0, noise, target.size))


# --- the screen --------------------------------------------------------------------------------


@pytest.mark.parametrize("horizon", HORIZON_LABELS)
def test_honest_tiny_export_has_no_suspect_and_the_canary_is_caught(features, horizon):
    export = export_for(features, horizon)
    result = screen_features(export, horizon)
    assert len(result.screened) > 100
    assert [s.feature for s in result.suspects] == []
    canary = run_canary(export, horizon)
    assert canary.passed, canary


@pytest.mark.parametrize("horizon", HORIZON_LABELS)
def test_future_target_plus_small_noise_is_named(features, horizon):
    export = export_for(features, horizon)
    leaky = with_column(export, "zl_hint", future_target_plus_noise(export, horizon, 0.005))
    suspects = {s.feature: s for s in screen_features(leaky, horizon).suspects}
    assert list(suspects) == ["zl_hint"]
    assert any(f"tracks target_{horizon}" in r for r in suspects["zl_hint"].reasons)


def test_future_return_plus_noise_is_named_by_the_correlation_rule(features):
    export = export_for(features, "1m")
    price = export["price"].to_numpy()
    future = np.log(export["target_1m"].cast(pl.Float64).to_numpy() / price)
    rng = np.random.default_rng(1)
    leaky = with_column(
        export, "ret_hint", future + rng.normal(0, 0.5 * np.nanstd(future), future.size)
    )
    (suspect,) = screen_features(leaky, "1m").suspects
    assert suspect.feature == "ret_hint"
    assert "with the future 21-day log return" in suspect.reasons[0]
    assert suspect.future_corr > 0.85


def test_future_price_shifted_copy_is_named_with_its_shift(features):
    export = export_for(features, "1m")
    ahead = export["price"].shift(-3).to_numpy()
    (suspect,) = screen_features(with_column(export, "price_ahead", ahead), "1m").suspects
    assert suspect.equal_shift == 3
    assert "equals the price 3 row(s) ahead on 100% of rows" in suspect.reasons


def test_past_price_copy_is_not_a_suspect(features):
    export = export_for(features, "1m")
    lagged = export["price"].shift(2).to_numpy()
    result = screen_features(with_column(export, "price_lag2", lagged), "1m")
    assert result.suspects == []


def test_screen_of_one_feature_does_not_depend_on_the_others(features):
    export = export_for(features, "1w")
    full = {s.feature: s for s in screen_features(export, "1w").screened}
    names = ["zl_ret_5d", "spread_crush_margin_z63", "cal_month"]
    alone = screen_features(export, "1w", names).screened
    assert [s.feature for s in alone] == names
    for s in alone:
        other = full[s.feature]
        assert (s.transform, s.reasons, s.equal_shift) == (
            other.transform,
            other.reasons,
            other.equal_shift,
        )
        for attr in ("windows", "future_corr", "past_corr", "target_corr", "price_corr"):
            assert getattr(s, attr) == pytest.approx(getattr(other, attr), rel=1e-12)


def test_correlation_rule_needs_enough_windows_per_feature(features):
    export = export_for(features, "12m")  # 448 labelled rows = 1.8 windows of 252 days
    result = screen_features(export, "12m")
    assert not result.correlation_rule_run
    assert result.correlation_rule_features == 0
    canary = run_canary(export, "12m")
    # the correlation rule's canary is not expected; the lag screen's are (700 rows >= 500)
    assert canary.expected == tuple(
        f"{CANARY_PREFIX}{n}"
        for n in ("future_price", "next_day_return", "two_day_return", "centred_average")
    )
    assert canary.passed


def test_a_blind_screen_fails_the_canary(features):
    blind = LeakageSpec(identity_corr=1.01, future_corr=1.01, equal_share=1.01, lag_min_corr=1.01)
    canary = run_canary(export_for(features, "1m"), "1m", blind)
    assert canary.caught == ()
    assert not canary.passed


def test_future_threshold_shrinks_with_windows_to_its_floor():
    spec = LeakageSpec()
    assert spec.future_threshold(14.0) == pytest.approx(3.5 / 14**0.5)
    assert spec.future_threshold(100.0) == spec.future_corr


# --- correlations: oracle and properties --------------------------------------------------------


def naive_corr(x: np.ndarray, y: np.ndarray) -> float:
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if np.isfinite(a) and np.isfinite(b)]
    if len(pairs) < 30:
        return float("nan")
    xs, ys = np.array(pairs).T
    if xs.std() == 0 or ys.std() == 0:
        return float("nan")
    return float(np.corrcoef(xs, ys)[0, 1])


def test_masked_corr_matches_a_pairwise_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    x[:, 1] += 1e5  # a level far from zero
    x[:, 2] = 7.25  # constant
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:390, 4] = np.nan  # too few rows
    y = rng.normal(size=400) + np.nan_to_num(x[:, 0])
    y[rng.random(400) < 0.1] = np.nan
    (got,), (counts,) = masked_corr(x, [y])
    for j in range(5):
        np.testing.assert_allclose(got[j], naive_corr(x[:, j], y), rtol=1e-9, equal_nan=True)
        assert counts[j] == np.sum(np.isfinite(x[:, j]) & np.isfinite(y))


@settings(max_examples=40, deadline=None)
@given(
    scale=st.floats(1e-3, 1e3),
    shift=st.floats(-1e4, 1e4),
    seed=st.integers(0, 2**31),
)
def test_masked_corr_is_invariant_to_affine_maps(scale, shift, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 3))
    y = x[:, 0] + rng.normal(size=200)
    (a,), _ = masked_corr(x, [y])
    (b,), _ = masked_corr(x * scale + shift, [y])
    np.testing.assert_allclose(a, b, atol=1e-7)


# --- alignment ---------------------------------------------------------------------------------


def hand_export(prices: list[float], target: list[float | None]) -> pl.DataFrame:
    n = len(prices)
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n)]
    return pl.DataFrame(
        {
            "date": days,
            "price": prices,
            "f": [float(i) for i in range(n)],
            "market_regime": ["covid"] * n,
            "training_weight": [800.0] * n,
            "target_1w": target,
        },
        schema_overrides={"target_1w": pl.Float64},
    )


def test_alignment_hand_case_names_each_bad_row():
    prices = [float(10 + i) for i in range(12)]
    target: list[float | None] = [prices[i + 5] for i in range(7)] + [None] * 5
    assert check_alignment(hand_export(prices, target), "1w").passed
    target[3] = 99.0  # wrong label
    target[11] = 1.0  # a label where no price 5 rows ahead exists
    target[6] = None  # a missing label where one is known
    result = check_alignment(hand_export(prices, target), "1w")
    assert not result.passed
    assert result.mismatch_count == 3
    assert [m["row"] for m in result.mismatches] == [3, 6, 11]
    assert result.mismatches[0] == {
        "row": 3,
        "date": "2020-01-04",
        "target": 99.0,
        "price_h_ahead": 18.0,
        "date_h_ahead": "2020-01-09",
    }
    assert result.mismatches[2]["price_h_ahead"] is None


@pytest.mark.parametrize("horizon", ["1w", "3m"])
def test_target_shifted_by_one_day_fails_alignment_and_names_the_shift(features, horizon):
    export = export_for(features, horizon)
    h = horizon_days(horizon)
    assert check_alignment(export, horizon).passed
    shifted = export.with_columns(pl.col("price").shift(-(h + 1)).alias(f"target_{horizon}"))
    result = check_alignment(shifted, horizon)
    assert not result.passed
    assert result.mismatch_count > 0.9 * (export.height - h)
    assert result.best_matching_shift == h + 1


def test_unsorted_dates_fail_alignment(features):
    export = export_for(features, "1w")
    swapped = pl.concat([export.slice(1, 1), export.slice(0, 1), export.slice(2)])
    assert not check_alignment(swapped, "1w").dates_increasing


# --- truncation --------------------------------------------------------------------------------


def test_truncation_dates_spread_over_regimes_and_include_the_last_date(features):
    export = export_for(features, "1m")  # rows 2007-06 .. 2010-02, warm-up ends 2008-05
    dates = truncation_dates(export, 7)
    assert len(dates) == 7
    assert dates[-1] == export["date"][-1]
    assert min(dates) > export["date"][251]  # after the warm-up rows
    picked = export.filter(pl.col("date").is_in(dates[:-1]))["market_regime"].value_counts()
    assert dict(picked.iter_rows()) == {"financial_crisis": 3, "recovery": 3}


def test_truncation_passes_for_the_causal_builder(raw, features):
    export = export_for(features, "1m")
    dates = truncation_dates(export, 4)
    build = feature_builder(PanelSpec(), FeatureSpec())
    result = compare_truncated(export, recompute_at_dates(*raw, dates, build), "ZL_close")
    assert result.status == "passed", result.mismatches[:3]
    assert len(result.dates) == 4


def test_truncation_names_a_feature_that_looks_ahead(raw):
    honest = feature_builder(PanelSpec(), FeatureSpec())

    def leaky(market: pl.DataFrame, signals: pl.DataFrame) -> pl.DataFrame:
        frame = honest(market, signals)
        return frame.with_columns(
            (pl.col("ZL_close").shift(-2) / pl.col("ZL_close")).log().alias("zl_peek")
        )

    frame = leaky(*raw)
    _, catalog = build_features(build_market_panel(*raw))
    export = build_export(frame, catalog, "1m").with_columns(frame["zl_peek"])
    dates = truncation_dates(export, 3)
    result = compare_truncated(export, recompute_at_dates(*raw, dates, leaky), "ZL_close")
    assert result.failed
    assert result.columns == ["zl_peek"]
    # At the last date nothing is cut and the peek is null in both: every other date differs.
    assert {m["date"] for m in result.mismatches} == {str(d) for d in dates[:-1]}
    assert all(m["recomputed"] is None for m in result.mismatches)


def test_truncation_flags_columns_the_builder_cannot_produce(raw, features):
    export = export_for(features, "1m").with_columns(pl.lit(1.0).alias("mystery"))
    dates = truncation_dates(export, 2)
    build = feature_builder(PanelSpec(), FeatureSpec())
    result = compare_truncated(export, recompute_at_dates(*raw, dates, build), "ZL_close")
    assert result.failed
    assert result.unexplained_columns == ("mystery",)
    assert result.mismatches == ()


def test_truncation_treats_a_series_not_started_yet_as_missing():
    market = make_tiny_market(n=400, seed=3)
    late = market["date"].unique().sort()[300]
    market = market.filter((pl.col("symbol") != "CL") | (pl.col("date") >= late))
    signals = make_tiny_signals(n=400, seed=4)
    build = feature_builder(PanelSpec(), FeatureSpec())
    frame, catalog = build_features(build_market_panel(market, signals))
    export = build_export(frame, catalog, "1w")
    early, last = export["date"][280], export["date"][-1]
    recomputed = recompute_at_dates(market, signals, [early, last], build)
    assert "cl_ret_1d" not in recomputed[early]
    assert "cl_ret_1d" in recomputed[last]
    assert compare_truncated(export, recomputed, "ZL_close").status == "passed"
    only_early = recompute_at_dates(market, signals, [early], build)
    assert "cl_ret_1d" in compare_truncated(export, only_early, "ZL_close").unexplained_columns
