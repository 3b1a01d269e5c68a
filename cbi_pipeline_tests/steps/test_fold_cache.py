"""The fold cache over a data root: a new day reuses what it did not change, the result equals a
full rebuild bit for bit, and a changed old price refits exactly the folds that can see it."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbi_pipeline.core.foldcache import window_rows
from cbi_pipeline.core.hardware import detect_system
from cbi_pipeline.core.walkforward import plan_folds
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps import models as training
from cbi_pipeline.steps.diagnostics import diagnose_root
from cbi_pipeline.steps.evaluation import evaluate_root
from cbi_pipeline.store.foldcache import fold_cache_dir
from cbi_pipeline.store.models import load_export
from cbi_pipeline.store.root import DataRoot
from cbi_pipeline_tests.conftest import SMALL_WALK_FORWARD, build_tiny_exports, make_tiny_market

SYSTEM = detect_system(cores=2, ram_gb=16, device="cpu")
NEURAL = {"hidden_size": 8, "max_epochs": 3, "patience": 1, "sequence_length": 10}
TARGETS = ("lightgbm", "xgboost", "lstm", "baselines", "ensemble")
CACHED = ("lightgbm", "xgboost", "lstm", "ets")
FAMILIES = ("lightgbm", "xgboost", "lstm", "random_walk", "drift", "ets", "ensemble")
DAYS = 700


def market_until(path: Path, days: int, change: tuple[dt.date, float] | None = None) -> Path:
    """The first ``days`` business days of one 701-day tiny market (so every cut has the same
    past), with ZL's close on ``change[0]`` multiplied by ``change[1]``."""
    full = make_tiny_market(n=DAYS + 1)
    last = sorted(full["date"].unique())[days - 1]
    frame = full.filter(pl.col("date") <= last)
    if change is not None:
        day, factor = change
        hit = (pl.col("symbol") == "ZL") & (pl.col("date") == day)
        assert frame.filter(hit).height == 1
        frame = frame.with_columns(
            pl.when(hit).then(pl.col("close") * factor).otherwise(pl.col("close")).alias("close")
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return path


def settings_for(base: Path, market: Path, **values: object) -> Settings:
    return Settings(
        data_root=str(base), market_paths=(str(market),), **SMALL_WALK_FORWARD, **values
    )  # type: ignore[arg-type]


def train_all(settings: Settings) -> DataRoot:
    root = build_tiny_exports(settings)
    for target in TARGETS:
        training.train(root, settings, "1m", target, SYSTEM, overrides=NEURAL)
    diagnose_root(root, settings, ["1m"], plot=False)
    evaluate_root(root, "1m", settings=settings)
    return root


def manifest(root: DataRoot, family: str) -> dict:
    return json.loads((root.model_dir("1m", family) / "manifest.json").read_text())


def assert_same_outputs(a: DataRoot, b: DataRoot) -> None:
    """Predictions (quantiles included), final model files, the evaluation and its gates."""
    for family in FAMILIES:
        pa = pl.read_parquet(a.predictions("1m", family))
        pb = pl.read_parquet(b.predictions("1m", family))
        assert pa.equals(pb), family
    for family, name in (("lightgbm", "model.txt"), ("xgboost", "model.json")):
        ma, mb = manifest(a, family), manifest(b, family)
        assert ma["model_sha256"] == mb["model_sha256"], family
        assert ma["feature_importance"] == mb["feature_importance"], family
        assert (a.model_dir("1m", family) / name).read_bytes() == (
            b.model_dir("1m", family) / name
        ).read_bytes()
    assert manifest(a, "lstm")["model_sha256"] == manifest(b, "lstm")["model_sha256"]
    ea = json.loads(a.evaluation("1m").read_text().replace(str(a.root), "<root>"))
    eb = json.loads(b.evaluation("1m").read_text().replace(str(b.root), "<root>"))
    assert ea.pop("created_at") and eb.pop("created_at")  # when it ran: the only difference
    assert ea == eb
    assert ea["gates"]  # the verdicts compared above exist


@pytest.fixture(scope="module")
def nightly(tmp_path_factory):
    """Yesterday's cycle, then today's (one more day) on the same root, and a full rebuild of
    today's from an empty root with the cache off."""
    base = tmp_path_factory.mktemp("fold-cache")
    incremental = settings_for(base / "root", market_until(base / "in" / "m0.parquet", DAYS - 1))
    train_all(incremental)
    before = {f: manifest(DataRoot(incremental.data_root), f)["fold_cache"] for f in CACHED}
    today = market_until(base / "in" / "m1.parquet", DAYS)
    incremental = replace(incremental, market_paths=(str(today),))
    inc_root = train_all(incremental)
    full_root = train_all(settings_for(base / "full", today, fold_cache=0))
    return before, inc_root, full_root


def test_a_new_day_reuses_the_old_folds_and_equals_a_full_rebuild_bit_for_bit(nightly):
    before, inc, full = nightly
    assert_same_outputs(inc, full)
    for family in CACHED:
        assert before[family]["refit_folds"] == len(manifest(inc, family)["folds"]) or (
            before[family]["refit_folds"] == len(manifest(inc, family)["folds"]) - 1
        )
        cache = manifest(inc, family)["fold_cache"]
        folds = manifest(inc, family)["folds"]
        # Only the last fold gains the new labelled row: it is predicted with its stored model
        # (or it is a new fold, fitted); every other fold is reused untouched.
        assert cache["reused_folds"] == len(folds) - 1, (family, cache)
        last = folds[-1]["cache"]
        assert last["status"] in ("predicted", "refit"), (family, last)
        if last["status"] == "refit":
            assert last["reason"] == "no cached entry"
        for f in folds[:-1]:
            assert f["cache"] == {"status": "reused", "reason": "nothing it reads changed"}
        if family != "ets":
            # The final model's rows gained the new labelled row: refitted.
            assert cache["final"]["status"] == "refit"
        full_cache = manifest(full, family)["fold_cache"]
        assert full_cache["reused_folds"] == 0 and full_cache["refit_folds"] == len(folds)
        assert set(full_cache["refit"].values()) == {"no fold cache"}
    assert not (full.root / "cache" / "folds").exists()


def changed_rows(before: pl.DataFrame, after: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """Export rows (same dates) where any of ``columns`` differs, nulls compared as values."""
    assert before["date"].equals(after["date"])
    a = before.select(columns).fill_nan(None).to_numpy()
    b = after.select(columns).fill_nan(None).to_numpy()
    same = (a == b) | (pd_isnull(a) & pd_isnull(b))
    return np.flatnonzero(~same.all(axis=1))


def pd_isnull(x: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: v is None or (isinstance(v, float) and np.isnan(v)))(x)


def test_changing_one_old_price_refits_exactly_the_folds_that_can_see_it(tmp_path):
    market = market_until(tmp_path / "in" / "m.parquet", DAYS)
    settings = settings_for(tmp_path / "root", market)
    root = train_all(settings)
    old = load_export(root, settings, "1m")
    data = old.data
    folds = plan_folds(data.dates, data.labelled, settings.walk_forward_spec("1m"))
    # A price inside the second fold's test block: the folds before it cannot see it.
    day = data.dates[folds[1].test_rows[5]].astype(dt.date)
    changed = market_until(tmp_path / "in" / "m2.parquet", DAYS, (day, 1.07))
    settings = replace(settings, market_paths=(str(changed),))
    root = train_all(settings)
    new = load_export(root, settings, "1m")
    features = changed_rows(old.frame, new.frame, list(data.features))
    labels = changed_rows(old.frame, new.frame, ["price", "target_1m", "training_weight"])
    prices = changed_rows(old.frame, new.frame, ["price"])
    assert features.size and labels.size and prices.size
    length = NEURAL["sequence_length"]
    for family in CACHED:
        expected = set()
        for fold in folds:
            seen = np.union1d(fold.fit_rows, fold.validation_rows)
            if family == "ets":
                sees = bool((prices <= fold.test_origin).any())
            else:
                reach = window_rows(seen, length) if family == "lstm" else seen
                sees = bool(
                    np.intersect1d(reach, features).size or np.intersect1d(seen, labels).size
                )
            if sees:
                expected.add(f"fold {fold.index}")
        refit = manifest(root, family)["fold_cache"]["refit"]
        assert set(refit) == expected, family
        assert 0 < len(expected) < len(folds), family  # the test separates seen from unseen
        for reason in refit.values():
            assert "changed on" in reason and "first" in reason, reason
    # ... and the outputs equal a full rebuild on the changed market.
    full = train_all(settings_for(tmp_path / "full", changed, fold_cache=0))
    assert_same_outputs(root, full)


def test_a_corrupt_or_foreign_entry_is_refitted_never_trusted(tmp_path):
    settings = settings_for(tmp_path / "root", market_until(tmp_path / "in" / "m.parquet", DAYS))
    root = build_tiny_exports(settings)
    (first,) = training.train(root, settings, "1m", "lightgbm", SYSTEM)
    cache = fold_cache_dir(root, "1m", "lightgbm")
    (cache / "fold_0.bin").write_bytes(b"not a model")
    entry = json.loads((cache / "fold_1.json").read_text())
    entry["info"]["trees"] = 999  # edited: the checksum no longer matches
    (cache / "fold_1.json").write_text(json.dumps(entry))
    (cache / "fold_2.json").write_text((cache / "final.json").read_text())  # foreign
    (second,) = training.train(root, settings, "1m", "lightgbm", SYSTEM)
    refit = second.manifest["fold_cache"]["refit"]
    assert "does not match the entry's sha256" in refit["fold 0"]
    assert "checksum mismatch" in refit["fold 1"]
    assert "foreign entry" in refit["fold 2"]
    assert pl.read_parquet(first.predictions_path).equals(pl.read_parquet(second.predictions_path))
    # Rewritten: a third run reuses every fold.
    (third,) = training.train(root, settings, "1m", "lightgbm", SYSTEM)
    assert third.manifest["fold_cache"]["refit_folds"] == 0


def test_changed_parameters_refit_every_fold_and_say_so(tmp_path):
    settings = settings_for(tmp_path / "root", market_until(tmp_path / "in" / "m.parquet", DAYS))
    root = build_tiny_exports(settings)
    training.train(root, settings, "1m", "xgboost", SYSTEM)
    (out,) = training.train(root, replace(settings, max_bin=16), "1m", "xgboost", SYSTEM)
    cache = out.manifest["fold_cache"]
    assert cache["reused_folds"] == 0
    assert set(cache["refit"].values()) == {"parameters changed"}
    assert cache["final"] == {"status": "refit", "reason": "parameters changed"}


def test_with_warm_start_a_refitted_fold_refits_every_later_one(tmp_path):
    """Each fold starts from the previous fold's model: its key includes the previous key, so
    the chain after the first changed fold is refitted, and the result equals a full rebuild."""
    warm = {**NEURAL, "warm_start": True}
    market = market_until(tmp_path / "in" / "m.parquet", DAYS)
    settings = settings_for(tmp_path / "root", market)
    root = build_tiny_exports(settings)
    training.train(root, settings, "1m", "lstm", SYSTEM, overrides=warm)
    data = load_export(root, settings, "1m").data
    folds = plan_folds(data.dates, data.labelled, settings.walk_forward_spec("1m"))
    day = data.dates[folds[0].test_rows[-3]].astype(dt.date)  # seen by fold 1's fit rows
    changed = market_until(tmp_path / "in" / "m2.parquet", DAYS, (day, 1.05))
    settings = replace(settings, market_paths=(str(changed),))
    root = build_tiny_exports(settings)
    (out,) = training.train(root, settings, "1m", "lstm", SYSTEM, overrides=warm)
    cache = out.manifest["fold_cache"]
    assert cache["reused_folds"] + cache["predicted_folds"] == 1  # fold 0 cannot see the day
    assert set(cache["refit"]) == {f"fold {f.index}" for f in folds[1:]}
    assert (
        "the previous fold's model changed (warm start)"
        in cache["refit"][f"fold {folds[-1].index}"]
    )
    full_settings = settings_for(tmp_path / "full", changed, fold_cache=0)
    full_root = build_tiny_exports(full_settings)
    (full,) = training.train(full_root, full_settings, "1m", "lstm", SYSTEM, overrides=warm)
    assert pl.read_parquet(out.predictions_path).equals(pl.read_parquet(full.predictions_path))
    assert out.manifest["model_sha256"] == full.manifest["model_sha256"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 400), min_size=0, max_size=60),
    st.integers(1, 80),
)
def test_window_rows_are_every_row_a_window_reaches(rows, length):
    expected = sorted({r - k for r in rows for k in range(length) if r - k >= 0})
    got = window_rows(np.asarray(rows, dtype=np.int64), length)
    assert got.dtype == np.int64 and got.tolist() == expected
