"""The champion's forecast from the latest date: price, return and a conformal interval.

The interval comes from split-conformal quantiles of the champion family's out-of-fold log
residuals log(y_true / y_pred) on the walk-forward test rows.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cbi_pipeline.core.evaluation import conformal_bounds
from cbi_pipeline.core.export import export_filename
from cbi_pipeline.core.models.trees import load_tree_model
from cbi_pipeline.core.vocabulary import DRIFT, NEURAL_FAMILIES, TREE_FAMILIES, horizon_days
from cbi_pipeline.settings import Settings
from cbi_pipeline.store.models import load_export, load_neural_model
from cbi_pipeline.store.root import (
    DataRoot,
    StorageError,
    read_bytes,
    read_json,
    read_parquet,
    write_bytes,
    write_parquet,
)

COVERAGE = 0.9
CHART_DAYS = 500


@dataclass(frozen=True)
class Forecast:
    horizon: str
    family: str
    frame: pl.DataFrame
    path: Path
    chart_path: Path


def champion_pred_return(
    root: DataRoot, settings: Settings, horizon: str, pointer: dict[str, Any]
) -> tuple[dt.date, float, float]:
    """(origin date, price, predicted h-step log return) of the champion at the export's last row."""
    family = str(pointer["family"])
    model_dir = root.path(pointer["model_dir"])
    manifest = read_json(model_dir / "manifest.json", "champion")
    loaded = load_export(root, settings, horizon)
    data = loaded.data
    last = data.rows - 1
    origin = dt.date.fromisoformat(str(data.dates[last])[:10])
    price = float(data.price[last])
    if family == DRIFT:
        return origin, price, float(manifest["final"]["pred_return"])
    if family in TREE_FAMILIES:
        model_path = model_dir / str(manifest["model_file"])
        model_bytes = read_bytes(model_path, "champion", manifest.get("model_sha256"))
        try:
            predict = load_tree_model(family, model_bytes)
        except Exception as exc:  # lightgbm and xgboost raise their own error types
            raise StorageError(f"{model_path}: unreadable {family} model ({exc})") from exc
        position = {f: i for i, f in enumerate(data.features)}
        missing = [f for f in manifest["features"] if f not in position]
        if missing:
            raise StorageError(f"{model_path}: reads features {missing[:5]} the export lacks")
        cols = [position[f] for f in manifest["features"]]
        return origin, price, float(predict(data.X[last : last + 1, cols])[0])
    if family in NEURAL_FAMILIES:
        model = load_neural_model(model_dir)
        return origin, price, float(model.predict(data, np.array([last]))[0])
    raise StorageError(f"{model_dir}: cannot forecast with family {family!r}")


def forecast_chart(
    history: pl.DataFrame, oof: pl.DataFrame, row: dict[str, Any], title: str
) -> bytes:
    """Recent prices, out-of-fold predictions at their target dates, and the forecast interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    ax.plot(
        history["date"].to_list(), history["price"].to_list(), color="#222", lw=1.2, label="price"
    )
    if oof.height:
        ax.plot(
            oof["target_date"].to_list(),
            oof["y_pred"].to_list(),
            color="#1f77b4",
            lw=0.9,
            alpha=0.8,
            label="out-of-fold prediction (at target date)",
        )
    ax.errorbar(
        [row["target_date"]],
        [row["forecast_price"]],
        yerr=[[row["forecast_price"] - row["lower"]], [row["upper"] - row["forecast_price"]]],
        fmt="o",
        color="#d62728",
        capsize=5,
        label=f"forecast, {COVERAGE:.0%} interval",
    )
    ax.plot(
        [row["origin_date"], row["target_date"]],
        [row["price"], row["forecast_price"]],
        color="#d62728",
        ls="--",
        lw=1,
    )
    ax.set_title(title)
    ax.set_ylabel("price")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def make_forecast(
    root: DataRoot, settings: Settings, horizon: str, pointer: dict[str, Any]
) -> Forecast:
    family = str(pointer["family"])
    origin, price, pred_return = champion_pred_return(root, settings, horizon, pointer)
    oof = read_parquet(root.predictions(horizon, family), f"{family} predictions").sort("date")
    lo, hi = conformal_bounds(np.log(oof["y_true"].to_numpy() / oof["y_pred"].to_numpy()), COVERAGE)
    days = horizon_days(horizon)
    target_date = dt.date.fromisoformat(
        str(np.busday_offset(np.datetime64(origin, "D"), days, roll="forward"))
    )
    row = {
        "horizon": horizon,
        "family": family,
        "origin_date": origin,
        "target_date": target_date,
        "price": price,
        "pred_return": pred_return,
        "forecast_price": price * float(np.exp(pred_return)),
        "lower": price * float(np.exp(pred_return + lo)),
        "upper": price * float(np.exp(pred_return + hi)),
        "coverage": COVERAGE,
        "residual_rows": oof.height,
        "promoted_at": str(pointer["promoted_at"]),
    }
    frame = pl.DataFrame([row])
    path = write_parquet(frame, root.forecast(horizon))
    export = read_parquet(
        root.export(export_filename(settings.target_symbol, settings.surface, horizon)),
        "training_export",
    )
    history = export.select("date", "price").tail(CHART_DAYS)
    targets = export.select("date", pl.col("date").shift(-days).alias("target_date"))
    recent = (
        oof.filter(pl.col("date") >= history["date"].min())
        .join(targets, on="date", how="left")
        .drop_nulls("target_date")
    )
    chart = forecast_chart(
        history, recent, row, f"{settings.target_symbol} {horizon}: {family} champion"
    )
    chart_path = write_bytes(chart, root.forecast_plot(horizon))
    return Forecast(horizon, family, frame, path, chart_path)
