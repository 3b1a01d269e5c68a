import copy
import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core.diagnostics import (
    MissingLimits,
    build_diagnostics,
    missing_check,
    missing_data,
    regime_statistics,
    regime_weights,
)
from cbi_pipeline.core.diagnostics_schema import (
    SCHEMA,
    DiagnosticsSchemaError,
    schema_errors,
    validate_diagnostics,
)
from cbi_pipeline.core.export import build_export
from cbi_pipeline.core.features import build_features
from cbi_pipeline.core.leakage.truncation import truncation_not_run
from cbi_pipeline.core.panel import build_market_panel
from cbi_pipeline.core.vocabulary import (
    CHECK_ALIGNED,
    CHECK_MISSING,
    CHECK_NAMES,
    CHECK_NO_LEAK,
    HORIZON_LABELS,
)
from cbi_pipeline_tests.conftest import make_tiny_market, make_tiny_signals

NOT_RUN = truncation_not_run("test: no raw data")


@pytest.fixture(scope="module")
def tiny_features():
    return build_features(
        build_market_panel(make_tiny_market(n=700, seed=21), make_tiny_signals(n=700, seed=22))
    )


def tiny_export(tiny_features, horizon: str) -> pl.DataFrame:
    frame, catalog = tiny_features
    return build_export(frame, catalog, horizon)


# --- regime statistics: naive loops as the oracle ----------------------------------------------


def naive_regime(export: pl.DataFrame, horizon: str, h: int, regime: str) -> dict[str, object]:
    rows = [
        r for r in export.iter_rows(named=True) if regime == "all" or r["market_regime"] == regime
    ]
    pairs = [(r["price"], r[f"target_{horizon}"]) for r in rows if r[f"target_{horizon}"]]
    rets = [math.log(t / p) for p, t in pairs]
    mean = sum(rets) / len(rets)
    std = math.sqrt(sum((x - mean) ** 2 for x in rets) / (len(rets) - 1))
    mape = 100 * sum(abs(p - t) / t for p, t in pairs) / len(pairs)
    origins = [t / p - 1 for i, (p, t) in enumerate(pairs) if i % h == 0]
    om = sum(origins) / len(origins)
    sharpe = None
    if len(origins) >= 4:
        osd = math.sqrt(sum((x - om) ** 2 for x in origins) / (len(origins) - 1))
        sharpe = om / osd * math.sqrt(252 / h)
    return {
        "mean_log_return": mean,
        "std_log_return": std,
        "annualised_vol": std * math.sqrt(252 / h),
        "rw_mape_pct": mape,
        "buy_hold_sharpe": sharpe,
        "sharpe_origins": len(origins),
        "rows": len(rows),
        "labelled_rows": len(pairs),
    }


@pytest.mark.parametrize(("horizon", "h"), [("1w", 5), ("1m", 21)])
def test_regime_statistics_match_naive_loops(tiny_features, horizon, h):
    export = tiny_export(tiny_features, horizon)
    stats = regime_statistics(export, horizon)
    assert [s["regime"] for s in stats] == ["precrisis", "financial_crisis", "recovery", "all"]
    for s in stats:
        want = naive_regime(export, horizon, h, s["regime"])
        for key, value in want.items():
            if value is None:
                assert s[key] is None, (s["regime"], key)
            else:
                assert s[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (s["regime"], key)
    assert stats[2]["sharpe_origins"] == 1 or horizon == "1w"  # recovery is short at 1m
    assert stats[2]["buy_hold_sharpe"] is None or horizon == "1w"


def test_regime_statistics_hand_case():
    # h = 5 on 10 rows: rows 0..4 are labelled, one non-overlapping origin (row 0)
    prices = [100.0, 101.0, 102.0, 103.0, 104.0, 110.0, 99.0, 102.0, 103.0, 104.0]
    target = [*prices[5:], None, None, None, None, None]
    export = pl.DataFrame(
        {
            "date": [dt.date(2020, 1, 6) + dt.timedelta(days=i) for i in range(10)],
            "price": prices,
            "market_regime": ["covid"] * 10,
            "training_weight": [800.0] * 10,
            "target_1w": target,
        },
        schema_overrides={"target_1w": pl.Float64},
    )
    (covid, everything) = regime_statistics(export, "1w")
    assert covid["labelled_rows"] == 5
    assert covid["rw_mape_pct"] == pytest.approx(
        100 / 5 * sum(abs(p - t) / t for p, t in zip(prices[:5], prices[5:], strict=True)),
        rel=1e-6,
    )
    assert covid["sharpe_origins"] == 1
    assert covid["buy_hold_sharpe"] is None  # one origin: no Sharpe
    assert everything["regime"] == "all"


def test_regime_weights_shares_sum_to_one_and_follow_the_weights(tiny_features):
    export = tiny_export(tiny_features, "1m")
    weights = regime_weights(export, "1m")
    assert sum(w["weight_share"] for w in weights) == pytest.approx(1.0)
    assert sum(w["row_share"] for w in weights) == pytest.approx(1.0)
    by = {w["regime"]: w for w in weights}
    lab = export.filter(pl.col("target_1m").is_not_null())
    total = lab["training_weight"].sum()
    for name, w in by.items():
        part = lab.filter(pl.col("market_regime") == name)
        assert w["labelled_rows"] == part.height
        assert w["weight_share"] == pytest.approx(part["training_weight"].sum() / total, abs=1e-6)
    assert by["financial_crisis"]["weight"] == 500.0


# --- missing data ------------------------------------------------------------------------------


def gap_export() -> pl.DataFrame:
    n = 10
    return pl.DataFrame(
        {
            "date": [dt.date(2021, 3, 1) + dt.timedelta(days=i) for i in range(n)],
            "price": [50.0 + i for i in range(n)],
            "a": [None, 1.0, None, None, None, 2.0, 3.0, None, 4.0, 5.0],
            "b": [float("nan")] * 7 + [1.0, 2.0, 3.0],
            "c": [1.0] * n,
            "market_regime": ["covid"] * n,
            "training_weight": [800.0] * n,
            "target_1w": [None] * n,
        },
        schema_overrides={"target_1w": pl.Float64},
    )


def test_missing_data_hand_case_counts_nulls_and_nans_and_longest_gaps():
    report = missing_data(gap_export(), {"a": "Weather", "b": "Weather", "c": "Spreads"})
    by = {f["feature"]: f for f in report["features"]}
    assert by["a"]["missing_rows"] == 5
    assert by["a"]["longest_gap_rows"] == 3
    assert (by["a"]["longest_gap_start"], by["a"]["longest_gap_end"]) == (
        "2021-03-03",
        "2021-03-05",
    )
    assert by["a"]["first_valid_date"] == "2021-03-02"
    assert not by["a"]["flagged"]  # exactly 50% is not over the limit
    assert by["b"]["missing_share"] == 0.7 and by["b"]["flagged"]
    assert by["b"]["longest_gap_rows"] == 7
    assert by["c"]["longest_gap_rows"] == 0 and by["c"]["longest_gap_start"] is None
    blocks = {b["block"]: b for b in report["blocks"]}
    assert blocks["Weather"]["missing_share"] == pytest.approx(12 / 20)
    assert blocks["Weather"]["flagged_features"] == 1
    assert blocks["Spreads"]["missing_share"] == 0.0
    assert report["flagged"] == ["b"]
    years = {(r["block"], r["year"]): r["missing_share"] for r in report["by_year"]}
    assert years[("Weather", 2021)] == pytest.approx(0.6)


def test_missing_check_fails_for_a_block_over_its_limit_and_names_its_features():
    report = missing_data(gap_export(), {"a": "Weather", "b": "Weather", "c": "Spreads"})
    check = missing_check(report, MissingLimits(max_flagged_share=0.5))
    assert not check["passed"]
    assert "block Weather misses 60.0% of its cells" in check["summary"]
    assert check["offending"] == ["a", "b"]
    relaxed = missing_check(report, MissingLimits(max_flagged_share=0.5, max_block_share=0.7))
    assert relaxed["passed"] and relaxed["warnings"] == ["b"]


def test_missing_check_fails_for_an_empty_feature_and_a_missing_price():
    export = gap_export().with_columns(
        pl.lit(None, dtype=pl.Float64).alias("empty"),
        pl.when(pl.col("price") > 55).then(None).otherwise(pl.col("price")).alias("price"),
    )
    limits = MissingLimits(max_flagged_share=1.0, max_block_share=1.0)
    check = missing_check(missing_data(export, None, limits), limits)
    assert not check["passed"]
    assert "price is missing on 4 row(s)" in check["summary"]
    assert "1 feature(s) are missing on every row" in check["summary"]
    assert check["offending"] == ["empty", "price"]


def test_missing_check_fails_when_too_many_features_are_flagged():
    report = missing_data(gap_export())
    check = missing_check(report, MissingLimits(max_block_share=1.0))
    assert not check["passed"]
    assert "1 of 3 features (33.3%) are over 50% missing" in check["summary"]
    assert check["offending"] == ["b"]


# --- the payload and its schema ----------------------------------------------------------------


@pytest.fixture(scope="module")
def payload(tiny_features):
    frame, catalog = tiny_features
    blocks = {d.name: d.block for d in catalog}
    export = build_export(frame, catalog, "1m")
    return build_diagnostics(export, "1m", NOT_RUN, blocks, "tiny")


def test_payload_validates_against_its_schema_and_survives_json(payload):
    assert schema_errors(payload) == []
    validate_diagnostics(json.loads(json.dumps(payload, allow_nan=False)))
    assert payload["passed"]
    assert set(payload["checks"]) == set(CHECK_NAMES)
    assert payload["leakage"]["truncation"]["status"] == "not_run"
    assert "not run (test: no raw data)" in payload["checks"][CHECK_NO_LEAK]["summary"]


def test_payload_validates_with_jsonschema_when_installed(payload):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator(SCHEMA).validate(payload)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.pop("schema_version"), "$: required property 'schema_version' is missing"),
        (lambda p: p.update(schema_version=1), "$.schema_version: 1 is not one of [2]"),
        (
            lambda p: p["checks"][CHECK_ALIGNED].update(passed="yes"),
            f"$.checks.{CHECK_ALIGNED}.passed: expected boolean",
        ),
        (
            lambda p: p["missing_data"]["features"][0].update(missing_share=1.5),
            "$.missing_data.features[0].missing_share: 1.5 is above the maximum 1",
        ),
        (lambda p: p.update(extra=1), "$: unexpected property 'extra'"),
        (
            lambda p: p["regime_statistics"][0].update(rows=True),
            "$.regime_statistics[0].rows: expected integer",
        ),
    ],
)
def test_schema_names_the_path_of_each_violation(payload, mutate, message):
    broken = copy.deepcopy(payload)
    mutate(broken)
    errors = schema_errors(broken)
    assert any(e.startswith(message) for e in errors), errors
    with pytest.raises(DiagnosticsSchemaError, match="does not match the diagnostics schema"):
        validate_diagnostics(broken, "x.json")


def test_payload_with_a_leak_fails_only_the_leak_check(tiny_features):
    export = tiny_export(tiny_features, "1w")
    target = export["target_1w"].cast(pl.Float64).to_numpy()
    noisy = target * (1 + np.random.default_rng(2).normal(0, 0.005, target.size))
    leaky = export.with_columns(pl.Series("zl_hint", noisy).fill_nan(None))
    p = build_diagnostics(leaky, "1w", NOT_RUN)
    assert not p["passed"]
    assert p["checks"][CHECK_NO_LEAK]["offending"] == ["zl_hint"]
    assert p["checks"][CHECK_ALIGNED]["passed"] and p["checks"][CHECK_MISSING]["passed"]
    assert [s["feature"] for s in p["leakage"]["screen"]["suspects"]] == ["zl_hint"]
    assert schema_errors(p) == []


# --- default data ------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_check_passes_on_the_default_sample_for_every_horizon():
    sample = pytest.importorskip("cbi_pipeline.core.sample.generator")
    raw = sample.generate_sample_market(sample.SampleSpec(end=dt.date(2025, 12, 31)))
    from cbi_pipeline.core.contracts import (
        combine_market,
        combine_signals,
        normalize_market,
        normalize_signals,
    )

    market = combine_market([normalize_market(raw.market, "sample")])
    signals = combine_signals([normalize_signals(raw.signals, "sample")])
    frame, catalog = build_features(build_market_panel(market, signals))
    assert len(catalog) > 200
    blocks = {d.name: d.block for d in catalog}
    for horizon in HORIZON_LABELS:
        p = build_diagnostics(build_export(frame, catalog, horizon), horizon, NOT_RUN, blocks)
        assert p["passed"], {k: v["summary"] for k, v in p["checks"].items()}
        assert p["leakage"]["canary"]["caught"] == p["leakage"]["canary"]["planted"]


def test_an_export_with_too_few_labels_fails_the_leak_check_saying_why(tiny_features):
    export = tiny_export(tiny_features, "1w").head(25)  # 25 rows, all labelled
    p = build_diagnostics(export, "1w", NOT_RUN)
    check = p["checks"][CHECK_NO_LEAK]
    assert not check["passed"]
    assert "only 25 labelled rows: the screen needs 30" in check["summary"]
