import datetime as dt

import numpy as np
import polars as pl

from cbi_pipeline.core.spikes import price_spikes
from cbi_pipeline_tests.conftest import business_days


def series(n=400, seed=3):
    rng = np.random.default_rng(seed)
    dates = business_days(dt.date(2010, 1, 4), n)
    return pl.Series("date", dates), 40 * np.exp(np.cumsum(rng.normal(0, 0.012, n)))


def naive_spikes(p, sigmas=8.0, reversal=0.8):
    r = [np.log(p[i] / p[i - 1]) for i in range(1, len(p))]
    sigma = 1.4826 * float(np.median(np.abs(r)))
    out = []
    for t in range(1, len(p) - 1):
        jump, back = r[t - 1], r[t]
        if abs(jump) > sigmas * sigma and jump * back < 0 and abs(back) >= reversal * abs(jump):
            out.append(t)
    return out


def test_a_bad_print_that_reverses_is_reported_with_its_date_and_a_jump_that_stays_is_not():
    dates, p = series()
    p = p.copy()
    p[100] *= 1.5  # one-day bad print: up 50%, back the next day
    p[250:] *= 0.6  # a real repricing: down 40% and it stays
    report = price_spikes(dates, pl.Series(p))
    assert [s["date"] for s in report["spikes"]] == [str(dates[100])]
    spike = report["spikes"][0]
    assert spike["previous"] == p[99] and spike["price"] == p[100] and spike["next"] == p[101]
    assert spike["jump_pct"] > 35 and spike["reversal_pct"] < -35
    assert [dates[t] for t in naive_spikes(p)] == [dates[100]]


def test_spikes_match_a_naive_loop_on_many_planted_prints():
    dates, p = series(n=1500, seed=9)
    p = p.copy()
    rng = np.random.default_rng(4)
    for t in rng.choice(np.arange(5, 1495), 12, replace=False):
        p[t] *= rng.choice([0.5, 1.8, 1.02])  # some spikes, some ordinary moves
    report = price_spikes(dates, pl.Series(p))
    assert [s["date"] for s in report["spikes"]] == [str(dates[t]) for t in naive_spikes(p)]
    assert report["spikes"]  # the planted 0.5x / 1.8x prints are there


def test_a_flat_or_short_series_reports_no_spike():
    dates, _ = series(n=10)
    assert price_spikes(dates, pl.Series(np.full(10, 5.0)))["spikes"] == []
    assert price_spikes(dates[:2], pl.Series([1.0, 2.0]))["daily_sigma"] is None
