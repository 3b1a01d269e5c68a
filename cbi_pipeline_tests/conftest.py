"""Shared fixtures: tiny seeded raw data, and the real file when ../shared holds it."""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.settings import Settings
from cbi_pipeline.steps import data as tasks
from cbi_pipeline.store.root import DataRoot
from cbi_pipeline_tests.sample_cycle import sample_cycle_root  # noqa: F401  (a shared fixture)

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(
    os.environ.get("CBI_REAL_DATA", REPO.parent / "shared/data/real/dev_market_1995_2010.csv")
)


def business_days(start: dt.date, n: int) -> list[dt.date]:
    days, d = [], start
    while len(days) < n:
        if d.weekday() < 5:
            days.append(d)
        d += dt.timedelta(days=1)
    return days


def make_tiny_market(
    n: int = 320, seed: int = 7, start: dt.date = dt.date(2007, 6, 1)
) -> pl.DataFrame:
    """Random-walk closes for six symbols; non-target symbols miss ~5% of days."""
    rng = np.random.default_rng(seed)
    days = business_days(start, n)
    levels = {"ZL": 30.0, "ZS": 900.0, "ZM": 250.0, "CL": 70.0, "FCPO": 2500.0, "USDMYR": 3.5}
    rows = []
    for sym, level in levels.items():
        path = level * np.exp(np.cumsum(rng.normal(0, 0.015, n)))
        keep = np.ones(n, bool) if sym == "ZL" else rng.random(n) > 0.05
        for d, p, k in zip(days, path, keep, strict=True):
            if k:
                rows.append({"date": d, "symbol": sym, "close": float(p)})
    return pl.DataFrame(rows, schema={"date": pl.Date, "symbol": pl.String, "close": pl.Float64})


def make_tiny_signals(
    n: int = 320, seed: int = 8, start: dt.date = dt.date(2007, 6, 1)
) -> pl.DataFrame:
    """A daily weather series and a weekly (Friday) policy series."""
    rng = np.random.default_rng(seed)
    days = business_days(start, n)
    rows = [
        {"date": d, "series": "weather_test_anom", "value": float(v)}
        for d, v in zip(days, rng.normal(0, 1, n), strict=True)
    ]
    rows += [
        {"date": d, "series": "policy_test_index", "value": float(i)}
        for i, d in enumerate(d for d in days if d.weekday() == 4)
    ]
    return pl.DataFrame(rows, schema={"date": pl.Date, "series": pl.String, "value": pl.Float64})


@pytest.fixture
def tiny_market() -> pl.DataFrame:
    return make_tiny_market()


@pytest.fixture
def tiny_signals() -> pl.DataFrame:
    return make_tiny_signals()


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.is_file():
        pytest.skip(f"real data not present at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, migrated once per session (the schema takes seconds)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_db(tmp_path, empty_mlflow_store) -> Callable[[Path], str]:
    """Place a copy of the empty store at a path (default: tmp_path/mlflow.db); returns its URI."""

    def place(path: Path = tmp_path / "mlflow.db") -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(empty_mlflow_store, path)
        return f"sqlite:///{path}"

    return place


# A small walk-forward over 700 tiny rows (2007-06-01 .. 2010-02): 3 folds from 2009-07-01 at 1m.
SMALL_WALK_FORWARD: dict[str, object] = {
    "first_test_date": "2009-07-01",
    "refit_step_days": 63,
    "validation_rows": 63,
    "min_train_rows": 126,
    "max_features": 16,
    "max_bin": 32,
}


def build_tiny_exports(settings: Settings, horizons: tuple[str, ...] = ("1m",)) -> DataRoot:
    """The raw copies, the panel and the horizons' exports under ``settings.data_root``."""
    root = DataRoot(settings.data_root)
    tasks.write_raw(root, tasks.load_raw(settings))
    tasks.build_exports(root, settings, list(horizons), panel=tasks.build_panel(root, settings))
    return root


def tiny_export_settings(base: Path, **values: object) -> Settings:
    """Settings over a 700-row tiny market file written under ``base`` (``values`` set any
    field), with the 1m export built in ``base/root``."""
    market = base / "market.parquet"
    make_tiny_market(n=700).write_parquet(market)
    settings = Settings(data_root=str(base / "root"), market_paths=(str(market),), **values)  # type: ignore[arg-type]
    build_tiny_exports(settings)
    return settings


def tiny_training_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings over 700 tiny business days (from 2007-06) written as user files, with a short
    walk-forward starting 2009-07-01; ``overrides`` replace any field."""
    market = tmp_path / "in" / "market.parquet"
    market.parent.mkdir(exist_ok=True)
    make_tiny_market(n=700).write_parquet(market)
    signals = tmp_path / "in" / "signals.parquet"
    make_tiny_signals(n=700).write_parquet(signals)
    values: dict[str, object] = {
        "data_root": str(tmp_path / "root"),
        "market_paths": (str(market),),
        "signal_paths": (str(signals),),
        "first_test_date": "2009-07-01",
        "validation_rows": 63,
        "min_train_rows": 126,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def assert_quantiles_are_ordered(predictions: pl.DataFrame) -> None:
    """Stored predictions carry the nine quantiles, finite and non-decreasing across levels."""
    from cbi_pipeline.core.intervals import QUANTILE_COLUMNS

    q = predictions.select(QUANTILE_COLUMNS).to_numpy()
    assert np.isfinite(q).all()
    assert (np.diff(q, axis=1) >= 0).all()


def random_walk_export(n: int, seed: int, horizon: str = "1w") -> pl.DataFrame:
    """An export-shaped frame of a fat-tailed, volatility-clustered random walk with 40 honest
    features (past returns, moving-average ratios, rolling volatilities, AR(1) noise) of random
    windows: nothing in it knows the future."""
    rng = np.random.default_rng(seed)
    dates = business_days(dt.date(2001, 1, 1), n)
    # fat tails and volatility clusters, like a futures price
    vol = 0.015 * np.exp(np.cumsum(rng.normal(0, 0.05, n)).clip(-1, 1))
    p = 40 * np.exp(np.cumsum(vol * rng.standard_t(4, n) / math.sqrt(2)))
    h = {"1w": 5, "1m": 21, "3m": 63, "6m": 126, "12m": 252}[horizon]
    frame = pl.DataFrame({"date": dates, "price": p})
    features = {}
    for i in range(40):
        k = int(rng.integers(1, 120))
        kind = i % 4
        s = frame["price"]
        if kind == 0:
            features[f"ret_{i}"] = np.log(s / s.shift(k)).to_numpy()
        elif kind == 1:
            features[f"ratio_{i}"] = (s / s.rolling_mean(k + 1)).to_numpy()
        elif kind == 2:
            r = np.r_[np.nan, np.diff(np.log(p))]
            features[f"vol_{i}"] = pl.Series(r).rolling_std(k + 2).to_numpy()
        else:
            phi = float(rng.uniform(0, 0.99))
            e = rng.normal(0, 1, n)
            x = np.zeros(n)
            for t in range(1, n):
                x[t] = phi * x[t - 1] + e[t]
            features[f"ar_{i}"] = x
    return frame.with_columns(
        *[pl.Series(n_, v).fill_nan(None) for n_, v in features.items()],
        pl.lit("all").alias("market_regime"),
        pl.lit(1.0).alias("training_weight"),
        pl.col("price").shift(-h).alias(f"target_{horizon}"),
        pl.lit(dates[-1]).alias("as_of"),
    )


def make_tiny_curve(
    n: int = 320, seed: int = 9, start: dt.date = dt.date(2007, 6, 1), symbols=("ZL", "ZS")
) -> pl.DataFrame:
    """A raw futures curve: for each symbol, the contracts of the H K N U Z months, each quoted
    from a year before its expiry (the 15th of its delivery month, or the business day before)
    until that expiry; close = spot * exp(carry * years to expiry), carry 3%, on business days."""
    rng = np.random.default_rng(seed)
    days = business_days(start, n)
    months = {"H": 3, "K": 5, "N": 7, "U": 9, "Z": 12}
    rows = []
    for symbol, level in zip(symbols, (30.0, 900.0), strict=False):
        spot = level * np.exp(np.cumsum(rng.normal(0, 0.015, n)))
        for year in range(start.year, days[-1].year + 2):
            for letter, month in months.items():
                expiry = dt.date(year, month, 15)
                while expiry.weekday() >= 5:
                    expiry -= dt.timedelta(days=1)
                for i, d in enumerate(days):
                    if expiry - dt.timedelta(days=365) <= d <= expiry:
                        tau = (expiry - d).days / 365.25
                        rows.append(
                            {
                                "date": d,
                                "symbol": symbol,
                                "contract": f"{symbol}{letter}{year}",
                                "expiry": expiry,
                                "close": float(spot[i] * math.exp(0.03 * tau)),
                                "volume": 1000.0,
                                "open_interest": 5000.0,
                            }
                        )
    return pl.DataFrame(rows).sort("symbol", "date", "expiry")
