import datetime as dt

import polars as pl
import pytest

from cbi_pipeline.core.contracts import DataContractError
from cbi_pipeline.core.panel import PanelSpec, build_market_panel


def naive_asof(rows: list[tuple[dt.date, float]], day: dt.date, max_age: int) -> float | None:
    best = None
    for d, v in rows:
        if d <= day and (day - d).days <= max_age and (best is None or d > best[0]):
            best = (d, v)
    return None if best is None else best[1]


def test_panel_matches_a_naive_asof_lookup(tiny_market, tiny_signals):
    spec = PanelSpec(market_staleness_days=3, signal_staleness_days=10)
    panel = build_market_panel(tiny_market, tiny_signals, spec)
    zl_days = tiny_market.filter(pl.col("symbol") == "ZL")["date"].to_list()
    assert panel["date"].to_list() == sorted(zl_days)
    for sym in ("ZS", "FCPO"):
        rows = tiny_market.filter(pl.col("symbol") == sym).select("date", "close").rows()
        expected = [naive_asof(rows, d, 3) for d in panel["date"]]
        assert panel[f"{sym}_close"].to_list() == expected
    rows = (
        tiny_signals.filter(pl.col("series") == "policy_test_index").select("date", "value").rows()
    )
    expected = [naive_asof(rows, d, 10) for d in panel["date"]]
    assert panel["policy_test_index"].to_list() == expected
    # the weekly series is carried through the week, so it is mostly non-null
    assert panel["policy_test_index"].null_count() < 10


def test_staleness_limit_stops_carrying_old_values():
    days = [dt.date(2020, 1, d) for d in (2, 3, 6, 7, 8, 9, 10, 13, 14)]
    market = pl.DataFrame(
        {
            "date": [*days, dt.date(2020, 1, 2)],
            "symbol": ["ZL"] * len(days) + ["CL"],
            "close": [1.0] * len(days) + [60.0],
        }
    )
    empty = pl.DataFrame(schema={"date": pl.Date, "series": pl.String, "value": pl.Float64})
    panel = build_market_panel(market, empty, PanelSpec(market_staleness_days=5))
    cl = dict(zip(panel["date"], panel["CL_close"], strict=True))
    assert cl[dt.date(2020, 1, 7)] == 60.0  # 5 days old: still carried
    assert cl[dt.date(2020, 1, 8)] is None  # 6 days old: stale


def test_future_rows_never_reach_earlier_dates(tiny_market, tiny_signals):
    panel = build_market_panel(tiny_market, tiny_signals)
    cut = panel["date"][150]
    early = build_market_panel(
        tiny_market.filter(pl.col("date") <= cut), tiny_signals.filter(pl.col("date") <= cut)
    )
    assert early.equals(panel.filter(pl.col("date") <= cut))


def test_unknown_target_fails(tiny_market, tiny_signals):
    with pytest.raises(DataContractError, match="unknown target symbol 'XX'"):
        build_market_panel(tiny_market, tiny_signals, PanelSpec(target_symbol="XX"))
