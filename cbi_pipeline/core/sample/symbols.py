"""The sample market's vocabulary: its symbols, their units and its signal series."""

from __future__ import annotations

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
