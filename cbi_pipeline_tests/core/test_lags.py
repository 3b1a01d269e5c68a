"""The lag screen: leaks of part of the future (one day of a five-day return, a centred average)
are named with their lag and evidence; honest features, the real file's among them, pass."""

import math

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core.export import build_export
from cbi_pipeline.core.features import build_features
from cbi_pipeline.core.leakage.lags import absolute_surprise, lag_screen
from cbi_pipeline.core.leakage.spec import LeakageSpec
from cbi_pipeline.core.panel import build_market_panel
from cbi_pipeline.store.sources import load_market_files
from cbi_pipeline_tests.conftest import REAL_DATA, random_walk_export


@pytest.fixture(scope="module")
def real_features():
    if not REAL_DATA.is_file():
        pytest.skip(f"real data not present at {REAL_DATA}")
    market = load_market_files([str(REAL_DATA)])
    signals = pl.DataFrame(schema={"date": pl.Date, "series": pl.String, "value": pl.Float64})
    return build_features(build_market_panel(market, signals))


def forward(price: np.ndarray, k: int) -> np.ndarray:
    out = np.full(price.size, np.nan)
    out[: price.size - k] = np.log(price[k:] / price[: price.size - k])
    return out


def leaks(export: pl.DataFrame, horizon: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    p = export["price"].to_numpy()
    daily_sd = float(np.nanstd(np.diff(np.log(p))))
    target = export[f"target_{horizon}"].cast(pl.Float64).to_numpy()
    return {
        "one_day_forward": forward(p, 1),
        "two_day_forward_noisy": forward(p, 2) + rng.normal(0, daily_sd, p.size),
        "centred_average_11": pl.Series(p).rolling_mean(11, center=True).to_numpy(),
        "label_plus_3pct": target * (1 + rng.normal(0, 0.03, p.size)),
        "one_day_of_five": forward(p, 5) - forward(p, 4) + rng.normal(0, 2 * daily_sd, p.size),
        "next_day_vol": np.r_[np.abs(np.diff(np.log(p)))[1:], np.nan, np.nan],
    }


def honest(export: pl.DataFrame) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(6)
    p = pl.Series(export["price"].to_numpy())
    r = np.r_[np.nan, np.diff(np.log(p.to_numpy()))]
    return {
        "past_return_1d": r,
        "past_return_5d": np.log(p / p.shift(5)).to_numpy(),
        "ma_ratio_20": (p / p.rolling_mean(20)).to_numpy(),
        "vol_20": pl.Series(r).rolling_std(20).to_numpy(),
        "pure_noise": rng.normal(0, 1, p.len()),
        "ar1_noise": np.cumsum(rng.normal(0, 1, p.len())) * 0.01,
    }


@pytest.mark.parametrize("horizon", ["1w", "1m"])
def test_each_planted_leak_in_a_real_export_is_named_with_its_lag(real_features, horizon):
    export = build_export(*real_features, horizon)
    base = lag_screen(export, horizon)
    assert base.flagged == ()  # the real file's own features pass
    lags = {"one_day_forward": 1, "two_day_forward_noisy": (1, 2), "one_day_of_five": 5}
    for name, values in leaks(export, horizon).items():
        planted = export.with_columns(pl.Series(name, values).fill_nan(None))
        result = lag_screen(planted, horizon)
        assert result.names == [name], (name, result.names)
        (evidence,) = result.flagged
        assert abs(evidence.z) >= evidence.z_limit and abs(evidence.corr) >= 0.1
        if name in lags:
            want = lags[name]
            assert evidence.lag in (want if isinstance(want, tuple) else (want,)), evidence
        assert f"{evidence.lag} day(s) ahead" in evidence.reason()


@pytest.mark.parametrize("horizon", ["1w", "1m"])
def test_honest_additions_to_a_real_export_pass(real_features, horizon):
    export = build_export(*real_features, horizon)
    planted = export.with_columns(pl.Series(n, v).fill_nan(None) for n, v in honest(export).items())
    assert lag_screen(planted, horizon).flagged == ()


def test_a_leak_in_the_last_three_years_only_is_found_by_a_rolling_window(real_features):
    """A vendor revision: the next day's return, faintly, in the last 756 rows only. Diluted over
    the whole history it stays below the limit; its window names it with its dates."""
    export = build_export(*real_features, "1w")
    p = export["price"].to_numpy()
    rng = np.random.default_rng(8)
    sd = float(np.nanstd(np.diff(np.log(p))))
    leak = rng.normal(0, sd, p.size)
    recent = np.arange(p.size) >= p.size - 756
    leak[recent] += 0.25 * forward(p, 1)[recent]
    planted = export.with_columns(pl.Series("revised", leak).fill_nan(None))
    whole = lag_screen(planted, "1w", ["revised"], LeakageSpec(lag_window_rows=0))
    assert whole.flagged == ()
    (evidence,) = lag_screen(planted, "1w", ["revised"]).flagged
    assert evidence.last_date == str(export["date"][-1]) and evidence.lag == 1
    assert evidence.first_date >= str(export["date"][p.size - 756 - 378])


@pytest.mark.parametrize(("n", "seed"), [(600, 1), (1500, 2), (4000, 3)])
def test_honest_features_of_random_walk_markets_pass(n, seed):
    for horizon in ("1w", "1m", "3m", "6m", "12m"):
        assert lag_screen(random_walk_export(n, seed, horizon), horizon).flagged == ()


def test_a_bad_print_does_not_blind_the_screen():
    export = random_walk_export(1500, 4)
    p = export["price"].to_numpy().copy()
    p[700] *= 1.6  # one-day spike that reverses
    spiked = export.with_columns(pl.Series("price", p))
    planted = spiked.with_columns(pl.Series("leak", forward(p, 1)).fill_nan(None))
    assert lag_screen(planted, "1w").names == ["leak"]


def naive_white(x, y):
    """Each series centred on its own finite rows (as the screen does), then summed over the
    rows where both exist."""
    mx = sum(v for v in x if math.isfinite(v)) / sum(math.isfinite(v) for v in x)
    my = sum(v for v in y if math.isfinite(v)) / sum(math.isfinite(v) for v in y)
    sxy = sxxyy = sxx = syy = 0.0
    for a, b in zip(x, y, strict=True):
        if math.isfinite(a) and math.isfinite(b):
            a, b = a - mx, b - my
            sxy += a * b
            sxxyy += a * a * b * b
            sxx += a * a
            syy += b * b
    return sxy / math.sqrt(sxxyy), sxy / math.sqrt(sxx * syy)


def test_the_evidence_is_the_white_z_and_correlation_of_normal_scores():
    """One feature, one lag: the reported z and corr equal a plain loop on the normal scores."""
    from scipy import stats

    export = random_walk_export(400, 7)
    p = export["price"].to_numpy()
    planted = export.select("date", "price", "market_regime", "training_weight", "target_1w")
    planted = planted.with_columns(pl.Series("leak", forward(p, 3)).fill_nan(None))
    (e,) = lag_screen(planted, "1w", ["leak"], LeakageSpec(lag_window_rows=0)).flagged

    def scores(v):
        ok = np.isfinite(v)
        out = np.full(v.size, np.nan)
        out[ok] = stats.norm.ppf((stats.rankdata(v[ok]) - 0.5) / ok.sum())
        return out

    x = forward(p, 3)
    if e.transform == "change":
        x = np.r_[np.nan, np.diff(x)]
    r = np.r_[np.nan, np.diff(np.log(p))]
    y = scores(r) if e.statistic == "return" else scores(absolute_surprise(r))
    ahead = np.r_[y[e.lag :], np.full(e.lag, np.nan)]
    z, corr = naive_white(scores(x), ahead)
    assert e.z == pytest.approx(z, rel=1e-9) and e.corr == pytest.approx(corr, rel=1e-9)
    assert e.lag in (1, 2, 3)


def test_kept_scores_give_the_same_screen_and_cannot_be_changed():
    from cbi_pipeline.core.leakage import lags

    export = random_walk_export(900, 6)
    lags._SCORED.clear()
    first = lag_screen(export, "1m")
    (kept,) = lags._SCORED.values()
    assert all(not a.flags.writeable for a in kept)
    again = lag_screen(export, "1m")  # from the kept scores
    lags._SCORED.clear()
    fresh = lag_screen(export, "1m")
    assert first == again == fresh
    with pytest.raises(ValueError):
        kept[0][0, 0] = 1.0
