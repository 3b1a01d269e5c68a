import polars as pl
import pytest

from cbi_pipeline.core.export import (
    build_export,
    export_filename,
    feature_columns,
    summarize_export,
)
from cbi_pipeline.core.features import build_features
from cbi_pipeline.core.panel import build_market_panel


@pytest.fixture
def features(tiny_market, tiny_signals):
    return build_features(build_market_panel(tiny_market, tiny_signals))


@pytest.mark.parametrize(("horizon", "h"), [("1w", 5), ("1m", 21), ("3m", 63)])
def test_target_is_the_price_h_trading_days_later(features, horizon, h):
    frame, catalog = features
    export = build_export(frame, catalog, horizon)
    price, target = export["price"].to_list(), export[f"target_{horizon}"].to_list()
    for i in range(len(price)):
        assert target[i] == (price[i + h] if i + h < len(price) else None)


def test_export_layout(features):
    frame, catalog = features
    export = build_export(frame, catalog, "1m")
    assert export.columns[:2] == ["date", "price"]
    assert export.columns[-4:] == ["market_regime", "training_weight", "target_1m", "as_of"]
    assert feature_columns(export) == [d.name for d in catalog]
    assert export["as_of"].unique().to_list() == [export["date"].max()]
    assert export.filter(pl.col("date") < pl.date(2008, 1, 1))[
        "market_regime"
    ].unique().to_list() == ["precrisis"]
    summary = summarize_export(export, "1m")
    assert summary.labelled_rows == export.height - 21
    assert summary.features == len(catalog)


def test_export_filename_is_seed_compatible():
    assert export_filename("ZL", "prod", "12m") == "zl_training_prod_allhistory_12m.parquet"
    with pytest.raises(ValueError, match="unknown horizon"):
        export_filename("ZL", "prod", "2y")
    with pytest.raises(ValueError, match="surface"):
        export_filename("ZL", "../etc", "1m")
