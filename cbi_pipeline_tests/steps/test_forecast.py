"""The nightly forecast over a data root: champion or labelled benchmark, quantiles, log, chart.

The evaluation JSON is written by hand here with only the keys ``steps.forecast`` documents
(``families[f].probabilistic.overall.pinball``, ``candidate``, ``gates``, ``promotable``)."""

import datetime as dt
import itertools
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbi_pipeline.core.intervals import INTERVALS, QUANTILE_COLUMNS, forecast_quantiles
from cbi_pipeline.core.vocabulary import (
    BASELINES,
    COMPLEXITY,
    DRIFT,
    ETS,
    GATE_MAPE,
    GATE_SHARPE,
    GATE_SKILL,
    LIGHTGBM,
    RANDOM_WALK,
)
from cbi_pipeline.steps import evaluation as evaluate
from cbi_pipeline.steps import forecast as forecasting
from cbi_pipeline.steps.forecast import SOURCE_BENCHMARK, SOURCE_CHAMPION, make_forecast
from cbi_pipeline.steps.promotion import Override, promote
from cbi_pipeline.store.models import load_export, snapshot_model, write_champion
from cbi_pipeline.store.root import DataRoot, StorageError, write_json, write_parquet
from cbi_pipeline_tests.steps.test_evaluation import H, good_predictions, predictions
from cbi_pipeline_tests.steps.test_evaluation import state as state

PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def evaluation(root: DataRoot, pinball: dict[str, float | None], failed: tuple[str, ...]) -> None:
    """An evaluation of lightgbm (the candidate) whose ``failed`` gates fail."""
    gates = [GATE_MAPE, GATE_SHARPE, GATE_SKILL]
    write_json(
        {
            "horizon": H,
            "candidate": LIGHTGBM,
            "promotable": not failed,
            "gates": [{"name": g, "passed": g not in failed} for g in gates],
            "families": {
                f: {"overall": {}, "probabilistic": {"overall": {"pinball": p}}}
                for f, p in pinball.items()
            },
        },
        root.evaluation(H),
    )


def quantiles_of(row: dict) -> list[float]:
    return [row[q] for q in QUANTILE_COLUMNS]


def test_no_champion_issues_the_best_benchmark_labelled_with_its_failed_gates(state):
    settings_, root, export, price, y_true = state
    predictions(root, export, RANDOM_WALK, price)
    predictions(root, export, DRIFT, good_predictions(price, y_true))
    predictions(root, export, LIGHTGBM, price * 1.01)
    evaluation(root, {RANDOM_WALK: 0.5, DRIFT: 0.4, LIGHTGBM: 0.1}, (GATE_MAPE, GATE_SHARPE))

    fc = make_forecast(root, settings_, H)
    row = fc.frame.row(0, named=True)
    assert (fc.source, fc.family) == (SOURCE_BENCHMARK, DRIFT) == (row["source"], row["family"])
    assert row["label"] == (
        "benchmark (drift): no model passed the gates; lightgbm failed: "
        "mape_threshold, sharpe_threshold"
    )
    assert row["failed_gates"] == [GATE_MAPE, GATE_SHARPE] and row["promoted_at"] is None
    last = export.row(export.height - 1, named=True)
    assert row["origin_date"] == last["date"] == row["data_last_date"]
    assert row["price"] == last["price"]
    assert row["pred_return"] == 0.001  # drift's manifest: final.pred_return
    assert row["forecast_price"] == pytest.approx(last["price"] * np.exp(0.001))
    assert row["target_date"] == dt.date.fromisoformat(
        str(np.busday_offset(np.datetime64(last["date"], "D"), 5, roll="forward"))
    )
    # the quantiles are drift's, calibrated on drift's out-of-fold residuals
    loaded = load_export(root, settings_, H)
    oof = pl.read_parquet(root.predictions(H, DRIFT))
    expected = forecast_quantiles(
        oof, loaded.data, loaded.data.rows - 1, 0.001, settings_.interval_spec()
    )
    assert quantiles_of(row) == pytest.approx([expected[q] for q in QUANTILE_COLUMNS], rel=1e-12)
    stored = pl.read_parquet(root.forecast(H))
    assert stored.columns == list(forecasting.FORECAST_SCHEMA) and stored.height == 1
    chart = root.forecast_plot(H).read_bytes()
    assert chart.startswith(PNG_START) and chart.endswith(PNG_END) and len(chart) > 10_000


def test_a_champion_forecasts_from_its_snapshot_whatever_the_evaluation_says(state):
    settings_, root, export, price, y_true = state
    predictions(root, export, RANDOM_WALK, price)
    predictions(root, export, DRIFT, good_predictions(price, y_true))
    evaluation(root, {RANDOM_WALK: 0.1, DRIFT: 0.4}, (GATE_SKILL,))
    snapshot = snapshot_model(root, H, DRIFT)
    write_champion(
        root,
        H,
        {
            "horizon": H,
            "family": DRIFT,
            "mape": 1.0,
            "model_dir": str(snapshot.relative_to(root.root)),
            "promoted_at": "2026-01-02T03:04:05+00:00",
            "override": None,
        },
    )
    # training after the promotion changes the live manifest, not the champion's snapshot
    write_json(
        {"family": DRIFT, "final": {"pred_return": 0.05}},
        root.model_dir(H, DRIFT) / "manifest.json",
    )
    row = make_forecast(root, settings_, H).frame.row(0, named=True)
    assert (row["source"], row["family"]) == (SOURCE_CHAMPION, DRIFT)
    assert row["label"] == "champion (drift), promoted 2026-01-02T03:04:05+00:00"
    assert row["pred_return"] == 0.001 and row["failed_gates"] == []
    assert row["promoted_at"] == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_with_no_baseline_scored_the_random_walk_is_the_benchmark_and_the_label_says_so(state):
    _settings, root, _export, _price, _y_true = state
    evaluation(root, {RANDOM_WALK: None, DRIFT: None}, (GATE_SKILL,))
    chosen = forecasting.forecast_source(root, H)
    assert (chosen.source, chosen.family, chosen.failed_gates) == (
        SOURCE_BENCHMARK,
        RANDOM_WALK,
        (GATE_SKILL,),
    )
    assert chosen.label == (
        "benchmark (random_walk): no model passed the gates; lightgbm failed: "
        "skill_vs_random_walk; no baseline has interval scores"
    )


def test_the_evaluation_step_writes_every_key_the_forecast_reads(state):
    """Against the real ``evaluate_root`` payload, not a hand-made one."""
    settings_, root, export, price, _y_true = state
    predictions(root, export, RANDOM_WALK, price)
    predictions(root, export, DRIFT, price * 1.004)
    payload = evaluate.evaluate_root(root, H).payload
    row = make_forecast(root, settings_, H).frame.row(0, named=True)
    failed = [g["name"] for g in payload["gates"] if not g["passed"]]
    assert row["source"] == SOURCE_BENCHMARK and failed and row["failed_gates"] == failed
    assert f"{payload['candidate']} failed: {', '.join(failed)}" in row["label"]
    assert row["family"] == forecasting.best_benchmark(payload) in BASELINES


def test_a_promoted_champion_forecasts_with_its_quantiles(state):
    """Moved from steps/test_evaluation.py (it had a 90% conformal interval): the whole path,
    evaluation -> promotion -> forecast."""
    settings_, root, export, price, y_true = state
    predictions(root, export, RANDOM_WALK, price)
    predictions(root, export, DRIFT, good_predictions(price, y_true))
    evaluate.evaluate_root(root, H)
    # an override: whether the gates pass depends on the evaluation's intervals, not tested here
    assert promote(root, H, Override(DRIFT, "ana", "desk call")).promoted
    fc = make_forecast(root, settings_, H)
    row = fc.frame.row(0, named=True)
    last = export.row(export.height - 1, named=True)
    assert (row["source"], row["family"]) == (SOURCE_CHAMPION, DRIFT)
    assert row["label"].startswith("champion (drift), promoted 20")
    assert row["label"].endswith(" by override (ana: desk call)")
    assert row["origin_date"] == last["date"] and row["price"] == last["price"]
    assert row["forecast_price"] == pytest.approx(last["price"] * np.exp(0.001))
    assert row["q5"] < row["forecast_price"] < row["q95"]
    assert row["target_date"] > row["origin_date"]
    assert fc.chart_path.read_bytes().startswith(PNG_START)
    assert root.forecast(H).exists()


def test_the_benchmark_is_the_lowest_pinball_baseline_and_a_tie_goes_to_the_simpler():
    def pick(pinball: dict) -> str:
        return forecasting.best_benchmark(
            {"families": {f: probabilistic(p) for f, p in pinball.items()}}
        )

    assert pick({RANDOM_WALK: 0.3, DRIFT: 0.3, ETS: 0.2}) == ETS
    assert pick({RANDOM_WALK: 0.3, DRIFT: 0.3, ETS: 0.3}) == RANDOM_WALK
    assert pick({DRIFT: 0.3, ETS: 0.3}) == DRIFT
    assert pick({RANDOM_WALK: 0.3, DRIFT: 0.2, LIGHTGBM: 0.1}) == DRIFT  # models never benchmark
    assert pick({RANDOM_WALK: 0.3, DRIFT: None}) == RANDOM_WALK  # no intervals: not eligible
    with pytest.raises(StorageError, match=r"evaluations/1w.json: families.drift has no proba"):
        forecasting.best_benchmark(
            {"families": {RANDOM_WALK: probabilistic(0.1), DRIFT: {"overall": {}}}},
            "evaluations/1w.json",
        )
    assert pick({LIGHTGBM: 0.1, DRIFT: None}) == RANDOM_WALK  # no baseline with intervals
    no_intervals = {"families": {RANDOM_WALK: {"probabilistic": None}, DRIFT: probabilistic(0.2)}}
    assert forecasting.best_benchmark(no_intervals) == DRIFT


def probabilistic(pinball: float | None) -> dict:
    return {"probabilistic": {"overall": {"pinball": pinball}}}


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(BASELINES), st.sampled_from([0.1, 0.2, 0.3]), min_size=1, max_size=3
    )
)
def test_the_benchmark_choice_matches_a_naive_scan(scores):
    chosen = forecasting.best_benchmark(
        {"families": {f: probabilistic(p) for f, p in scores.items()}}
    )
    best = None  # naive: walk the families simplest first, keep a strictly lower score
    for family in COMPLEXITY:
        if family in scores and (best is None or scores[family] < scores[best]):
            best = family
    assert chosen == best


def test_without_an_evaluation_the_random_walk_forecasts_inside_its_own_bands(state):
    settings_, root, _export, _price, _y_true = state
    fc = make_forecast(root, settings_, H)  # nothing trained yet: the random walk's history
    row = fc.frame.row(0, named=True)
    assert (row["source"], row["family"]) == (SOURCE_BENCHMARK, RANDOM_WALK)
    assert row["label"] == (
        "benchmark (random_walk): no evaluation of 1w yet (diagnostics or training did not "
        "complete)"
    )
    assert row["pred_return"] == 0.0 and row["forecast_price"] == row["price"]
    q = quantiles_of(row)
    assert all(a < b for a, b in itertools.pairwise(q)), q
    for level, (lo, hi) in INTERVALS.items():
        assert row[lo] < row["forecast_price"] < row[hi], level


def test_the_random_walk_history_is_a_no_change_forecast_on_every_usable_labelled_row(state):
    settings_, root, _export, _price, _y_true = state
    data = load_export(root, settings_, H).data
    history = forecasting.random_walk_history(data, settings_.interval_spec())
    labelled = [str(d)[:10] for d, ok in zip(data.dates, data.labelled, strict=True) if ok]
    assert history["pred_return"].to_list() == [0.0] * history.height
    # row 0 has no return (no volatility): every other labelled row is kept, in order
    assert [str(d) for d in history["date"].to_list()] == labelled[1:]


def test_the_log_appends_new_origins_and_replaces_a_reissued_one(state):
    settings_, root, export, _price, _y_true = state
    path = load_export(root, settings_, H).path
    full = export
    earlier = export.head(export.height - 3).with_columns(
        pl.when(pl.int_range(pl.len()) >= export.height - 3 - 5)
        .then(None)
        .otherwise(pl.col(f"target_{H}"))
        .alias(f"target_{H}")
    )
    write_parquet(earlier, path)
    first = make_forecast(root, settings_, H).frame
    write_parquet(full, path)
    second = make_forecast(root, settings_, H).frame
    again = make_forecast(root, settings_, H).frame
    log = pl.read_parquet(root.forecast_log)
    assert log["origin_date"].to_list() == [earlier["date"][-1], full["date"][-1]]
    assert log["created_at"].to_list() == [first["created_at"][0], again["created_at"][0]]
    assert second["created_at"][0] <= again["created_at"][0]
    assert log.columns == list(forecasting.FORECAST_SCHEMA)
    # the log keeps a horizon's rows apart from another horizon's on the same origin
    other = again.with_columns(pl.lit("1m").alias("horizon"))
    merged = forecasting.updated_log(log, other, Path("log.parquet"))
    assert merged.select("origin_date", "horizon").rows() == [
        (earlier["date"][-1], H),
        (full["date"][-1], H),
        (full["date"][-1], "1m"),
    ]


def test_a_corrupt_log_is_an_error_naming_it_and_nothing_is_overwritten(state):
    settings_, root, _export, _price, _y_true = state
    make_forecast(root, settings_, H)
    before = root.forecast(H).read_bytes(), root.forecast_plot(H).read_bytes()
    root.forecast_log.write_bytes(b"not a parquet file")
    with pytest.raises(StorageError, match=f"{root.forecast_log}: unreadable parquet"):
        make_forecast(root, settings_, H)
    assert (root.forecast(H).read_bytes(), root.forecast_plot(H).read_bytes()) == before
    assert root.forecast_log.read_bytes() == b"not a parquet file"
    write_parquet(pl.DataFrame({"date": [1]}), root.forecast_log)
    with pytest.raises(StorageError, match="not a forecast log: missing column"):
        make_forecast(root, settings_, H)


def test_the_forecast_asset_always_issues_and_logs_quantiles_to_mlflow(
    state, monkeypatch, mlflow_db
):
    from cbi_pipeline.definitions import ASSETS, build_resources
    from cbi_pipeline.store.registry import TAG_FORECAST_SOURCE
    from cbi_pipeline.store.tracking import Tracker

    settings_, root, export, price, y_true = state
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow_db(root.path("mlflow", "mlflow.db"))
    predictions(root, export, RANDOM_WALK, price)
    predictions(root, export, DRIFT, good_predictions(price, y_true))
    evaluation(root, {RANDOM_WALK: 0.5, DRIFT: 0.4}, (GATE_SKILL,))
    result = dg.materialize(
        ASSETS,
        selection=["forecast"],
        partition_key=H,
        instance=dg.DagsterInstance.ephemeral(),
        resources=build_resources(settings_),
    )
    meta = result.asset_materializations_for_node("forecast")[0].metadata
    row = pl.read_parquet(root.forecast(H)).row(0, named=True)
    assert meta["source"].value == SOURCE_BENCHMARK and meta["family"].value == DRIFT
    assert (
        "benchmark (drift): no model passed the gates; lightgbm failed: skill_vs_random_walk"
        in (meta["forecast"].value)
    )
    assert (meta["lower_80"].value, meta["upper_90"].value) == (row["q10"], row["q95"])
    assert meta["chart"].value.startswith("![forecast](data:image/png;base64,")
    client = Tracker.for_data_root(settings_.data_root).client
    run = client.get_run(meta["mlflow_run_id"].value)
    assert {q: run.data.metrics[q] for q in QUANTILE_COLUMNS} == {
        q: row[q] for q in QUANTILE_COLUMNS
    }
    assert run.data.metrics["forecast_price"] == row["forecast_price"]
    assert run.data.params["label"] == row["label"] and run.data.params["source"] == "benchmark"
    assert run.data.params["failed_gates"] == GATE_SKILL
    assert run.data.tags[TAG_FORECAST_SOURCE] == "benchmark"
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "forecast")]
    assert artifacts == ["forecast/1w.png"]
