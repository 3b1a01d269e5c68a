import datetime as dt

import polars as pl
import pytest

from cbi_pipeline.core.regimes import (
    DEFAULT_REGIMES,
    RegimeConfigError,
    regime_expressions,
    regimes_from_json,
    regimes_to_json,
)


def label(dates: list[dt.date], regimes=DEFAULT_REGIMES) -> list[tuple[str, float]]:
    name, weight = regime_expressions(regimes)
    return pl.DataFrame({"date": dates}).select(name, weight).rows()


def test_default_calendar_matches_the_design():
    got = label(
        [
            dt.date(1996, 5, 1),
            dt.date(2007, 12, 31),
            dt.date(2008, 1, 1),
            dt.date(2012, 3, 1),
            dt.date(2018, 6, 1),
            dt.date(2021, 6, 30),
            dt.date(2021, 7, 1),
            dt.date(2026, 11, 23),
        ]
    )
    assert got == [
        ("precrisis", 100.0),
        ("precrisis", 100.0),
        ("financial_crisis", 500.0),
        ("recovery", 300.0),
        ("tradewar", 1500.0),
        ("covid", 800.0),
        ("inflation", 1200.0),
        ("policy", 5000.0),
    ]
    assert {r.name for r in DEFAULT_REGIMES if r.crisis} == {"financial_crisis", "covid"}


def test_json_roundtrip_and_override():
    assert regimes_from_json(regimes_to_json(DEFAULT_REGIMES)) == DEFAULT_REGIMES
    custom = regimes_from_json(
        '[{"name": "old", "end": "2009-12-31", "weight": 50},'
        ' {"name": "new", "start": "2010-01-01", "weight": 4000, "crisis": true}]'
    )
    assert label([dt.date(2009, 1, 1), dt.date(2011, 1, 1)], custom) == [
        ("old", 50.0),
        ("new", 4000.0),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[{"name": "a", "end": "2009-12-31", "weight": 10}, {"name": "b", "start": "2010-01-01", "weight": 60}]',
            r"weight 10.0 outside \[50, 5000\]",
        ),
        (
            '[{"name": "a", "end": "2009-12-31", "weight": 60}, {"name": "b", "start": "2010-02-01", "weight": 60}]',
            "must be contiguous",
        ),
        (
            '[{"name": "a", "end": "2009-12-31", "weight": 60}, {"name": "a", "start": "2010-01-01", "weight": 60}]',
            "unique",
        ),
        ('{"name": "a"}', "expected a JSON list"),
        ('[{"name": "a", "start": "yesterday", "weight": 60}]', "not an ISO date"),
    ],
)
def test_malformed_calendars_are_rejected(text, message):
    with pytest.raises(RegimeConfigError, match=message):
        regimes_from_json(text)
