"""``cbi export`` with futures curves: kept as raw/curve.parquet, and with no market file the
front-month series come from the curve under the roll rule."""

import polars as pl

from cbi_pipeline.cli.main import main
from cbi_pipeline.core.curves.contract import normalize_curve
from cbi_pipeline.core.curves.roll import RollSpec, continuous_series
from cbi_pipeline_tests.conftest import make_tiny_curve, make_tiny_market


def test_a_curve_beside_a_market_file_is_validated_and_kept(tmp_path):
    market, curve = tmp_path / "market.csv", tmp_path / "curve.csv"
    make_tiny_market(n=320).write_csv(market)
    raw_curve = make_tiny_curve(n=320)
    raw_curve.write_csv(curve)
    root = tmp_path / "root"
    args = ["export", "--market", str(market), "--curve", str(curve), "--data-root", str(root)]
    assert main(args) == 0
    stored = pl.read_parquet(root / "raw" / "curve.parquet")
    assert stored.equals(normalize_curve(raw_curve, "curve"))
    # the target stays on the market file's front month
    export = pl.read_parquet(root / "exports" / "zl_training_prod_allhistory_1w.parquet")
    zl = make_tiny_market(n=320).filter(pl.col("symbol") == "ZL").sort("date")
    assert export["price"].to_list() == zl["close"].to_list()
    # ... and the export has the curve features of both curve symbols
    for name in ("zl_carry", "zl_curve_slope", "zl_oi_share", "zl_days_to_roll", "zs_carry"):
        assert export[name].drop_nulls().len() > 200, name


def test_a_later_export_without_a_curve_removes_the_earlier_curve(tmp_path):
    """Else the evaluation would read a curve that does not belong to the new market."""
    market, curve = tmp_path / "market.csv", tmp_path / "curve.csv"
    make_tiny_market(n=320).write_csv(market)
    make_tiny_curve(n=320).write_csv(curve)
    root = tmp_path / "root"
    base = ["export", "--market", str(market), "--data-root", str(root)]
    assert main([*base, "--curve", str(curve)]) == 0
    assert (root / "raw" / "curve.parquet").is_file()
    assert main(base) == 0
    assert not (root / "raw" / "curve.parquet").exists()
    export = pl.read_parquet(root / "exports" / "zl_training_prod_allhistory_1w.parquet")
    assert "zl_carry" not in export.columns
    assert not list(root.rglob(".*.tmp")) and not (root / ".pending-swap.json").exists()


def test_with_only_a_curve_the_front_months_come_from_the_roll_rule(tmp_path):
    curve = tmp_path / "curve.parquet"
    raw_curve = make_tiny_curve(n=320)
    raw_curve.write_parquet(curve)
    root = tmp_path / "root"
    assert main(["export", "--curve", str(curve), "--data-root", str(root)]) == 0
    front = continuous_series(normalize_curve(raw_curve, "curve"), RollSpec(days_before_notice=5))
    zl = front.filter(pl.col("symbol") == "ZL").sort("date")
    export = pl.read_parquet(root / "exports" / "zl_training_prod_allhistory_1w.parquet")
    assert export["date"].to_list() == zl["date"].to_list()
    assert export["price"].to_list() == zl["front"].to_list()
    raw_market = pl.read_parquet(root / "raw" / "market.parquet")
    assert sorted(raw_market["symbol"].unique().to_list()) == ["ZL", "ZS"]
