"""Deterministic sample market: ZL, its drivers and weather/news/policy/macro signals.

The sample stands in for a warehouse export when a user brings no data. It is calibrated to the
real 2000-01-03..2010-09-07 part of ``dev_market_1995_2010.csv`` (levels, yearly volatility,
return correlations, ZL's calendar-month effect); everything after 2010 and the symbols the real
file lacks (FCPO, USDBRL, USDMYR) follow approximate public-knowledge paths. The constants below
are hard-coded (this module reads no file); ``cbi_pipeline_tests/benchmarks/sample_calibration.py
--derive`` re-derives the real-data ones and compares a generated sample with the real file.
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
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import polars as pl

TARGET_SYMBOL = "ZL"
MARKET_SYMBOLS: tuple[str, ...] = (
    "ZL",
    "ZS",
    "ZM",
    "ZC",
    "ZW",
    "CL",
    "HO",
    "FCPO",
    "DXY",
    "VIX",
    "USDBRL",
    "USDMYR",
)
FUTURES_SYMBOLS: tuple[str, ...] = ("ZL", "ZS", "ZM", "ZC", "ZW", "CL", "HO", "FCPO")
SYMBOL_UNITS: dict[str, str] = {
    "ZL": "US cents/lb (CBOT soybean oil)",
    "ZS": "US cents/bushel (CBOT soybeans)",
    "ZM": "USD/short ton (CBOT soybean meal)",
    "ZC": "US cents/bushel (CBOT corn)",
    "ZW": "US cents/bushel (CBOT wheat)",
    "CL": "USD/barrel (NYMEX WTI crude oil)",
    "HO": "US cents/gallon (NYMEX heating oil / ULSD; the real file's unit)",
    "FCPO": "MYR/tonne (Bursa Malaysia crude palm oil)",
    "DXY": "index points (US dollar index)",
    "VIX": "index points (CBOE volatility index)",
    "USDBRL": "BRL per USD",
    "USDMYR": "MYR per USD",
}
WEATHER_SERIES: tuple[str, ...] = (
    "weather_us_midwest_temp_anom",
    "weather_us_midwest_precip_anom",
    "weather_brazil_precip_anom",
    "weather_malaysia_precip_anom",
)
NEWS_SERIES: tuple[str, ...] = (
    "news_soyoil_sentiment",
    "news_biofuel_sentiment",
    "news_volume_index",
)
POLICY_SERIES: tuple[str, ...] = (
    "policy_rfs_mandate_bgal",
    "policy_trade_tension_index",
    "policy_argentina_export_tax_pct",
)
MACRO_SERIES: tuple[str, ...] = ("macro_us10y_yield", "macro_fed_funds_rate", "macro_us_cpi_yoy")
SIGNAL_SERIES: tuple[str, ...] = WEATHER_SERIES + NEWS_SERIES + POLICY_SERIES + MACRO_SERIES

# --- Lead-lag strengths (weak by design; docs/sample_market.md reports what they buy) ----------
# Board crush margin in USD/bu; ZL's next-day log return gets -CRUSH_REVERSION times the
# margin's deviation from its 60-day EMA, measured in units of the soybean price (USD/bu).
CRUSH_REVERSION = 0.02
CRUSH_EMA_DAYS = 60
# Palm-soy spread: log(ZL in USD/t / FCPO in USD/t) minus its 120-day EMA.
PALM_SOY_REVERSION_ZL = 0.005
PALM_SOY_REVERSION_FCPO = 0.008
PALM_SOY_EMA_DAYS = 120
LB_PER_TONNE_OVER_100 = 22.0462  # ZL cents/lb * 22.0462 = USD per metric tonne
# Yesterday's precipitation anomaly (z-score) moves today's drift in the growing season:
# US midwest in June-August for ZS/ZC/ZL, Brazil in December-February for ZS.
US_PRECIP_EFFECT: dict[str, float] = {"ZS": 0.0007, "ZC": 0.0007, "ZL": 0.0004}
BRAZIL_PRECIP_EFFECT: dict[str, float] = {"ZS": 0.0004}
# FCPO trades before CBOT opens: part of its shock is yesterday's standardized ZL shock.
FCPO_FOLLOWS_ZL = 0.25

_OU_HALF_LIFE_DAYS = 252.0
_OU_BAND = 0.25  # the pull grows as (1 + (x / band)^2): a soft band around the anchor
_OU_BAND_BY_SYMBOL = {"FCPO": 0.2, "USDBRL": 0.08, "USDMYR": 0.06}  # tighter for FX
_VIX_HALF_LIFE_DAYS = 10.0
_REGIME_SPLIT = dt.date(2006, 1, 1)  # correlation regime: biodiesel links energy and veg oil
_T_DOF = 6.0  # multivariate-t shocks (fat tails, unit variance)
_SV_PHI = 0.98  # common stochastic volatility factor, AR(1) in logs
_SV_SD = 0.2
_GAP_SHARE = 0.3  # sd of the overnight gap as a share of the day's sd
_WICK_SHARE = 0.35  # sd of the high/low wicks as a share of the day's sd
_DROP_PROB = 0.01  # share of days missing for every symbol but ZL
_VOLUME_GROWTH = 1.06  # per year, centred on 2005
_USDMYR_DEPEG = dt.date(2005, 7, 21)


def _date_values(text: str) -> tuple[tuple[str, float], ...]:
    """Parse a whitespace-separated ``YYYY-MM-DD value`` table."""
    tokens = text.split()
    return tuple((tokens[i], float(tokens[i + 1])) for i in range(0, len(tokens), 2))


_REAL9 = ("ZL", "ZS", "ZM", "ZC", "ZW", "CL", "HO", "DXY", "VIX")
_EXTRA3 = ("FCPO", "USDBRL", "USDMYR")

# Level knots 2000-01-03..2010-08-15 from the real file: the first close of 2000, then the
# geometric-mean close of each quarter (of each month in 2007-07..2009-06) placed mid-period.
_REAL_KNOTS: tuple[
    tuple[str, float, float, float, float, float, float, float, float, float], ...
] = (
    # date, ZL, ZS, ZM, ZC, ZW, CL, HO, DXY, VIX
    ("2000-01-03", 15.44, 456.5, 146.4, 200.8, 247.5, 25.56, 67.78, 100.2, 24.21),
    ("2000-02-15", 16.26, 505.6, 163, 221.2, 257.8, 28.82, 76.2, 103.9, 23.09),
    ("2000-05-15", 17.18, 529.9, 175.6, 223.1, 264.4, 28.79, 73.98, 108.3, 24.73),
    ("2000-08-15", 15.39, 468.7, 161.2, 182.3, 245.3, 31.54, 88.29, 111.2, 19.12),
    ("2000-11-15", 14.94, 486.1, 178.4, 210.4, 262.2, 31.92, 97.47, 115.1, 25.92),
    ("2001-02-15", 15.11, 459.8, 164.5, 213.8, 271.9, 28.71, 78.04, 111.9, 25.53),
    ("2001-05-15", 14.96, 446.9, 160.9, 197.9, 262.4, 27.9, 76.35, 117.1, 23.67),
    ("2001-08-15", 17.25, 491.8, 171.6, 215.2, 271.6, 26.65, 72.27, 115.5, 24.7),
    ("2001-11-15", 15.63, 438.4, 158, 207.8, 281.8, 20.44, 57.86, 115.4, 27.59),
    ("2002-02-15", 15.76, 443.3, 153.9, 206.1, 285.1, 21.52, 57.15, 118.2, 21.26),
    ("2002-05-15", 17.2, 482.8, 163.6, 205.1, 276.2, 26.24, 66.26, 113.4, 21.47),
    ("2002-08-15", 19.93, 567.3, 183.1, 252.2, 354.8, 28.28, 72.53, 106.9, 34.78),
    ("2002-11-15", 21.32, 560.3, 166.8, 244.5, 375.1, 28.23, 77.36, 105.9, 30.44),
    ("2003-02-15", 20.65, 570.1, 171.8, 235, 314.5, 33.94, 95.52, 100.1, 29.87),
    ("2003-05-15", 22.15, 620.2, 188.9, 241.2, 304.9, 28.93, 74.47, 95.75, 21.39),
    ("2003-08-15", 21.05, 591.9, 186.3, 221.3, 345.1, 30.18, 78.49, 96.19, 19.28),
    ("2003-11-15", 26.84, 753.4, 230.2, 236.1, 370.9, 31.14, 85.5, 90.75, 17.39),
    ("2004-02-15", 31.57, 888.8, 271.5, 284.4, 385.5, 35.31, 93.41, 87.13, 16.57),
    ("2004-05-15", 30.46, 931.9, 297.2, 299.8, 373.9, 38.27, 97.69, 89.82, 16.17),
    ("2004-08-15", 24.15, 644, 201.9, 224.5, 319.7, 43.79, 117.9, 88.62, 15.37),
    ("2004-11-15", 20.71, 533.1, 156.3, 201.4, 303.6, 48.09, 139.2, 83.9, 13.59),
    ("2005-02-15", 21.05, 568.5, 169.8, 205, 313.8, 49.75, 140.3, 83.2, 12.75),
    ("2005-05-15", 23.13, 650.1, 202.2, 212.5, 317.9, 53, 151.4, 86.13, 13.31),
    ("2005-08-15", 23.35, 628.2, 195.4, 217.7, 323.5, 63.22, 182.9, 88.55, 12.21),
    ("2005-11-15", 22.35, 579.1, 177.6, 198.8, 318.9, 59.99, 180, 90.71, 12.66),
    ("2006-02-15", 22.65, 581.3, 178.9, 220, 350, 63.21, 175.2, 89.78, 12.02),
    ("2006-05-15", 24.61, 583.6, 175.5, 240.1, 373, 70.43, 197.7, 86.23, 14.26),
    ("2006-08-15", 25.44, 562, 163.3, 237.9, 392, 70.29, 192.8, 85.49, 13.5),
    ("2006-11-15", 27.29, 637.4, 185.3, 340.1, 492.7, 59.91, 170.3, 84.88, 11.02),
    ("2007-02-15", 29.92, 734.4, 212.8, 400.7, 463.8, 57.97, 166, 84.2, 12.33),
    ("2007-05-15", 34.06, 776.3, 210.9, 370.7, 507.9, 64.92, 191, 82.24, 13.67),
    ("2007-07-15", 37.15, 852.6, 228.8, 325.8, 612.9, 74.09, 207.9, 80.78, 17.08),
    ("2007-08-15", 36.15, 840.8, 228.3, 330.8, 690.8, 72.33, 199.7, 80.93, 24.86),
    ("2007-09-15", 38.62, 945, 261.7, 350.4, 862.2, 79.87, 219.8, 79.3, 21.95),
    ("2007-10-15", 39.89, 975.2, 272.4, 357.7, 852.7, 85.67, 229.6, 77.85, 19.04),
    ("2007-11-15", 44.79, 1058, 285.9, 381.5, 790.8, 94.73, 260, 75.67, 25.49),
    ("2007-12-15", 46.57, 1151, 318.4, 423.2, 916, 91.64, 257.8, 76.76, 21.58),
    ("2008-01-15", 51.83, 1256, 341.3, 488.3, 923.7, 92.92, 256, 75.9, 25.7),
    ("2008-02-15", 59.17, 1382, 359.8, 515.9, 1056, 95.25, 264.7, 75.67, 25.38),
    ("2008-03-15", 59.76, 1346, 343.9, 547.5, 1093, 105.4, 300.8, 72.45, 27.04),
    ("2008-04-15", 58.55, 1313, 340.4, 593.3, 879.3, 112.5, 318.4, 72.12, 21.52),
    ("2008-05-15", 60.31, 1331, 335, 597.8, 777.2, 125.3, 360.9, 72.91, 18.28),
    ("2008-06-15", 64.13, 1502, 395.5, 697.3, 846.5, 133.8, 381.1, 73.18, 22.06),
    ("2008-07-15", 62.17, 1505, 409.1, 639, 812, 133.1, 377.5, 72.54, 24.23),
    ("2008-08-15", 52.76, 1281, 352.1, 548.5, 817.8, 116.6, 319, 76.05, 20.67),
    ("2008-09-15", 47.22, 1189, 329.4, 539.5, 718.9, 103.9, 293, 78.26, 29.55),
    ("2008-10-15", 36.52, 920.8, 263.6, 411.8, 568.4, 75.84, 222.6, 83.08, 60.24),
    ("2008-11-15", 33.02, 895.4, 265.5, 373.4, 533.2, 57.05, 184.6, 86.43, 62.14),
    ("2008-12-15", 30.87, 866.3, 265.1, 360.5, 532.9, 40.74, 141.7, 83.06, 51.78),
    ("2009-01-15", 34.21, 992.4, 307, 390.6, 588.4, 41.53, 146.4, 84.11, 44.48),
    ("2009-02-15", 31.89, 927.5, 291.5, 361.8, 534.2, 38.99, 127.3, 86.55, 45.49),
    ("2009-03-15", 31.41, 907.4, 285.1, 376, 520.8, 47.78, 128.7, 86.43, 44.65),
    ("2009-04-15", 35.7, 1019, 316.9, 387.1, 526.2, 49.62, 137.5, 85.25, 38.01),
    ("2009-05-15", 38.33, 1149, 370.1, 417.8, 585, 58.92, 150.2, 82.15, 31.93),
    ("2009-06-15", 37.69, 1211, 400.5, 411.5, 578.8, 69.62, 178.8, 80.09, 29.08),
    ("2009-08-15", 34.87, 1045, 338.6, 326.9, 483.8, 68.03, 176.4, 78.32, 25.43),
    ("2009-11-15", 38.02, 1001, 305.6, 385.3, 521.5, 75.92, 198.8, 76.06, 22.93),
    ("2010-02-15", 38.56, 954.1, 277.5, 369.8, 495, 78.74, 204.9, 79.62, 19.94),
    ("2010-05-15", 38.1, 957.1, 280.6, 354.7, 466.8, 77.61, 210.5, 84.37, 25.23),
    ("2010-08-15", 39.35, 1021, 305.7, 395.6, 628.4, 76.23, 203.2, 82.6, 24.87),
)

# Level knots from 2010-11 on: approximate public history (quarter levels, covid months), flat
# after the last knot. Not exact prices; see docs/sample_market.md.
_PUBLIC_KNOTS: tuple[
    tuple[str, float, float, float, float, float, float, float, float, float], ...
] = (
    # date, ZL, ZS, ZM, ZC, ZW, CL, HO, DXY, VIX
    ("2010-11-15", 47, 1180, 320, 560, 720, 84, 232, 78.5, 20),
    ("2011-02-15", 55, 1380, 360, 690, 830, 92, 280, 77.5, 18),
    ("2011-05-15", 57, 1340, 340, 720, 760, 102, 305, 75.5, 17),
    ("2011-08-15", 54, 1370, 350, 700, 720, 88, 300, 74.5, 33),
    ("2011-11-15", 50, 1170, 300, 620, 620, 95, 300, 78, 31),
    ("2012-02-15", 52, 1240, 330, 640, 640, 103, 315, 79, 19),
    ("2012-05-15", 52, 1430, 420, 600, 640, 95, 290, 81, 19),
    ("2012-08-15", 54, 1690, 520, 800, 880, 93, 305, 82, 16),
    ("2012-11-15", 49, 1430, 430, 740, 860, 87, 300, 80.5, 17),
    ("2013-02-15", 51, 1440, 430, 720, 760, 95, 305, 80.5, 14),
    ("2013-05-15", 48, 1450, 420, 640, 690, 94, 290, 83, 14),
    ("2013-08-15", 44, 1350, 420, 500, 640, 106, 305, 81.5, 15),
    ("2013-11-15", 41, 1300, 430, 430, 650, 95, 295, 80.5, 14),
    ("2014-02-15", 39, 1330, 440, 440, 600, 100, 300, 80.5, 15),
    ("2014-05-15", 40, 1430, 480, 480, 680, 102, 295, 80, 13),
    ("2014-08-15", 34, 1150, 410, 360, 540, 97, 285, 81.5, 13),
    ("2014-11-15", 32, 1020, 380, 370, 530, 76, 230, 88, 15),
    ("2015-02-15", 31, 980, 330, 385, 510, 50, 170, 94.5, 17),
    ("2015-05-15", 32, 950, 310, 365, 500, 59, 190, 96, 13),
    ("2015-08-15", 29, 920, 330, 380, 500, 45, 150, 96, 19),
    ("2015-11-15", 29, 870, 300, 370, 500, 43, 140, 98, 17),
    ("2016-02-15", 31, 880, 270, 360, 460, 31, 110, 97.5, 22),
    ("2016-05-15", 32, 1060, 360, 390, 480, 46, 140, 94.5, 15),
    ("2016-08-15", 32, 1000, 330, 330, 410, 45, 140, 96, 12.5),
    ("2016-11-15", 35, 1000, 310, 350, 420, 48, 150, 100, 14),
    ("2017-02-15", 34, 1030, 330, 370, 440, 53, 160, 100.5, 11.5),
    ("2017-05-15", 32, 950, 310, 370, 430, 49, 150, 98.5, 11),
    ("2017-08-15", 34, 960, 310, 365, 450, 48, 160, 93.5, 11.5),
    ("2017-11-15", 34, 980, 320, 350, 430, 56, 185, 93.5, 10.5),
    ("2018-02-15", 32, 1020, 370, 365, 460, 63, 195, 90, 18),
    ("2018-05-15", 31, 1010, 380, 395, 500, 67, 210, 93, 14),
    ("2018-08-15", 28, 860, 320, 360, 530, 69, 215, 95, 13),
    ("2018-11-15", 28, 870, 310, 365, 510, 59, 200, 96.5, 20),
    ("2019-02-15", 30, 910, 310, 375, 510, 55, 190, 96.5, 16),
    ("2019-05-15", 28, 850, 300, 390, 480, 58, 195, 97.5, 16),
    ("2019-08-15", 29, 880, 300, 400, 480, 56, 185, 98, 17),
    ("2019-11-15", 31, 910, 300, 380, 520, 57, 195, 97.5, 14),
    ("2020-02-14", 31, 880, 300, 380, 550, 52, 160, 99, 15),
    ("2020-03-18", 26, 850, 320, 350, 540, 25, 105, 102.5, 60),
    ("2020-04-21", 25.5, 835, 290, 315, 550, 15, 80, 100, 45),
    ("2020-06-15", 27.5, 870, 290, 330, 490, 38, 110, 97, 32),
    ("2020-08-15", 31, 900, 290, 330, 520, 41, 120, 93.5, 24),
    ("2020-11-15", 36, 1120, 380, 410, 590, 42, 125, 91.5, 24),
    ("2021-02-15", 45, 1370, 420, 530, 650, 59, 175, 90.5, 23),
    ("2021-05-15", 62, 1530, 400, 640, 690, 65, 200, 91, 20),
    ("2021-08-15", 62, 1330, 350, 550, 700, 69, 210, 92.5, 19),
    ("2021-11-15", 60, 1250, 330, 560, 790, 78, 240, 95, 20),
    ("2022-02-15", 68, 1550, 450, 650, 880, 95, 300, 96.5, 27),
    ("2022-05-15", 80, 1680, 420, 760, 1100, 108, 400, 102.5, 29),
    ("2022-08-15", 67, 1480, 430, 650, 820, 95, 350, 107, 26),
    ("2022-11-15", 70, 1430, 430, 670, 850, 85, 350, 108, 26),
    ("2023-02-15", 60, 1520, 470, 660, 740, 77, 290, 103, 20),
    ("2023-05-15", 52, 1400, 420, 590, 640, 73, 250, 102.5, 17),
    ("2023-08-15", 63, 1360, 410, 500, 620, 80, 300, 103, 15),
    ("2023-11-15", 52, 1330, 430, 480, 580, 78, 280, 104.5, 14),
    ("2024-02-15", 47, 1200, 350, 430, 590, 76, 280, 103.5, 13.5),
    ("2024-05-15", 44, 1180, 360, 450, 620, 80, 255, 105, 13),
    ("2024-08-15", 41, 1020, 320, 390, 530, 75, 235, 102.5, 18),
    ("2024-11-15", 42, 990, 300, 430, 550, 70, 220, 106, 16),
    ("2025-02-15", 45, 1030, 300, 480, 570, 71, 240, 107.5, 17),
    ("2025-05-15", 49, 1050, 295, 450, 530, 62, 210, 100, 24),
    ("2025-08-15", 53, 1020, 285, 400, 520, 65, 230, 98, 16),
    ("2025-11-15", 50, 1120, 310, 430, 530, 60, 230, 99.5, 18),
)

# FCPO, USDBRL, USDMYR over the whole span: approximate public history. USDMYR was pegged at
# 3.80 until 2005-07-21.
_EXTRA_KNOTS: tuple[tuple[str, float, float, float], ...] = (
    # date, FCPO, USDBRL, USDMYR
    ("2000-01-03", 1350, 1.80, 3.80),
    ("2000-08-15", 1050, 1.80, 3.80),
    ("2001-02-15", 850, 2.00, 3.80),
    ("2001-08-15", 1050, 2.45, 3.80),
    ("2002-02-15", 1100, 2.40, 3.80),
    ("2002-08-15", 1350, 3.10, 3.80),
    ("2002-10-15", 1400, 3.85, 3.80),
    ("2003-02-15", 1450, 3.55, 3.80),
    ("2003-08-15", 1400, 2.95, 3.80),
    ("2004-02-15", 1950, 2.90, 3.80),
    ("2004-08-15", 1500, 3.00, 3.80),
    ("2005-02-15", 1400, 2.65, 3.80),
    ("2005-07-20", 1400, 2.40, 3.80),
    ("2005-11-15", 1400, 2.25, 3.77),
    ("2006-05-15", 1450, 2.15, 3.63),
    ("2006-11-15", 1800, 2.15, 3.65),
    ("2007-05-15", 2400, 2.00, 3.42),
    ("2007-11-15", 2800, 1.75, 3.36),
    ("2008-03-05", 4300, 1.70, 3.19),
    ("2008-07-15", 3300, 1.58, 3.26),
    ("2008-10-24", 1450, 2.30, 3.55),
    ("2009-03-15", 1900, 2.35, 3.70),
    ("2009-08-15", 2300, 1.83, 3.52),
    ("2010-02-15", 2500, 1.85, 3.40),
    ("2010-08-15", 2600, 1.76, 3.15),
    ("2011-02-15", 3900, 1.67, 3.04),
    ("2011-08-15", 3100, 1.60, 2.98),
    ("2012-02-15", 3200, 1.72, 3.03),
    ("2012-08-15", 2900, 2.03, 3.12),
    ("2013-02-15", 2450, 1.97, 3.10),
    ("2013-08-15", 2250, 2.35, 3.28),
    ("2014-02-15", 2650, 2.38, 3.32),
    ("2014-08-15", 2150, 2.27, 3.17),
    ("2015-02-15", 2250, 2.85, 3.60),
    ("2015-08-28", 1850, 3.55, 4.20),
    ("2015-11-15", 2350, 3.80, 4.35),
    ("2016-05-15", 2600, 3.50, 4.00),
    ("2016-11-15", 2850, 3.35, 4.30),
    ("2017-05-15", 2600, 3.20, 4.33),
    ("2017-11-15", 2650, 3.25, 4.15),
    ("2018-05-15", 2400, 3.60, 3.95),
    ("2018-11-15", 2000, 3.80, 4.18),
    ("2019-05-15", 2000, 3.95, 4.17),
    ("2019-11-15", 2600, 4.15, 4.15),
    ("2020-02-14", 2600, 4.35, 4.14),
    ("2020-03-18", 2250, 5.05, 4.38),
    ("2020-04-21", 2100, 5.35, 4.37),
    ("2020-06-15", 2400, 5.10, 4.27),
    ("2020-08-15", 2800, 5.40, 4.19),
    ("2020-11-15", 3400, 5.40, 4.10),
    ("2021-02-15", 3700, 5.40, 4.04),
    ("2021-05-15", 4200, 5.30, 4.13),
    ("2021-08-15", 4300, 5.25, 4.24),
    ("2021-11-15", 5000, 5.50, 4.18),
    ("2022-02-15", 5600, 5.20, 4.19),
    ("2022-03-09", 6700, 5.05, 4.19),
    ("2022-05-15", 6000, 4.95, 4.38),
    ("2022-08-15", 4000, 5.15, 4.46),
    ("2022-11-15", 4000, 5.30, 4.60),
    ("2023-02-15", 4000, 5.20, 4.40),
    ("2023-05-15", 3600, 4.95, 4.50),
    ("2023-08-15", 3900, 4.90, 4.62),
    ("2023-11-15", 3800, 4.90, 4.70),
    ("2024-02-15", 3900, 4.97, 4.78),
    ("2024-05-15", 3900, 5.10, 4.72),
    ("2024-08-15", 3900, 5.50, 4.40),
    ("2024-11-15", 4900, 5.75, 4.45),
    ("2025-02-15", 4500, 5.80, 4.45),
    ("2025-05-15", 3900, 5.65, 4.28),
    ("2025-08-15", 4400, 5.45, 4.22),
    ("2025-11-15", 4100, 5.35, 4.15),
)

# Annualised daily log-return volatility by year, in MARKET_SYMBOLS order. 2000-2010 for the
# nine real symbols is measured on the real file; the rest is approximate public history.
_VOL_BY_YEAR: dict[int, tuple[float, ...]] = {
    # year: ZL, ZS, ZM, ZC, ZW, CL, HO, FCPO, DXY, VIX, USDBRL, USDMYR
    2000: (0.205, 0.192, 0.222, 0.222, 0.229, 0.465, 0.532, 0.26, 0.085, 0.877, 0.12, 0.002),
    2001: (0.224, 0.196, 0.220, 0.214, 0.224, 0.467, 0.439, 0.28, 0.085, 0.868, 0.16, 0.002),
    2002: (0.215, 0.203, 0.225, 0.230, 0.278, 0.335, 0.344, 0.24, 0.073, 0.910, 0.24, 0.002),
    2003: (0.218, 0.235, 0.308, 0.216, 0.301, 0.450, 0.480, 0.22, 0.082, 0.618, 0.16, 0.002),
    2004: (0.313, 0.396, 0.397, 0.255, 0.300, 0.364, 0.406, 0.26, 0.092, 0.773, 0.12, 0.002),
    2005: (0.275, 0.276, 0.291, 0.268, 0.255, 0.351, 0.393, 0.22, 0.079, 0.833, 0.13, 0.03),
    2006: (0.212, 0.190, 0.199, 0.297, 0.307, 0.292, 0.311, 0.22, 0.068, 0.942, 0.12, 0.04),
    2007: (0.193, 0.228, 0.274, 0.325, 0.337, 0.298, 0.276, 0.24, 0.053, 1.319, 0.11, 0.04),
    2008: (0.417, 0.512, 0.423, 0.436, 0.515, 0.625, 0.456, 0.45, 0.117, 1.242, 0.25, 0.06),
    2009: (0.306, 0.362, 0.449, 0.387, 0.399, 0.534, 0.452, 0.35, 0.110, 0.889, 0.18, 0.07),
    2010: (0.182, 0.179, 0.247, 0.292, 0.378, 0.315, 0.285, 0.26, 0.084, 1.290, 0.13, 0.06),
    2011: (0.26, 0.22, 0.26, 0.33, 0.34, 0.32, 0.27, 0.28, 0.085, 1.00, 0.14, 0.065),
    2012: (0.22, 0.25, 0.28, 0.30, 0.32, 0.25, 0.22, 0.22, 0.07, 0.95, 0.12, 0.055),
    2013: (0.19, 0.20, 0.25, 0.28, 0.26, 0.20, 0.17, 0.20, 0.07, 0.95, 0.14, 0.06),
    2014: (0.20, 0.20, 0.26, 0.24, 0.26, 0.22, 0.22, 0.22, 0.06, 1.00, 0.16, 0.05),
    2015: (0.25, 0.18, 0.25, 0.26, 0.30, 0.45, 0.38, 0.25, 0.10, 1.10, 0.20, 0.10),
    2016: (0.24, 0.19, 0.25, 0.22, 0.28, 0.48, 0.40, 0.28, 0.08, 1.00, 0.18, 0.09),
    2017: (0.20, 0.14, 0.19, 0.16, 0.24, 0.27, 0.24, 0.25, 0.07, 0.95, 0.12, 0.05),
    2018: (0.18, 0.17, 0.19, 0.15, 0.27, 0.30, 0.26, 0.18, 0.07, 1.10, 0.16, 0.05),
    2019: (0.18, 0.15, 0.18, 0.22, 0.26, 0.34, 0.28, 0.20, 0.05, 0.95, 0.12, 0.04),
    2020: (0.24, 0.16, 0.19, 0.22, 0.28, 0.95, 0.55, 0.32, 0.08, 1.10, 0.22, 0.07),
    2021: (0.33, 0.20, 0.22, 0.28, 0.28, 0.36, 0.32, 0.32, 0.06, 0.95, 0.15, 0.04),
    2022: (0.38, 0.22, 0.28, 0.30, 0.45, 0.50, 0.55, 0.45, 0.09, 0.85, 0.18, 0.06),
    2023: (0.35, 0.18, 0.24, 0.25, 0.33, 0.35, 0.40, 0.30, 0.08, 0.80, 0.13, 0.06),
    2024: (0.28, 0.17, 0.22, 0.24, 0.28, 0.30, 0.30, 0.25, 0.07, 0.90, 0.13, 0.07),
    2025: (0.30, 0.15, 0.20, 0.22, 0.24, 0.32, 0.30, 0.25, 0.08, 1.00, 0.13, 0.07),
    2026: (0.26, 0.16, 0.21, 0.23, 0.26, 0.32, 0.30, 0.26, 0.07, 0.95, 0.13, 0.06),
}

# Daily log-return correlations of the nine real symbols (_REAL9 order, lower triangle),
# measured on the real file for 2000-2005 and 2006-2010.
_REAL_CORR_PRE2006: tuple[tuple[float, ...], ...] = (
    (1.00,),
    (0.69, 1.00),
    (0.45, 0.81, 1.00),
    (0.48, 0.50, 0.44, 1.00),
    (0.36, 0.34, 0.29, 0.60, 1.00),
    (0.03, 0.05, 0.06, 0.07, 0.07, 1.00),
    (0.02, 0.05, 0.05, 0.04, 0.06, 0.70, 1.00),
    (-0.06, -0.05, -0.04, -0.05, -0.05, -0.03, -0.03, 1.00),
    (-0.00, -0.01, -0.03, -0.01, -0.00, -0.02, -0.01, -0.12, 1.00),
)
_REAL_CORR_POST2006: tuple[tuple[float, ...], ...] = (
    (1.00,),
    (0.71, 1.00),
    (0.51, 0.81, 1.00),
    (0.57, 0.57, 0.51, 1.00),
    (0.47, 0.40, 0.37, 0.62, 1.00),
    (0.55, 0.40, 0.27, 0.35, 0.31, 1.00),
    (0.56, 0.41, 0.26, 0.32, 0.29, 0.78, 1.00),
    (-0.37, -0.30, -0.24, -0.30, -0.25, -0.36, -0.38, 1.00),
    (-0.18, -0.16, -0.12, -0.14, -0.12, -0.20, -0.20, 0.11, 1.00),
)
# FCPO, USDBRL, USDMYR against _REAL9 then against each other (approximate, public knowledge).
_EXTRA_CORR_PRE2006: dict[str, tuple[float, ...]] = {
    "FCPO": (0.30, 0.22, 0.12, 0.12, 0.10, 0.05, 0.05, -0.05, -0.02),
    "USDBRL": (-0.05, -0.05, -0.03, -0.03, -0.03, -0.05, -0.05, 0.25, 0.20, -0.02),
    "USDMYR": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
}
_EXTRA_CORR_POST2006: dict[str, tuple[float, ...]] = {
    "FCPO": (0.35, 0.25, 0.15, 0.15, 0.12, 0.20, 0.20, -0.12, -0.08),
    "USDBRL": (-0.15, -0.12, -0.08, -0.10, -0.08, -0.22, -0.20, 0.40, 0.30, -0.05),
    "USDMYR": (-0.10, -0.08, -0.05, -0.06, -0.05, -0.15, -0.14, 0.40, 0.15, 0.10, 0.30),
}

# ZL calendar-month effect: mean daily log return by month on the real file (1995-2010),
# demeaned and halved; basis points per 21 trading days, January..December.
_ZL_MONTH_EFFECT_21D = np.array([-44, 192, 24, 129, -65, -86, -54, 0, -119, 28, 89, -94]) / 1e4

_TICKS: dict[str, float] = {
    "ZL": 0.01,
    "ZS": 0.25,
    "ZM": 0.1,
    "ZC": 0.25,
    "ZW": 0.25,
    "CL": 0.01,
    "HO": 0.01,
    "FCPO": 1.0,
    "DXY": 0.001,
    "VIX": 0.01,
    "USDBRL": 0.0001,
    "USDMYR": 0.0001,
}
# Median daily volume around 2005 (contracts); the real file's 2000-2010 medians where it has
# them, public orders of magnitude otherwise.
_VOLUME_2005: dict[str, float] = {
    "ZL": 9_800,
    "ZS": 25_000,
    "ZM": 10_800,
    "ZC": 34_000,
    "ZW": 16_700,
    "CL": 150_000,
    "HO": 22_800,
    "FCPO": 9_000,
}

# Biomass-based diesel mandate announcements (billion gallons, the latest headline volume) and
# ZL's log-return jump on the announcement day.
_RFS_EVENTS: tuple[tuple[str, float, float], ...] = (
    ("2007-12-19", 0.50, 0.01),  # EISA: 0.5 bgal for 2009
    ("2010-02-03", 1.15, 0.01),  # RFS2 final rule: 1.15 for 2009/10
    ("2010-11-29", 0.80, -0.005),  # 2011 standards
    ("2011-12-20", 1.00, 0.005),  # 2012 standards
    ("2012-09-14", 1.28, 0.005),  # 2013 volume
    ("2013-11-15", 1.28, -0.02),  # 2014 proposal held flat
    ("2015-11-30", 1.90, 0.015),  # 2014-16 final rule
    ("2016-11-23", 2.10, 0.01),  # 2018 volume
    ("2017-11-30", 2.10, -0.005),  # 2019 volume held
    ("2018-11-30", 2.43, 0.005),  # 2020 volume
    ("2022-06-03", 2.76, 0.01),  # 2021-22 volumes
    ("2023-06-21", 3.35, -0.04),  # 2023-25 set below the proposal's expectations
    ("2025-06-13", 5.61, 0.05),  # 2026 proposal well above expectations
)

# Argentina soybean-oil export tax (%), effective dates.
_ARGENTINA_TAX = _date_values(
    """
    2000-01-01 3.5   2002-04-08 20.0   2007-01-09 24.0   2007-11-09 32.0
    2015-12-17 27.0   2018-01-01 26.5   2018-08-01 23.0   2018-09-04 28.0
    2019-12-14 30.0   2020-03-04 31.0   2025-01-27 24.5
    """
)

# US-China trade tension index (0-100) knots; weekly values add AR noise.
_TRADE_TENSION = _date_values(
    """
    2000-01-01 15   2002-03-01 25   2002-12-01 15   2009-09-01 22   2010-03-01 15
    2018-01-15 20   2018-03-22 45   2018-07-06 72   2018-12-01 55   2019-05-10 75
    2019-08-23 85   2019-10-11 60   2019-12-13 40   2020-01-15 30   2021-06-01 25
    2024-12-01 28   2025-02-01 45   2025-04-09 88   2025-05-12 60   2025-10-10 68
    2025-11-01 45
    """
)

# Fed funds target (upper bound from 2008-12) changes; emergency moves included.
_FED_FUNDS = _date_values(
    """
    1999-11-16 5.50   2000-02-02 5.75   2000-03-21 6.00   2000-05-16 6.50   2001-01-03 6.00
    2001-01-31 5.50   2001-03-20 5.00   2001-04-18 4.50   2001-05-15 4.00   2001-06-27 3.75
    2001-08-21 3.50   2001-09-17 3.00   2001-10-02 2.50   2001-11-06 2.00   2001-12-11 1.75
    2002-11-06 1.25   2003-06-25 1.00   2004-06-30 1.25   2004-08-10 1.50   2004-09-21 1.75
    2004-11-10 2.00   2004-12-14 2.25   2005-02-02 2.50   2005-03-22 2.75   2005-05-03 3.00
    2005-06-30 3.25   2005-08-09 3.50   2005-09-20 3.75   2005-11-01 4.00   2005-12-13 4.25
    2006-01-31 4.50   2006-03-28 4.75   2006-05-10 5.00   2006-06-29 5.25   2007-09-18 4.75
    2007-10-31 4.50   2007-12-11 4.25   2008-01-22 3.50   2008-01-30 3.00   2008-03-18 2.25
    2008-04-30 2.00   2008-10-08 1.50   2008-10-29 1.00   2008-12-16 0.25   2015-12-16 0.50
    2016-12-14 0.75   2017-03-15 1.00   2017-06-14 1.25   2017-12-13 1.50   2018-03-21 1.75
    2018-06-13 2.00   2018-09-26 2.25   2018-12-19 2.50   2019-07-31 2.25   2019-09-18 2.00
    2019-10-30 1.75   2020-03-03 1.25   2020-03-16 0.25   2022-03-16 0.50   2022-05-04 1.00
    2022-06-15 1.75   2022-07-27 2.50   2022-09-21 3.25   2022-11-02 4.00   2022-12-14 4.50
    2023-02-01 4.75   2023-03-22 5.00   2023-05-03 5.25   2023-07-26 5.50   2024-09-18 5.00
    2024-11-07 4.75   2024-12-18 4.50   2025-09-17 4.25   2025-10-29 4.00
    """
)
# Scheduled FOMC meetings, approximated as the Wednesday of the week of these month/days.
_FOMC_MONTH_DAYS = ((1, 29), (3, 19), (5, 1), (6, 17), (7, 29), (9, 17), (10, 29), (12, 10))

# US 10-year Treasury yield (%) knots.
_US10Y = _date_values(
    """
    2000-01-15 6.6   2000-12-15 5.2   2001-11-07 4.3   2002-04-01 5.4   2002-10-09 3.6
    2003-06-13 3.1   2003-09-01 4.4   2004-06-14 4.8   2005-06-01 3.9   2006-06-28 5.2
    2007-06-12 5.3   2008-03-17 3.3   2008-06-13 4.2   2008-12-18 2.1   2009-06-10 3.9
    2010-04-05 4.0   2010-10-08 2.4   2011-02-08 3.7   2011-09-22 1.8   2012-07-24 1.4
    2013-01-15 1.9   2013-09-05 3.0   2014-12-31 2.2   2015-01-30 1.7   2015-06-10 2.5
    2016-07-08 1.37   2016-12-15 2.6   2017-09-07 2.05   2018-10-05 3.23   2019-09-03 1.47
    2020-01-15 1.8   2020-03-09 0.55   2020-08-04 0.52   2021-03-31 1.74   2021-08-04 1.18
    2022-06-14 3.48   2022-10-21 4.22   2023-04-06 3.3   2023-10-19 4.98   2023-12-27 3.79
    2024-04-25 4.70   2024-09-16 3.62   2025-01-14 4.79   2025-04-04 4.0   2025-05-21 4.6
    2025-10-22 3.95   2025-11-15 4.1
    """
)

# US CPI year-on-year (%) by reference month (published mid-month after).
_CPI_YOY = _date_values(
    """
    1999-12-01 2.7   2000-06-01 3.7   2000-12-01 3.4   2001-06-01 3.2   2001-12-01 1.6
    2002-06-01 1.1   2002-12-01 2.4   2003-06-01 2.1   2003-12-01 1.9   2004-06-01 3.3
    2004-12-01 3.3   2005-06-01 2.5   2005-09-01 4.7   2005-12-01 3.4   2006-06-01 4.3
    2006-10-01 1.3   2006-12-01 2.5   2007-06-01 2.7   2007-12-01 4.1   2008-07-01 5.6
    2008-12-01 0.1   2009-07-01 -2.1   2009-12-01 2.7   2010-06-01 1.1   2010-12-01 1.5
    2011-09-01 3.9   2011-12-01 3.0   2012-06-01 1.7   2012-12-01 1.7   2013-06-01 1.8
    2013-12-01 1.5   2014-06-01 2.1   2014-12-01 0.8   2015-06-01 0.1   2015-12-01 0.7
    2016-06-01 1.0   2016-12-01 2.1   2017-06-01 1.6   2017-12-01 2.1   2018-07-01 2.9
    2018-12-01 1.9   2019-06-01 1.6   2019-12-01 2.3   2020-05-01 0.1   2020-12-01 1.4
    2021-06-01 5.4   2021-12-01 7.0   2022-06-01 9.1   2022-12-01 6.5   2023-06-01 3.0
    2023-12-01 3.4   2024-06-01 3.0   2024-09-01 2.4   2024-12-01 2.9   2025-04-01 2.3
    2025-09-01 3.0   2026-01-01 2.8
    """
)

# Weather episodes: (series, first day, last day, mean anomaly added).
_WEATHER_EPISODES: tuple[tuple[str, str, str, float], ...] = (
    ("weather_us_midwest_temp_anom", "2012-06-01", "2012-08-31", 2.0),
    ("weather_us_midwest_precip_anom", "2012-06-01", "2012-08-31", -1.0),
    ("weather_us_midwest_precip_anom", "2019-04-01", "2019-06-15", 1.0),
    ("weather_us_midwest_precip_anom", "2023-06-01", "2023-06-30", -0.8),
    ("weather_brazil_precip_anom", "2004-12-01", "2005-03-15", -0.7),
    ("weather_brazil_precip_anom", "2008-12-01", "2009-02-28", -0.5),
    ("weather_brazil_precip_anom", "2021-11-15", "2022-02-28", -0.9),
    ("weather_brazil_precip_anom", "2023-10-01", "2023-12-31", -0.5),
    ("weather_malaysia_precip_anom", "2010-09-01", "2011-03-31", 0.6),
    ("weather_malaysia_precip_anom", "2015-06-01", "2016-03-31", -0.8),
    ("weather_malaysia_precip_anom", "2019-06-01", "2019-09-30", -0.4),
    ("weather_malaysia_precip_anom", "2020-10-01", "2022-12-31", 0.3),
    ("weather_malaysia_precip_anom", "2023-06-01", "2024-02-29", -0.5),
)

# Random streams: one generator per purpose so that each is consumed in date order.
_STREAM_SHOCKS = 1
_STREAM_TMIX = 2
_STREAM_SV = 3
_STREAM_OHLC = 4
_STREAM_VOLUME = 5
_STREAM_DROP = 6
_STREAM_WEATHER = 7
_STREAM_NEWS = 8
_STREAM_TRADE = 9
_STREAM_US10Y = 10
_STREAM_CPI = 11


@dataclass(frozen=True)
class SampleSpec:
    """What sample to generate.

    start: first business day. end: last day (inclusive); ``None`` means the last business day
    (Mon-Fri) strictly before ``today``. seed: the random seed (>= 0); the same spec, seed and
    ``today`` give bit-identical frames.
    """

    start: dt.date = dt.date(2000, 1, 3)
    end: dt.date | None = None
    seed: int = 20000103


class SampleMarket(NamedTuple):
    """The generated raw inputs, in the raw market and raw signals contracts (DESIGN §2)."""

    market: pl.DataFrame
    signals: pl.DataFrame


def last_business_day_before(today: dt.date) -> dt.date:
    """The last Monday-Friday strictly before ``today``."""
    day = today - dt.timedelta(days=1)
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


def generate_sample_market(
    spec: SampleSpec = SampleSpec(), today: dt.date | None = None
) -> SampleMarket:
    """Generate the sample raw market (long OHLCV) and raw signals (long date/series/value).

    ``today`` only matters when ``spec.end`` is ``None``; it defaults to the system date.
    Raises ``ValueError`` for a negative seed or an end before the start.
    """
    if spec.seed < 0:
        raise ValueError(f"SampleSpec.seed must be >= 0, got {spec.seed}")
    end = spec.end if spec.end is not None else last_business_day_before(today or dt.date.today())
    if end < spec.start:
        raise ValueError(f"SampleSpec: end {end} is before start {spec.start}")
    days = _business_days(spec.start, end)
    if days.size == 0:
        raise ValueError(f"SampleSpec: no business day (Mon-Fri) from {spec.start} to {end}")
    weather = _weather(days, spec.seed)
    logp, shocks = _price_paths(days, spec.seed, weather)
    market = _market_frame(days, logp, shocks, spec.seed)
    signals = pl.concat(
        [
            _weather_frame(days, weather),
            _news_frame(days, logp, spec.seed),
            _policy_frame(days, spec.seed),
            _macro_frame(days, spec.seed),
        ]
    ).sort("series", "date")
    return SampleMarket(market=market, signals=signals)


# --- calendar helpers --------------------------------------------------------------------------


def _business_days(start: dt.date, end: dt.date) -> np.ndarray:
    if end < start:
        return np.array([], dtype="datetime64[D]")
    all_days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    return all_days[np.is_busday(all_days)]


def _day_numbers(dates: tuple[str, ...]) -> np.ndarray:
    return np.array(dates, dtype="datetime64[D]").astype(np.int64)


def _weekdays(days: np.ndarray) -> np.ndarray:
    """Monday = 0 .. Sunday = 6 (day 0, 1970-01-01, was a Thursday)."""
    return (days.astype(np.int64) + 3) % 7


def _years(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[Y]").astype(np.int64) + 1970


def _months(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[M]").astype(np.int64) % 12 + 1


def _year_fraction(days: np.ndarray) -> np.ndarray:
    start_of_year = days.astype("datetime64[Y]").astype("datetime64[D]")
    return (days - start_of_year).astype(np.float64) / 365.25


def _interp(days: np.ndarray, knot_dates: tuple[str, ...], values: np.ndarray) -> np.ndarray:
    """Linear interpolation on calendar days, flat outside the knots."""
    return np.interp(days.astype(np.int64), _day_numbers(knot_dates), values)


def _step(days: np.ndarray, events: tuple[tuple[str, float], ...]) -> np.ndarray:
    """Value in force on each day for a step function given by (effective date, value)."""
    when = _day_numbers(tuple(d for d, _ in events))
    values = np.array([v for _, v in events])
    idx = np.searchsorted(when, days.astype(np.int64), side="right") - 1
    return values[np.clip(idx, 0, None)]


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def _ar1(innovations: np.ndarray, phi: float) -> np.ndarray:
    """AR(1) with unit stationary variance driven by standard-normal innovations (rows = time)."""
    out = np.empty_like(innovations)
    scale = math.sqrt(1.0 - phi * phi)
    out[0] = innovations[0]
    for t in range(1, innovations.shape[0]):
        out[t] = phi * out[t - 1] + scale * innovations[t]
    return out


# --- prices ------------------------------------------------------------------------------------


def _log_anchors(days: np.ndarray) -> np.ndarray:
    """Log level anchor per day and symbol (MARKET_SYMBOLS order)."""
    out = np.empty((days.size, len(MARKET_SYMBOLS)))
    knot_dates = tuple(row[0] for row in _REAL_KNOTS + _PUBLIC_KNOTS)
    levels = np.array([row[1:] for row in _REAL_KNOTS + _PUBLIC_KNOTS], dtype=np.float64)
    for j, sym in enumerate(_REAL9):
        out[:, MARKET_SYMBOLS.index(sym)] = _interp(days, knot_dates, np.log(levels[:, j]))
    extra_dates = tuple(row[0] for row in _EXTRA_KNOTS)
    extra = np.array([row[1:] for row in _EXTRA_KNOTS], dtype=np.float64)
    for j, sym in enumerate(_EXTRA3):
        out[:, MARKET_SYMBOLS.index(sym)] = _interp(days, extra_dates, np.log(extra[:, j]))
    return out


def _vix_anchor(days: np.ndarray) -> np.ndarray:
    knot_dates = tuple(row[0] for row in _REAL_KNOTS + _PUBLIC_KNOTS)
    vix = np.array([row[9] for row in _REAL_KNOTS + _PUBLIC_KNOTS], dtype=np.float64)
    return _interp(days, knot_dates, vix)


def _crisis_shape(days: np.ndarray) -> np.ndarray:
    """Intra-year volatility shape: sqrt of the VIX anchor, RMS 1 over each full calendar year.

    Normalising over the whole calendar year (not the sample window) keeps prefixes stable.
    """
    years = _years(days)
    shape = np.sqrt(_vix_anchor(days))
    for year in np.unique(years):
        full_year = _business_days(dt.date(int(year), 1, 1), dt.date(int(year), 12, 31))
        rms = math.sqrt(float(np.mean(_vix_anchor(full_year))))
        shape[years == year] /= rms
    return shape


def _annual_vols(days: np.ndarray) -> np.ndarray:
    first, last = min(_VOL_BY_YEAR), max(_VOL_BY_YEAR)
    years = np.clip(_years(days), first, last)
    table = np.array([_VOL_BY_YEAR[y] for y in range(first, last + 1)])
    vols = table[years - first].copy()
    peg = days < np.datetime64(_USDMYR_DEPEG, "D")
    vols[peg, MARKET_SYMBOLS.index("USDMYR")] = _VOL_BY_YEAR[first][-1]
    return vols


def _corr_matrix(
    real: tuple[tuple[float, ...], ...], extra: dict[str, tuple[float, ...]]
) -> np.ndarray:
    n = len(MARKET_SYMBOLS)
    corr = np.eye(n)
    order = _REAL9 + _EXTRA3
    lower = [list(row) for row in real] + [[*extra[s], 1.0] for s in _EXTRA3]
    for i, row in enumerate(lower):
        for j, value in enumerate(row):
            a, b = MARKET_SYMBOLS.index(order[i]), MARKET_SYMBOLS.index(order[j])
            corr[a, b] = corr[b, a] = value
    # Nearest positive-definite matrix by eigenvalue clipping, unit diagonal restored.
    vals, vecs = np.linalg.eigh(corr)
    fixed = (vecs * np.clip(vals, 1e-4, None)) @ vecs.T
    d = np.sqrt(np.diag(fixed))
    return fixed / np.outer(d, d)


def _correlation_matrices() -> tuple[np.ndarray, np.ndarray]:
    """Target daily-return correlation (MARKET_SYMBOLS order) before and from 2006-01-01."""
    return (
        _corr_matrix(_REAL_CORR_PRE2006, _EXTRA_CORR_PRE2006),
        _corr_matrix(_REAL_CORR_POST2006, _EXTRA_CORR_POST2006),
    )


def _shocks(days: np.ndarray, seed: int) -> np.ndarray:
    """Daily log-return shocks (T x symbols) before the lead-lag drifts."""
    n_days, n_sym = days.size, len(MARKET_SYMBOLS)
    pre, post = (np.linalg.cholesky(c) for c in _correlation_matrices())
    z = _rng(seed, _STREAM_SHOCKS).standard_normal((n_days, n_sym))
    late = days >= np.datetime64(_REGIME_SPLIT, "D")
    corr_z = np.where(late[:, None], z @ post.T, z @ pre.T)
    # FCPO trades before CBOT: part of its shock is yesterday's ZL shock.
    zl, fcpo = MARKET_SYMBOLS.index("ZL"), MARKET_SYMBOLS.index("FCPO")
    lagged = np.concatenate([[0.0], corr_z[:-1, zl]])
    corr_z[:, fcpo] = (corr_z[:, fcpo] + FCPO_FOLLOWS_ZL * lagged) / math.sqrt(
        1.0 + FCPO_FOLLOWS_ZL**2
    )
    chi2 = _rng(seed, _STREAM_TMIX).chisquare(_T_DOF, size=n_days)
    tmix = np.sqrt((_T_DOF - 2.0) / chi2)
    sv_innov = _rng(seed, _STREAM_SV).standard_normal(n_days)
    sv = _ar1(sv_innov, _SV_PHI) * _SV_SD
    sv_mult = np.exp(sv - _SV_SD**2)  # E[mult^2] = 1
    daily_vol = _annual_vols(days) / math.sqrt(252.0) * _crisis_shape(days)[:, None]
    return corr_z * daily_vol * (tmix * sv_mult)[:, None]


def _exogenous_drift(days: np.ndarray, weather: dict[str, np.ndarray]) -> np.ndarray:
    """Drifts that need no simulated price: month effect, lagged weather, policy jumps."""
    drift = np.zeros((days.size, len(MARKET_SYMBOLS)))
    months = _months(days)
    zl = MARKET_SYMBOLS.index("ZL")
    drift[:, zl] += _ZL_MONTH_EFFECT_21D[months - 1] / 21.0
    summer = (months >= 6) & (months <= 8)
    brazil_season = (months == 12) | (months <= 2)
    us_lag = np.concatenate([[0.0], weather["weather_us_midwest_precip_anom"][:-1]])
    br_lag = np.concatenate([[0.0], weather["weather_brazil_precip_anom"][:-1]])
    for sym, effect in US_PRECIP_EFFECT.items():
        drift[:, MARKET_SYMBOLS.index(sym)] -= effect * us_lag * summer
    for sym, effect in BRAZIL_PRECIP_EFFECT.items():
        drift[:, MARKET_SYMBOLS.index(sym)] -= effect * br_lag * brazil_season
    for when, jump in _rfs_jumps(days):
        drift[when, zl] += jump
    return drift


def _rfs_jumps(days: np.ndarray) -> list[tuple[int, float]]:
    """(day index, ZL jump) for announcements on a business day of the window (or a day after)."""
    out = []
    for date, _, jump in _RFS_EVENTS:
        when = np.datetime64(date, "D")
        idx = int(np.searchsorted(days, when))
        if idx < days.size and days[idx] - when < np.timedelta64(4, "D"):
            out.append((idx, jump))
    return out


def _price_paths(
    days: np.ndarray, seed: int, weather: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Log closes (T x symbols) and the raw shocks (used for the first open and for volume)."""
    anchors = _log_anchors(days)
    shocks = _shocks(days, seed)
    inputs = shocks + _exogenous_drift(days, weather)
    kappa = np.full(len(MARKET_SYMBOLS), math.log(2.0) / _OU_HALF_LIFE_DAYS)
    kappa[MARKET_SYMBOLS.index("VIX")] = math.log(2.0) / _VIX_HALF_LIFE_DAYS
    band = np.array([_OU_BAND_BY_SYMBOL.get(sym, _OU_BAND) for sym in MARKET_SYMBOLS])
    i_zl, i_zs, i_zm = (MARKET_SYMBOLS.index(s) for s in ("ZL", "ZS", "ZM"))
    i_fcpo, i_myr = MARKET_SYMBOLS.index("FCPO"), MARKET_SYMBOLS.index("USDMYR")
    a_crush = 2.0 / (CRUSH_EMA_DAYS + 1.0)
    a_palm = 2.0 / (PALM_SOY_EMA_DAYS + 1.0)
    log_lb = math.log(LB_PER_TONNE_OVER_100)

    logp = np.empty_like(anchors)
    x = np.zeros(len(MARKET_SYMBOLS))
    logp[0] = anchors[0]
    crush_ema = _crush(logp[0, i_zl], logp[0, i_zs], logp[0, i_zm])
    palm_ema = logp[0, i_zl] + log_lb - logp[0, i_fcpo] + logp[0, i_myr]
    for t in range(1, days.size):
        prev = logp[t - 1]
        crush = _crush(prev[i_zl], prev[i_zs], prev[i_zm])
        crush_ema += a_crush * (crush - crush_ema)
        crush_dev = (crush - crush_ema) / (math.exp(prev[i_zs]) / 100.0)
        palm = prev[i_zl] + log_lb - prev[i_fcpo] + prev[i_myr]
        palm_ema += a_palm * (palm - palm_ema)
        palm_dev = palm - palm_ema
        x = x * np.exp(-kappa * (1.0 + np.minimum((x / band) ** 2, 1e3))) + inputs[t]
        x[i_zl] -= CRUSH_REVERSION * crush_dev + PALM_SOY_REVERSION_ZL * palm_dev
        x[i_fcpo] += PALM_SOY_REVERSION_FCPO * palm_dev
        logp[t] = anchors[t] + x
    return logp, shocks


def _crush(log_zl: float, log_zs: float, log_zm: float) -> float:
    """Board crush margin in USD/bu: 0.022 * ZM (USD/st) + 0.11 * ZL (c/lb) - ZS (c/bu) / 100."""
    return 0.022 * math.exp(log_zm) + 0.11 * math.exp(log_zl) - math.exp(log_zs) / 100.0


def board_crush(zl: pl.Expr, zs: pl.Expr, zm: pl.Expr) -> pl.Expr:
    """Board crush margin (USD/bu) from ZL (cents/lb), ZS (cents/bu) and ZM (USD/short ton)."""
    return 0.022 * zm + 0.11 * zl - zs / 100.0


def _round_to_tick(values: np.ndarray, tick: float) -> np.ndarray:
    decimals = max(0, -math.floor(math.log10(tick) + 1e-9))
    return np.maximum(np.round(np.round(values / tick) * tick, decimals), tick)


def _market_frame(
    days: np.ndarray, logp: np.ndarray, shocks: np.ndarray, seed: int
) -> pl.DataFrame:
    n_days, n_sym = logp.shape
    vols = np.maximum(_annual_vols(days) / math.sqrt(252.0) * _crisis_shape(days)[:, None], 1e-6)
    ohlc_z = _rng(seed, _STREAM_OHLC).standard_normal((n_days, n_sym, 3))
    gap = _GAP_SHARE * vols * ohlc_z[:, :, 0]
    close = np.exp(logp)
    prev_close = np.vstack([close[:1] * np.exp(-shocks[:1]), close[:-1]])
    open_ = prev_close * np.exp(gap)
    top = np.maximum(open_, close) * np.exp(_WICK_SHARE * vols * np.abs(ohlc_z[:, :, 1]))
    bottom = np.minimum(open_, close) * np.exp(-_WICK_SHARE * vols * np.abs(ohlc_z[:, :, 2]))
    returns = np.vstack([shocks[:1], np.diff(logp, axis=0)])
    vol_z = _rng(seed, _STREAM_VOLUME).standard_normal((n_days, n_sym))
    growth = _VOLUME_GROWTH ** (_years(days) + _year_fraction(days) - 2005.0)
    activity = np.exp(0.4 * vol_z + 0.5 * (np.abs(returns) / vols - 0.8))
    dropped = _rng(seed, _STREAM_DROP).random((n_days, n_sym)) < _DROP_PROB
    frames = []
    for j, sym in enumerate(MARKET_SYMBOLS):
        tick = _TICKS[sym]
        keep = np.ones(n_days, dtype=bool) if sym == TARGET_SYMBOL else ~dropped[:, j]
        if sym in _VOLUME_2005:
            volume = pl.Series(
                "volume", np.round(_VOLUME_2005[sym] * growth * activity[:, j])[keep]
            )
        else:
            volume = pl.Series("volume", [None] * int(keep.sum()), dtype=pl.Float64)
        frames.append(
            pl.DataFrame(
                {
                    "date": pl.Series("date", days[keep], dtype=pl.Date),
                    "symbol": pl.Series("symbol", [sym] * int(keep.sum()), dtype=pl.String),
                    "open": _round_to_tick(open_[keep, j], tick),
                    "high": _round_to_tick(top[keep, j], tick),
                    "low": _round_to_tick(bottom[keep, j], tick),
                    "close": _round_to_tick(close[keep, j], tick),
                    "volume": volume,
                }
            )
        )
    return pl.concat(frames).sort("symbol", "date")


# --- signals -----------------------------------------------------------------------------------


def _weather(days: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Daily weather anomalies: seasonal mean and scale, AR(1) noise, known episodes."""
    frac = _year_fraction(days)
    z = _rng(seed, _STREAM_WEATHER).standard_normal((days.size, len(WEATHER_SERIES)))
    two_pi = 2.0 * math.pi
    # (phi, sd, seasonal mean amplitude, seasonal-scale amplitude, phase of the wet/active season)
    params = {
        "weather_us_midwest_temp_anom": (0.85, 1.8, 0.3, 0.3, 0.04),
        "weather_us_midwest_precip_anom": (0.6, 1.0, 0.1, 0.2, 0.45),
        "weather_brazil_precip_anom": (0.6, 1.0, 0.1, 0.3, 0.0),
        "weather_malaysia_precip_anom": (0.7, 1.0, 0.1, 0.3, 0.95),
    }
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(WEATHER_SERIES):
        phi, sd, mean_amp, scale_amp, phase = params[name]
        season = np.cos(two_pi * (frac - phase))
        value = mean_amp * season + sd * (1.0 + scale_amp * season) * _ar1(z[:, k], phi)
        for series, first, last, shift in _WEATHER_EPISODES:
            if series == name:
                inside = (days >= np.datetime64(first, "D")) & (days <= np.datetime64(last, "D"))
                value = value + shift * inside
        out[name] = value
    return out


def _weather_frame(days: np.ndarray, weather: dict[str, np.ndarray]) -> pl.DataFrame:
    return pl.concat([_series_frame(name, days, np.round(weather[name], 3)) for name in weather])


def _series_frame(name: str, days: np.ndarray, values: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date": pl.Series("date", days, dtype=pl.Date),
            "series": pl.Series("series", [name] * days.size, dtype=pl.String),
            "value": pl.Series("value", values, dtype=pl.Float64),
        }
    )


def _news_frame(days: np.ndarray, logp: np.ndarray, seed: int) -> pl.DataFrame:
    """News indices from information up to yesterday's close plus same-day policy news."""
    z = _rng(seed, _STREAM_NEWS).standard_normal((days.size, len(NEWS_SERIES)))
    zl, vix = MARKET_SYMBOLS.index("ZL"), MARKET_SYMBOLS.index("VIX")
    ret = np.concatenate([[0.0], np.diff(logp[:, zl])])
    lagged_ret = np.concatenate([[0.0], ret[:-1]])  # return of day t-1, known before day t
    ema = np.empty(days.size)
    acc = 0.0
    for t in range(days.size):
        acc += 0.2 * (lagged_ret[t] - acc)
        ema[t] = acc
    impulse = np.zeros(days.size)
    for when, jump in _rfs_jumps(days):
        impulse[when:] += np.sign(jump) * 0.5 ** (np.arange(days.size - when) / 10.0)
    soy = np.tanh(0.5 * _ar1(z[:, 0], 0.9) + 8.0 * ema + 0.3 * impulse)
    biofuel = np.tanh(0.5 * _ar1(z[:, 1], 0.95) + 0.8 * impulse)
    lagged_vix = np.concatenate([logp[:1, vix], logp[:-1, vix]])
    volume = 100.0 * np.exp(
        0.2 * _ar1(z[:, 2], 0.8) + 0.5 * (lagged_vix - math.log(20.0)) + 0.5 * np.abs(impulse)
    )
    return pl.concat(
        [
            _series_frame("news_soyoil_sentiment", days, np.round(soy, 4)),
            _series_frame("news_biofuel_sentiment", days, np.round(biofuel, 4)),
            _series_frame("news_volume_index", days, np.round(volume, 2)),
        ]
    )


def _first_business_days_of_months(days: np.ndarray) -> np.ndarray:
    previous = np.busday_offset(days, -1, roll="forward")
    return days[previous.astype("datetime64[M]") != days.astype("datetime64[M]")]


def _on_or_after(days: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """Each date moved to the first business day of the window on or after it (dropped past end)."""
    idx = np.searchsorted(days, dates)
    idx = idx[idx < days.size]
    return np.unique(days[idx])


def _policy_frame(days: np.ndarray, seed: int) -> pl.DataFrame:
    start, end = days[0], days[-1]
    monthly = _first_business_days_of_months(days)
    # RFS: announcement days plus a monthly re-statement of the latest headline volume.
    rfs_events = (("1990-01-01", 0.0), *[(d, v) for d, v, _ in _RFS_EVENTS])
    announce = np.array([d for d, _, _ in _RFS_EVENTS], dtype="datetime64[D]")
    announce = announce[(announce >= start) & (announce <= end)]
    rfs_days = np.union1d(monthly, _on_or_after(days, announce))
    rfs = _step(rfs_days, rfs_events)
    # Trade tension: Fridays (weekly), knots plus AR noise, clipped to [0, 100].
    fridays = days[_weekdays(days) == 4]
    trade_knots = tuple(d for d, _ in _TRADE_TENSION)
    trade_level = _interp(fridays, trade_knots, np.array([v for _, v in _TRADE_TENSION], float))
    noise = _ar1(_rng(seed, _STREAM_TRADE).standard_normal(max(fridays.size, 1)), 0.7)
    trade = np.clip(trade_level + 4.0 * noise[: fridays.size], 0.0, 100.0)
    # Argentina export tax: monthly, the rate in force.
    tax = _step(monthly, _ARGENTINA_TAX)
    return pl.concat(
        [
            _series_frame("policy_rfs_mandate_bgal", rfs_days, rfs),
            _series_frame("policy_trade_tension_index", fridays, np.round(trade, 2)),
            _series_frame("policy_argentina_export_tax_pct", monthly, tax),
        ]
    )


def _fomc_days(days: np.ndarray) -> np.ndarray:
    years = range(int(_years(days[:1])[0]), int(_years(days[-1:])[0]) + 1)
    changes = np.array([d for d, _ in _FED_FUNDS], dtype="datetime64[D]")
    scheduled = []
    for year in years:
        for month, day in _FOMC_MONTH_DAYS:
            anchor = np.datetime64(dt.date(year, month, day), "D")
            weekday = int(_weekdays(np.array([anchor]))[0])
            meeting = anchor - np.timedelta64(weekday, "D") + np.timedelta64(2, "D")
            if np.min(np.abs((changes - meeting).astype(np.int64))) > 10:
                scheduled.append(meeting)
    meetings = np.union1d(np.array(scheduled, dtype="datetime64[D]"), changes)
    meetings = meetings[(meetings >= days[0]) & (meetings <= days[-1])]
    return _on_or_after(days, meetings)


def _macro_frame(days: np.ndarray, seed: int) -> pl.DataFrame:
    # 10-year yield: daily, knots plus a mean-reverting deviation scaled by the level.
    level = _interp(days, tuple(d for d, _ in _US10Y), np.array([v for _, v in _US10Y], float))
    dev = _ar1(_rng(seed, _STREAM_US10Y).standard_normal(days.size), 0.983)
    us10y = np.maximum(level + 0.27 * np.sqrt(level / 3.0) * dev, 0.05)
    # Fed funds: FOMC meeting days (and emergency moves), the target in force.
    fomc = _fomc_days(days)
    fed = _step(fomc, _FED_FUNDS)
    # CPI: the previous month's YoY, published on the first business day on or after the 13th.
    first_month = days[0].astype("datetime64[M]") - np.timedelta64(1, "M")
    months = np.arange(first_month, days[-1].astype("datetime64[M]") + 1)
    thirteenth = months.astype("datetime64[D]") + np.timedelta64(12, "D")
    release = np.busday_offset(thirteenth, 0, roll="forward")
    reference = (months - np.timedelta64(1, "M")).astype("datetime64[D]")
    cpi_noise = _rng(seed, _STREAM_CPI).normal(0.0, 0.1, size=months.size)
    cpi_level = _interp(
        reference, tuple(d for d, _ in _CPI_YOY), np.array([v for _, v in _CPI_YOY])
    )
    cpi = np.round(cpi_level + cpi_noise, 1)
    inside = (release >= days[0]) & (release <= days[-1])
    return pl.concat(
        [
            _series_frame("macro_us10y_yield", days, np.round(us10y, 3)),
            _series_frame("macro_fed_funds_rate", fomc, fed),
            _series_frame("macro_us_cpi_yoy", release[inside], cpi[inside]),
        ]
    )
