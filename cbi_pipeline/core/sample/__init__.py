"""Deterministic sample market: ZL, its drivers and weather/news/policy/macro signals.

The sample stands in for a warehouse export when a user brings no data. It is calibrated to the
real 2000-01-03..2010-09-07 part of ``dev_market_1995_2010.csv`` (levels, yearly volatility,
return correlations, ZL's calendar-month effect); everything after 2010 and the symbols the real
file lacks (FCPO, USDBRL, USDMYR) follow approximate public-knowledge paths. The constants
are hard-coded in ``calibration`` (the package reads no file);
``cbi_pipeline_tests/benchmarks/sample_calibration.py --derive`` re-derives the real-data ones and
compares a generated sample with the real file.
``docs/sample_market.md`` explains the model, the numbers and the lead-lag relations.

How a price path is built, per symbol, in log space:

    log price[t] = log anchor[t] + x[t]
    x[t] = x[t-1] * exp(-kappa * (1 + (x[t-1] / 0.25)^2)) + shock[t] + drift[t]

``anchor`` interpolates hard-coded level knots (quarterly, monthly in 2007-07..2009-06);
``x`` is a mean-reverting deviation (half-life 252 trading days near the anchor, 10 for VIX,
pulled back harder beyond about +-25%: a soft band) driven by multivariate-t shocks with a yearly volatility table, an intra-year crisis shape that follows the
VIX anchor, a common stochastic volatility factor and a Cholesky factor of the real correlation
matrix (one for 2000-2005, one from 2006 on, when energy and vegetable oil became linked through
biodiesel). ``drift`` holds the weak, documented lead-lag terms (crush and palm-soy mean
reversion, lagged US/Brazil precipitation), ZL's month effect and policy announcement jumps.

Every random stream has its own generator seeded from ``(seed, stream)`` and is consumed in date
order, so a sample that ends earlier is an exact prefix of one that ends later.

The futures curve of ZL ZS ZM ZC ZW HO (``curve``) is built around the market: its nearest
contract is the market's front close, the later contracts follow a carry process calibrated on
``dev_curve_1995_2010.csv`` (``curve_calibration``; re-derived by
``cbi_pipeline_tests/benchmarks/sample_curve_calibration.py --derive``).

Modules: ``generator`` (``SampleSpec``, ``SampleMarket``, ``generate_sample_market``), ``prices``
(price paths and the OHLCV frame), ``signals`` (weather/news/policy/macro frames), ``curve``
(the futures curve), ``symbols`` (symbols and series), ``calibration`` and
``curve_calibration`` (constants and tables, data only), ``dates`` and ``noise`` (calendar and
random-stream helpers).
"""
