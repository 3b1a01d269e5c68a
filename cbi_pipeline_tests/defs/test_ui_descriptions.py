"""What the Dagster UI shows a desk analyst: a plain description on every definition, a column
description for every column of the data tables, and a readable code location name."""

import tomllib
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from cbi_pipeline.definitions import ASSETS, build_resources, defs
from cbi_pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[2]
# Pointers into the repository rather than words: design sections, modules, code folders.
INTERNAL = ("§", "DESIGN", ".py", "core/", "steps/", "defs/", "store/", "cli/", "cbi_pipeline")


def descriptions() -> dict[str, str | None]:
    loaded = defs()
    graph = loaded.resolve_asset_graph()
    repo = loaded.get_repository_def()
    found: dict[str, str | None] = {}
    for key in graph.get_all_asset_keys():
        found[f"asset {key.to_user_string()}"] = graph.get(key).description
    for check in graph.asset_check_keys:
        found[f"check {check.name}"] = graph.get(check).description
    for job in repo.get_all_jobs():
        if not job.name.startswith("__"):  # Dagster's hidden implicit job
            found[f"job {job.name}"] = job.description
    for schedule in repo.schedule_defs:
        found[f"schedule {schedule.name}"] = schedule.description
    for sensor in repo.sensor_defs:
        found[f"sensor {sensor.name}"] = sensor.description
    return found


def test_every_definition_has_a_plain_description():
    found = descriptions()
    assert {"schedule nightly_cycle", "sensor cycle_chain", "check export_has_no_future_leak"} <= (
        set(found)
    )
    assert [name for name, text in found.items() if not (text and text.strip())] == []
    internal = {
        name: [word for word in INTERNAL if word in (text or "")] for name, text in found.items()
    }
    assert {name: words for name, words in internal.items() if words} == {}


def test_the_code_location_has_a_readable_name_in_both_loaders():
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]
    assert entry["python_module"]["location_name"] == pyproject["code_location_name"]
    assert pyproject["code_location_name"] == "zl_forecasts"


@pytest.fixture
def settings(tmp_path, tiny_market, tiny_signals) -> Settings:
    market, signals = tmp_path / "market.parquet", tmp_path / "signals.parquet"
    tiny_market.write_parquet(market)
    tiny_signals.write_parquet(signals)
    return Settings(
        data_root=str(tmp_path / "root"), market_paths=(str(market),), signal_paths=(str(signals),)
    )


def column_schema(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, str]:
    (materialization,) = result.asset_materializations_for_node(asset)
    schema = materialization.metadata["dagster/column_schema"].value
    assert isinstance(schema, dg.TableSchema)
    return {c.name: c.description or "" for c in schema.columns}


def test_the_panel_and_a_training_table_describe_every_column(settings, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    resources = build_resources(settings)
    data = dg.materialize(
        ASSETS, selection=["raw_market", "market_panel"], resources=resources, instance=instance
    )
    panel = column_schema(data, "market_panel")
    assert list(panel) == pl.read_parquet(tmp_path / "root/exports/market_panel.parquet").columns
    assert panel["ZL_close"] == "ZL daily settlement price: the last value on or before the date."
    assert panel["weather_test_anom"].startswith("Signal series weather_test_anom")

    export = dg.materialize(
        ASSETS,
        selection=["training_export"],
        partition_key="1m",
        resources=resources,
        instance=instance,
    )
    columns = column_schema(export, "training_export")
    frame = pl.read_parquet(tmp_path / "root/exports/zl_training_prod_allhistory_1m.parquet")
    assert list(columns) == frame.columns
    assert [name for name, text in columns.items() if not text.strip()] == []
    assert columns["target_1m"].startswith("The label: the ZL price 21 trading days after")
    catalog = pl.read_json(tmp_path / "root/exports/feature_catalog.json")
    feature = catalog.row(0, named=True)
    assert columns[feature["name"]] == f"{feature['definition']} ({feature['block']} block)"
    assert set(catalog["name"]) <= set(columns)
