"""Feature blocks: every raw series belongs to one block by a default mapping users can override."""

from __future__ import annotations

from collections.abc import Mapping

BIG7_MACRO = "Big7+Macro"
SPREADS = "Spreads"
NEWS = "News/Sentiment"
WEATHER = "Weather"
POLICY = "Policy/Political"
CALENDAR = "Calendar"
CORRELATIONS = "Correlations"
BLOCKS = (BIG7_MACRO, SPREADS, NEWS, WEATHER, POLICY, CALENDAR, CORRELATIONS)

PREFIX_BLOCKS: dict[str, str] = {
    "weather_": WEATHER,
    "news_": NEWS,
    "sentiment_": NEWS,
    "policy_": POLICY,
    "macro_": BIG7_MACRO,
}


def block_of(series: str, overrides: Mapping[str, str] | None = None) -> str:
    """Block of a market symbol or signal series: overrides first, then name prefix, else Big7+Macro."""
    if overrides and series in overrides:
        block = overrides[series]
        if block not in BLOCKS:
            raise ValueError(
                f"series {series!r}: unknown block {block!r}; expected one of {BLOCKS}"
            )
        return block
    for prefix, block in PREFIX_BLOCKS.items():
        if series.startswith(prefix):
            return block
    return BIG7_MACRO
