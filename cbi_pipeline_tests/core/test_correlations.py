import datetime as dt
import math

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbi_pipeline.core.blocks import BIG7_MACRO, CORRELATIONS, POLICY, SPREADS, WEATHER
from cbi_pipeline.core.correlations.build import build_correlation_cache, key_pair_features
from cbi_pipeline.core.correlations.kernel import comoment_corr, rolling_corr
from cbi_pipeline.core.correlations.pairs import correlation_series, pair_set
from cbi_pipeline.core.correlations.spec import CorrelationSpec
from cbi_pipeline.core.correlations.state import extension_blocker, panel_data
from cbi_pipeline.core.panel import build_market_panel
from cbi_pipeline_tests.conftest import make_tiny_market, make_tiny_signals


def naive_rolling_corr(x: np.ndarray, y: np.ndarray, w: int, m: int) -> np.ndarray:
    """The definition, one window at a time: pairwise-complete days, two-pass moments."""
    out = np.full(x.size, np.nan)
    for t in range(x.size):
        xs, ys = x[max(0, t - w + 1) : t + 1], y[max(0, t - w + 1) : t + 1]
        ok = np.isfinite(xs) & np.isfinite(ys)
        if ok.sum() < m:
            continue
        a, b = xs[ok], ys[ok]
        da, db = a - a.mean(), b - b.mean()
        sa, sb = (da * da).sum(), (db * db).sum()
        if sa <= 1e-10 * (a * a).sum() or sb <= 1e-10 * (b * b).sum():
            continue
        out[t] = (da * db).sum() / math.sqrt(sa * sb)
    return out


def gappy_returns(n: int = 400, p: int = 5, seed: int = 3) -> np.ndarray:
    """Correlated returns with one-sided NaN gaps, an all-NaN start, zero and constant stretches."""
    rng = np.random.default_rng(seed)
    common = rng.normal(0, 0.01, n)
    r = np.stack([0.6 * common + rng.normal(0, 0.01, n) for _ in range(p)])
    r[:, 0] = np.nan
    r[1, 50:70] = np.nan  # a gap in one series only (the pairwise path)
    r[2, 120:125] = np.nan
    r[2, 200:260] = 0.0  # flat price: zero returns
    r[3, 300:340] = 0.0125  # constant non-zero returns
    r[4, :30] = np.nan  # a series that starts later
    r[0, 5] = np.nan  # isolated missing value
    return r


PAIRS = np.array([(0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (0, 4), (1, 3)])
WINDOWS = (7, 20, 45)
MIN_OBS = (5, 14, 30)


def test_kernel_matches_a_naive_loop_with_gaps_and_constant_stretches():
    r = gappy_returns()
    got = rolling_corr(r, PAIRS, WINDOWS, MIN_OBS)
    assert got.dtype == np.float32 and got.shape == (3, len(PAIRS), r.shape[1])
    for wi, (w, m) in enumerate(zip(WINDOWS, MIN_OBS, strict=True)):
        for k, (a, b) in enumerate(PAIRS):
            want = naive_rolling_corr(r[a], r[b], w, m)
            np.testing.assert_array_equal(np.isnan(got[wi, k]), np.isnan(want))
            np.testing.assert_allclose(got[wi, k], want, atol=2e-7, equal_nan=True)
    # the zero and constant stretches make correlations undefined, not arbitrary numbers
    k23 = 3
    assert np.isnan(got[0, k23, 207:260]).all() and np.isnan(got[0, k23, 306:340]).all()
    assert np.isfinite(got[0, k23, 190:200]).all()


def test_kernel_matches_pandas_rolling_corr():
    r = gappy_returns(seed=11)
    got = rolling_corr(r, PAIRS, WINDOWS, MIN_OBS)
    for wi, (w, m) in enumerate(zip(WINDOWS, MIN_OBS, strict=True)):
        for k, (a, b) in enumerate(PAIRS):
            want = pd.Series(r[a]).rolling(w, min_periods=m).corr(pd.Series(r[b])).to_numpy()
            # pandas < 3 returns +-inf over windows where one series is constant (a correlation
            # lies in [-1, 1]: an infinite one is pandas saying "undefined"); pandas 3 says NaN.
            want = np.where(np.isinf(want), np.nan, want)
            np.testing.assert_array_equal(np.isnan(got[wi, k]), np.isnan(want))
            np.testing.assert_allclose(got[wi, k], want, atol=1e-6, equal_nan=True)


def test_kernel_hand_computed_case_and_min_obs_boundary():
    x = np.array([np.nan, 1.0, 2.0, 3.0, 4.0])
    y = np.array([np.nan, 2.0, 4.0, 6.0, 9.0])
    got = rolling_corr(np.stack([x, y]), np.array([(0, 1)]), [3], [3])[0, 0]
    # rows 0-2 have fewer than 3 complete days; [1,2,3] vs [2,4,6] is exactly linear;
    # [2,3,4] vs [4,6,9]: deviations (-1,0,1) and (-7/3,-1/3,8/3): 5 / sqrt(2 * 114/9)
    assert np.isnan(got[:3]).all()
    assert got[3] == pytest.approx(1.0, abs=1e-7)
    assert got[4] == pytest.approx(5.0 / math.sqrt(2.0 * 114.0 / 9.0), abs=1e-7)
    got2 = rolling_corr(np.stack([x, y]), np.array([(0, 1)]), [3], [2])[0, 0]
    assert np.isnan(got2[:2]).all() and got2[2] == pytest.approx(1.0, abs=1e-7)


def test_infinite_returns_count_as_missing():
    r = gappy_returns(n=120, seed=4)
    with_inf = r.copy()
    with_inf[1, 40] = np.inf
    with_gap = r.copy()
    with_gap[1, 40] = np.nan
    np.testing.assert_array_equal(
        rolling_corr(with_inf, PAIRS, WINDOWS, MIN_OBS),
        rolling_corr(with_gap, PAIRS, WINDOWS, MIN_OBS),
    )


def test_a_tail_with_its_origin_reproduces_the_full_history_bitwise():
    r = gappy_returns()
    full = rolling_corr(r, PAIRS, WINDOWS, MIN_OBS)
    need = 2 * max(WINDOWS)
    for n0 in (need, need + 1, 137, 200, 256, 399):
        origin = n0 - need
        part = rolling_corr(r[:, origin:], PAIRS, WINDOWS, MIN_OBS, origin=origin, start=need - 1)
        np.testing.assert_array_equal(part, full[:, :, origin + need - 1 :])
    with pytest.raises(ValueError, match="2 \\* max\\(windows\\) - 1"):
        rolling_corr(r[:, 10:], PAIRS, WINDOWS, MIN_OBS, origin=10, start=need - 2)


def test_one_sided_gaps_take_a_path_that_agrees_bitwise_with_the_shared_sums():
    rng = np.random.default_rng(5)
    r = rng.normal(0, 0.01, (2, 300))
    with_gap = r.copy()
    with_gap[1, 290] = np.nan  # forces the pairwise path for the last chunk of each window
    a = rolling_corr(r, np.array([(0, 1)]), WINDOWS, MIN_OBS)
    b = rolling_corr(with_gap, np.array([(0, 1)]), WINDOWS, MIN_OBS)
    for wi, (w, m) in enumerate(zip(WINDOWS, MIN_OBS, strict=True)):
        # rows before the gap lie in chunks that take the pairwise path, yet agree bitwise
        np.testing.assert_array_equal(a[wi, 0, :290], b[wi, 0, :290])
        want = naive_rolling_corr(with_gap[0], with_gap[1], w, m)
        np.testing.assert_allclose(b[wi, 0, 290:], want[290:], atol=2e-7)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=90),
    seed=st.integers(min_value=0, max_value=10_000),
    gap_share=st.floats(min_value=0.0, max_value=0.4),
    w=st.integers(min_value=3, max_value=30),
)
def test_kernel_property_equals_naive_on_random_gappy_data(n, seed, gap_share, w):
    rng = np.random.default_rng(seed)
    r = rng.normal(0, 1, (3, n))
    r[rng.random((3, n)) < gap_share] = np.nan
    m = max(2, w // 2)
    got = rolling_corr(r, np.array([(0, 1), (1, 2)]), [w], [m])
    for k, (a, b) in enumerate([(0, 1), (1, 2)]):
        want = naive_rolling_corr(r[a], r[b], w, m)
        np.testing.assert_allclose(got[0, k], want, atol=5e-7, equal_nan=True)


def test_comoment_correlation_matches_numpy():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=500), rng.normal(size=500) + 0.5 * rng.normal(size=500)
    acc = np.zeros((1, 1, 6))
    for xv, yv in zip(x, y, strict=True):  # Welford, written out
        n = acc[0, 0, 0] + 1
        dx, dy = xv - acc[0, 0, 1], yv - acc[0, 0, 2]
        acc[0, 0, 1] += dx / n
        acc[0, 0, 2] += dy / n
        acc[0, 0, 3] += dx * (xv - acc[0, 0, 1])
        acc[0, 0, 4] += dy * (yv - acc[0, 0, 2])
        acc[0, 0, 5] += dx * (yv - acc[0, 0, 2])
        acc[0, 0, 0] = n
    assert comoment_corr(acc, 3)[0, 0] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert np.isnan(comoment_corr(acc, 501)[0, 0])


# --- the cache ---------------------------------------------------------------------------


SPEC = CorrelationSpec(windows=(10, 25, 60), history_days=30, top_k=2)


def tiny_panel(n: int = 320) -> pl.DataFrame:
    panel = build_market_panel(make_tiny_market(n), make_tiny_signals(n))
    # a stretch where CL is missing beyond the carry-forward limit: one-sided gaps for its pairs
    return panel.with_columns(
        pl.when(pl.int_range(pl.len()).is_between(150, 170))
        .then(None)
        .otherwise(pl.col("CL_close"))
        .alias("CL_close")
    )


def frames_equal(a, b) -> None:
    for attr in ("features", "recent", "matrices", "candidates", "cross_block", "regime_matrices"):
        assert getattr(a, attr).equals(getattr(b, attr), null_equal=True), attr
    for attr in ("tail_returns", "last_levels", "regime_moments", "target_moments"):
        np.testing.assert_array_equal(getattr(a.state, attr), getattr(b.state, attr))
    assert (a.state.n_rows, a.state.history_hash) == (b.state.n_rows, b.state.history_hash)
    assert a.catalog == b.catalog


def test_series_are_grouped_by_block_and_pairs_stay_within_blocks():
    panel = tiny_panel()
    series = correlation_series(panel.columns, SPEC)
    blocks = {s.name: s.block for s in series}
    assert series[0].name == "ZL"
    assert blocks["weather_test_anom"] == WEATHER and blocks["policy_test_index"] == POLICY
    assert blocks["spread_crush_margin"] == SPREADS and blocks["FCPO"] == BIG7_MACRO
    assert {"spread_crush_margin_z63", "ZL_open"}.isdisjoint(blocks)  # no derived features
    pairs = pair_set(series, SPEC)
    names = [s.name for s in series]
    for (a, b), within in zip(pairs.index.tolist(), pairs.within.tolist(), strict=True):
        assert within == (series[a].block == series[b].block)
    # tiny data has no VIX/DXY: those key partners are skipped; the crush margin is cross-block
    assert pairs.key_partners == ("FCPO", "spread_crush_margin")
    crush = pairs.index[pairs.key_pairs[1]]
    assert {names[crush[0]], names[crush[1]]} == {"ZL", "spread_crush_margin"}
    assert not pairs.within[pairs.key_pairs[1]]
    with pytest.raises(ValueError, match=r"key partners \['VIX'\] are not in the data"):
        pair_set(series, CorrelationSpec(extra_key_partners=("VIX",)))


def test_incremental_builds_equal_a_full_rebuild_bitwise():
    panel = tiny_panel()
    dates = panel["date"].to_list()
    full = build_correlation_cache(panel, SPEC, dates[-1])
    # below and around 2 * max(window) = 120 rows, chunk edges, the day before, the same day
    for n0 in (1, 45, 119, 120, 121, 160, 240, 319, 320):
        base = build_correlation_cache(panel, SPEC, dates[n0 - 1])
        assert extension_blocker(panel_data(panel, SPEC, dates[-1]), SPEC, base) is None
        inc = build_correlation_cache(panel, SPEC, dates[-1], base=base)
        assert inc.new_rows == 320 - n0
        frames_equal(inc, full)
    # a chain of one-day partitions ends where one full build does
    chain = build_correlation_cache(panel, SPEC, dates[299])
    for d in dates[300:]:
        chain = build_correlation_cache(panel, SPEC, d, base=chain)
    frames_equal(chain, full)


def test_the_cache_uses_no_data_after_its_as_of_date():
    panel = tiny_panel()
    as_of = panel["date"][250]
    cut = build_correlation_cache(panel.filter(pl.col("date") <= as_of), SPEC, as_of)
    future = panel.with_columns(
        pl.when(pl.col("date") > as_of).then(pl.col(c) * 3.0).otherwise(pl.col(c)).alias(c)
        for c in panel.columns
        if c != "date"
    )
    frames_equal(build_correlation_cache(future, SPEC, as_of), cut)
    assert cut.features["date"].max() == as_of
    assert cut.candidates["n_obs"].max() <= 250


def test_a_changed_history_or_setting_blocks_extension():
    panel = tiny_panel()
    dates = panel["date"]
    base = build_correlation_cache(panel, SPEC, dates[200])
    revised = panel.with_columns(
        pl.when(pl.col("date") == dates[100])
        .then(31.0)
        .otherwise(pl.col("ZL_close"))
        .alias("ZL_close")
    )
    data = panel_data(revised, SPEC, dates[-1])
    assert "changed since it was built" in str(extension_blocker(data, SPEC, base))
    other = CorrelationSpec(windows=(10, 25, 61), history_days=30, top_k=2)
    data = panel_data(panel, other, dates[-1])
    assert "settings or series differ" in str(extension_blocker(data, other, base))
    with pytest.raises(ValueError, match="cannot extend the partition"):
        build_correlation_cache(revised, SPEC, dates[-1], base=base)


def test_cache_contents_match_their_definitions():
    panel = tiny_panel()
    as_of = panel["date"][-1]
    cache = build_correlation_cache(panel, SPEC, as_of)
    data = panel_data(panel, SPEC, as_of)
    names = [s.name for s in data.series]
    logs = np.array([s.transform == "log_return" for s in data.series])
    with np.errstate(divide="ignore", invalid="ignore"):  # spreads can be <= 0; not logged
        lv = np.where(logs[:, None], np.log(data.levels), data.levels)
    rets = np.full_like(lv, np.nan)
    rets[:, 1:] = np.diff(lv, axis=1)

    # exported features: ZL vs FCPO over 25 days, straight from the definition
    feat = cache.features["corr_zl_fcpo_25d"].to_numpy()
    want = naive_rolling_corr(rets[names.index("ZL")], rets[names.index("FCPO")], 25, 17)
    np.testing.assert_allclose(feat, want, atol=2e-7)
    assert [d.block for d in cache.catalog] == [CORRELATIONS] * 6
    assert cache.features.height == panel.height and cache.features["date"][-1] == as_of

    # top-k: |corr with ZL| over the whole history, per block
    zl = rets[names.index("ZL")]
    big7 = cache.candidates.filter(pl.col("block") == BIG7_MACRO)
    scores = {}
    for s in data.series:
        if s.block == BIG7_MACRO and s.name != "ZL":
            x = rets[names.index(s.name)]
            ok = np.isfinite(x) & np.isfinite(zl)
            scores[s.name] = abs(np.corrcoef(x[ok], zl[ok])[0, 1])
    assert big7["series"].to_list() == sorted(scores, key=lambda k: -scores[k])[:2]
    assert big7["corr_with_target"].abs().to_list() == pytest.approx(
        sorted(scores.values(), reverse=True)[:2], abs=1e-12
    )
    assert (cache.cross_block["block_a"] != cache.cross_block["block_b"]).all()

    # regime matrices: every pair's correlation over the regime's days
    regime = cache.regime_matrices.filter(
        (pl.col("regime") == "financial_crisis") & (pl.col("a") == "ZM") & (pl.col("b") == "ZS")
    )
    in_regime = data.dates >= np.datetime64(dt.date(2008, 1, 1))
    x, y = rets[names.index("ZS")][in_regime], rets[names.index("ZM")][in_regime]
    ok = np.isfinite(x) & np.isfinite(y)
    assert regime["corr"].item() == pytest.approx(np.corrcoef(x[ok], y[ok])[0, 1], abs=1e-12)
    assert regime["n_obs"].item() == ok.sum()

    # the as-of matrix is the last row of each rolling series
    last = cache.matrices.filter((pl.col("window") == 60) & (pl.col("a") == "ZL"))
    zs = last.filter(pl.col("b") == "ZS")["corr"].item()
    assert zs == pytest.approx(
        naive_rolling_corr(zl, rets[names.index("ZS")], 60, 40)[-1], abs=2e-7
    )
    assert cache.recent["date"].n_unique() == 30


def test_key_pair_features_are_the_full_build_of_a_panel():
    panel = tiny_panel()
    frame, catalog = key_pair_features(panel, SPEC)
    assert frame.columns == ["date", *[d.name for d in catalog]]
    assert frame["corr_zl_crush_margin_60d"][:40].is_null().all()  # fewer than 40 days
    assert frame["corr_zl_crush_margin_60d"][60:].is_not_null().all()
