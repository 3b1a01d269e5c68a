"""Every night's forecast per horizon, issued whatever the gates say (DESIGN §1): the champion's
when one is promoted, otherwise the best benchmark's, labelled plainly. A forecast is nine
quantile prices around a point; the step behind ``forecast``.

Where it comes from (``forecast_source``): a champion (``models/{h}/champion.json``): its family
and immutable model snapshot; no champion but an evaluation: the baseline (random_walk, drift,
ets) with the lowest out-of-fold pinball loss among those the evaluation holds, an exact tie
going to the simpler family (``COMPLEXITY`` order; none with intervals: the random walk), the
label naming the candidate's failed gates; no evaluation yet (diagnostics or training did not complete): the random walk.

The keys of ``evaluations/{h}.json`` read here (a missing one is an error naming the file):
- ``families[f]["probabilistic"]["overall"]["pinball"]`` (float) for every baseline f present
  under ``families``; ``probabilistic`` or ``pinball`` null: f has no intervals, not eligible;
- ``candidate`` (str or null): the family the gates judged;
- ``gates`` (list of ``{"name": str, "passed": bool}``): the candidate's gates;
- ``promotable`` (bool).

The point (``family_pred_return``): random walk 0; drift, ets and ensemble the
``final.pred_return`` of their ``manifest.json``; tree and neural families their stored final
model at the export's last row. The quantiles: ``core.intervals.forecast_quantiles`` over the
family's out-of-fold predictions (``predictions/{h}/{family}.parquet``; for the random walk
before its predictions exist, its no-change predictions on the export's history, which it has
nothing to fit on), calibrated as ``Settings.interval_spec`` says.

Written, each atomically, once everything is computed and the log has been read:
``forecasts/{h}.parquet`` (one row, ``FORECAST_SCHEMA``), ``forecasts/{h}.png`` (fan chart) and
the log ``forecasts/log.parquet`` (every forecast issued, one row per horizon and origin date;
issuing again for the same origin replaces that row), so forecasts can be scored against what
happened. A log that cannot be read is an error naming it, never reset. ``origin_date`` is the
export's last row, ``target_date`` h business days on (weekends skipped, not holidays);
``data_last_date`` the export's ``as_of``, the last date of the market panel it was built from
(its own last date for an export without ``as_of``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cbi_pipeline.core.forecast_plot import forecast_chart
from cbi_pipeline.core.intervals import (
    QUANTILE_COLUMNS,
    IntervalSpec,
    forecast_quantiles,
    residual_scale,
)
from cbi_pipeline.core.models.trees import load_tree_model
from cbi_pipeline.core.vocabulary import (
    BASELINES,
    COMPLEXITY,
    DRIFT,
    ENSEMBLE,
    ETS,
    FUTURES_CURVE,
    HORIZON_LABELS,
    NEURAL_FAMILIES,
    RANDOM_WALK,
    TREE_FAMILIES,
    horizon_days,
)
from cbi_pipeline.core.walkforward import TrainingData
from cbi_pipeline.settings import Settings
from cbi_pipeline.store.models import (
    MANIFEST_FILE,
    LoadedExport,
    current_champion,
    load_export,
    load_neural_model,
)
from cbi_pipeline.store.root import (
    DataRoot,
    StorageError,
    is_local,
    read_bytes,
    read_json,
    read_parquet,
    write_bytes,
    write_parquet,
)

SOURCE_CHAMPION = "champion"
SOURCE_BENCHMARK = "benchmark"
# History shown before the fan: a few horizons' worth, so the 1w fan is not a sliver.
CHART_HORIZONS = 6
CHART_MIN_DAYS = 120
# Families whose forecast from the latest date is stored in their manifest (final.pred_return).
STORED_RETURN_FAMILIES: tuple[str, ...] = (DRIFT, ETS, FUTURES_CURVE, ENSEMBLE)
# Re-issuing a forecast for the same horizon and origin replaces the log's row.
LOG_KEY: tuple[str, ...] = ("horizon", "origin_date")
UTC_TIME = pl.Datetime("us", "UTC")

FORECAST_SCHEMA: dict[str, pl.DataType] = {
    "horizon": pl.String(),
    "horizon_days": pl.Int64(),
    "source": pl.String(),
    "family": pl.String(),
    "label": pl.String(),
    "origin_date": pl.Date(),
    "target_date": pl.Date(),
    "data_last_date": pl.Date(),
    "price": pl.Float64(),
    "pred_return": pl.Float64(),
    "forecast_price": pl.Float64(),
    **{q: pl.Float64() for q in QUANTILE_COLUMNS},
    "failed_gates": pl.List(pl.String()),
    "promoted_at": UTC_TIME,
    "created_at": UTC_TIME,
}


@dataclass(frozen=True)
class ForecastSource:
    """Whose forecast is issued, and why, in words the desk reads."""

    source: str  # SOURCE_CHAMPION or SOURCE_BENCHMARK
    family: str
    model_dir: Path
    label: str
    failed_gates: tuple[str, ...] = ()
    promoted_at: dt.datetime | None = None


@dataclass(frozen=True)
class Forecast:
    horizon: str
    source: str
    family: str
    label: str
    frame: pl.DataFrame
    path: Path
    chart_path: Path
    log_path: Path


# --- whose forecast --------------------------------------------------------------------------


def benchmark_scores(payload: Mapping[str, Any], where: str = "evaluation") -> dict[str, float]:
    """The out-of-fold pinball loss of every evaluated baseline with intervals (its
    ``probabilistic`` or ``pinball`` null: none, not eligible); a missing key is an error."""
    families = payload["families"]
    scores: dict[str, float] = {}
    for family in (f for f in BASELINES if f in families):
        try:
            body = families[family]["probabilistic"]
            pinball = None if body is None else body["overall"]["pinball"]
        except (KeyError, TypeError) as exc:
            raise StorageError(
                f"{where}: families.{family} has no probabilistic.overall.pinball "
                f"(missing {exc}); materialize evaluation again"
            ) from exc
        if pinball is not None and np.isfinite(float(pinball)):
            scores[family] = float(pinball)
    return scores


def best_benchmark(payload: Mapping[str, Any], where: str = "evaluation") -> str:
    """The evaluated baseline with the lowest out-of-fold pinball loss, an exact tie going to the
    simpler family (COMPLEXITY order); the random walk when no baseline has intervals."""
    scores = benchmark_scores(payload, where)
    return min(scores, key=lambda f: (scores[f], COMPLEXITY.index(f)), default=RANDOM_WALK)


def promoted_time(text: object, where: str) -> dt.datetime:
    try:
        stamp = dt.datetime.fromisoformat(str(text))
    except ValueError as exc:
        raise StorageError(f"{where}: promoted_at {text!r} is not an ISO timestamp") from exc
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)


def forecast_source(root: DataRoot, horizon: str) -> ForecastSource:
    """The champion when one is promoted, else the best benchmark (or, before any evaluation,
    the random walk), with a label that says which and why."""
    pointer = current_champion(root, horizon)
    if pointer is not None:
        family = str(pointer["family"])
        promoted = promoted_time(pointer["promoted_at"], str(root.champion_pointer(horizon)))
        label = f"champion ({family}), promoted {promoted.isoformat(timespec='seconds')}"
        override = pointer.get("override")
        if override:
            label += f" by override ({override['by']}: {override['reason']})"
        return ForecastSource(
            SOURCE_CHAMPION, family, root.path(pointer["model_dir"]), label, (), promoted
        )
    path = root.evaluation(horizon)
    if not path.exists():
        return ForecastSource(
            SOURCE_BENCHMARK,
            RANDOM_WALK,
            root.model_dir(horizon, RANDOM_WALK),
            f"benchmark ({RANDOM_WALK}): no evaluation of {horizon} yet "
            "(diagnostics or training did not complete)",
        )
    payload = read_json(path, "evaluation")
    family = best_benchmark(payload, str(path))
    unscored = "" if benchmark_scores(payload, str(path)) else "; no baseline has interval scores"
    failed = tuple(str(g["name"]) for g in payload["gates"] if not g["passed"])
    candidate = payload["candidate"]
    if candidate is None:
        why = "no model passed the gates; no candidate to judge"
    elif failed:
        why = f"no model passed the gates; {candidate} failed: {', '.join(failed)}"
    elif payload["promotable"]:
        why = f"{candidate} passed every gate but is not promoted (yet)"
    else:
        why = f"no model passed the gates; {candidate} is not promotable"
    label = f"benchmark ({family}): {why}{unscored}"
    return ForecastSource(SOURCE_BENCHMARK, family, root.model_dir(horizon, family), label, failed)


# --- the point -------------------------------------------------------------------------------


def family_pred_return(
    root: DataRoot,
    settings: Settings,
    horizon: str,
    family: str,
    model_dir: Path,
    loaded: LoadedExport | None = None,
) -> float:
    """A family's predicted h-step log return from the export's last row: random walk 0; drift,
    ets, futures_curve, ensemble their manifest's ``final.pred_return``; tree and neural families their stored
    final model (``model_dir``: the family's folder or a champion snapshot)."""
    if family == RANDOM_WALK:
        return 0.0
    manifest_path = model_dir / MANIFEST_FILE
    manifest = read_json(manifest_path, f"the {family} model")
    if family in STORED_RETURN_FAMILIES:
        try:
            value = float(manifest["final"]["pred_return"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageError(
                f"{manifest_path}: expected a number at final.pred_return ({exc!r})"
            ) from exc
        if not np.isfinite(value):
            raise StorageError(f"{manifest_path}: final.pred_return is {value}, expected finite")
        return value
    data = (loaded or load_export(root, settings, horizon)).data
    last = data.rows - 1
    if family in TREE_FAMILIES:
        model_path = model_dir / str(manifest["model_file"])
        model_bytes = read_bytes(model_path, f"the {family} model", manifest.get("model_sha256"))
        try:
            predict = load_tree_model(family, model_bytes)
        except Exception as exc:  # lightgbm and xgboost raise their own error types
            raise StorageError(f"{model_path}: unreadable {family} model ({exc})") from exc
        position = {f: i for i, f in enumerate(data.features)}
        missing = [f for f in manifest["features"] if f not in position]
        if missing:
            raise StorageError(f"{model_path}: reads features {missing[:5]} the export lacks")
        cols = [position[f] for f in manifest["features"]]
        return float(predict(data.X[last : last + 1, cols])[0])
    if family in NEURAL_FAMILIES:
        model = load_neural_model(model_dir)
        return float(model.predict(data, np.array([last]))[0])
    raise StorageError(f"{model_dir}: cannot forecast with family {family!r}")


def champion_pred_return(
    root: DataRoot, settings: Settings, horizon: str, pointer: Mapping[str, Any]
) -> tuple[dt.date, float, float]:
    """(origin date, price, predicted h-step log return) of a champion pointer's snapshot."""
    loaded = load_export(root, settings, horizon)
    data = loaded.data
    family, model_dir = str(pointer["family"]), root.path(pointer["model_dir"])
    pred = family_pred_return(root, settings, horizon, family, model_dir, loaded)
    return export_day(data.dates[-1]), float(data.price[-1]), pred


def export_day(value: object) -> dt.date:
    return dt.date.fromisoformat(str(value)[:10])


def target_day(origin: dt.date, days: int) -> dt.date:
    return export_day(np.busday_offset(np.datetime64(origin, "D"), days, roll="forward"))


# --- the row, the log ------------------------------------------------------------------------


def random_walk_history(data: TrainingData, spec: IntervalSpec) -> pl.DataFrame:
    """The random walk's predictions on every labelled row with a usable residual scale: it has
    nothing to fit, so these are out-of-sample by construction (used before baselines ran)."""
    scale = residual_scale(data, spec)
    rows = np.flatnonzero(data.labelled & np.isfinite(scale) & (scale > 0))
    return pl.DataFrame(
        {
            "date": data.dates[rows].astype("datetime64[D]"),
            "price": data.price[rows],
            "pred_return": np.zeros(rows.size),
        },
        schema={"date": pl.Date(), "price": pl.Float64(), "pred_return": pl.Float64()},
    )


def family_predictions(
    root: DataRoot, horizon: str, family: str, data: TrainingData, spec: IntervalSpec
) -> tuple[pl.DataFrame, bool]:
    """The family's out-of-fold predictions and True; for the random walk before its
    predictions exist, its predictions on the export's history (``random_walk_history``) and
    False (not drawn on the chart: they are the price itself, shifted)."""
    path = root.predictions(horizon, family)
    if family == RANDOM_WALK and not path.exists():
        return random_walk_history(data, spec), False
    return read_parquet(path, f"{family} predictions").sort("date"), True


def forecast_row(
    horizon: str,
    chosen: ForecastSource,
    loaded: LoadedExport,
    pred_return: float,
    quantiles: Mapping[str, float],
) -> dict[str, Any]:
    data, frame = loaded.data, loaded.frame
    origin = export_day(data.dates[-1])
    price = float(data.price[-1])
    as_of = frame["as_of"].max() if "as_of" in frame.columns else None
    return {
        "horizon": horizon,
        "horizon_days": data.horizon_days,
        "source": chosen.source,
        "family": chosen.family,
        "label": chosen.label,
        "origin_date": origin,
        "target_date": target_day(origin, data.horizon_days),
        "data_last_date": origin if as_of is None else export_day(as_of),
        "price": price,
        "pred_return": pred_return,
        "forecast_price": price * float(np.exp(pred_return)),
        **{q: float(quantiles[q]) for q in QUANTILE_COLUMNS},
        "failed_gates": list(chosen.failed_gates),
        "promoted_at": chosen.promoted_at,
        "created_at": dt.datetime.now(dt.UTC),
    }


def updated_log(log: pl.DataFrame, frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    """The log with ``frame``'s rows, replacing any with the same (horizon, origin_date)."""
    missing = [c for c in LOG_KEY if c not in log.columns]
    if missing:
        raise StorageError(
            f"{path}: not a forecast log: missing column(s) {missing}; expected {list(LOG_KEY)}"
        )
    try:
        kept = log.join(frame.select(LOG_KEY), on=list(LOG_KEY), how="anti")
        out = pl.concat([kept, frame], how="diagonal_relaxed")
    except pl.exceptions.PolarsError as exc:
        raise StorageError(
            f"{path}: its columns do not match a forecast row ({type(exc).__name__}: {exc})"
        ) from exc
    rank = {h: i for i, h in enumerate(HORIZON_LABELS)}
    order = pl.col("horizon").replace_strict(rank, default=len(rank), return_dtype=pl.Int64)
    return out.sort(pl.col("origin_date"), order)


@contextlib.contextmanager
def log_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the log's folder while it is read and rewritten, so horizons
    forecasting at once do not lose each other's rows. Local roots only (flock on the folder
    itself: no lock file); on an object store two writers at the same moment can still lose one
    log row (each horizon's own forecast file is unaffected)."""
    if not is_local(path):
        yield
        return
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# --- the fan chart ---------------------------------------------------------------------------


def chart_inputs(
    loaded: LoadedExport, oof: pl.DataFrame, days: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    export = loaded.frame.select("date", "price")
    history = export.tail(max(CHART_MIN_DAYS, CHART_HORIZONS * days))
    targets = export.select("date", pl.col("date").shift(-days).alias("target_date"))
    recent = (
        oof.filter(pl.col("date") >= history["date"].min())
        .select("date", (pl.col("price") * pl.col("pred_return").exp()).alias("y_pred"))
        .join(targets, on="date", how="left")
        .drop_nulls("target_date")
    )
    return history, recent


# --- the step --------------------------------------------------------------------------------


def make_forecast(root: DataRoot, settings: Settings, horizon: str) -> Forecast:
    """Issue the horizon's forecast: pick the source, compute the point and the quantiles, then
    write the forecast, its fan chart and the log (the log is read first: a log that cannot be
    read stops the step before anything is written)."""
    chosen = forecast_source(root, horizon)
    loaded = load_export(root, settings, horizon)
    pred_return = family_pred_return(
        root, settings, horizon, chosen.family, chosen.model_dir, loaded
    )
    spec = settings.interval_spec()
    oof, stored = family_predictions(root, horizon, chosen.family, loaded.data, spec)
    last = loaded.data.rows - 1
    quantiles = forecast_quantiles(oof, loaded.data, last, pred_return, spec)
    frame = pl.DataFrame(
        [forecast_row(horizon, chosen, loaded, pred_return, quantiles)], schema=FORECAST_SCHEMA
    )
    row = frame.row(0, named=True)
    history, recent = chart_inputs(loaded, oof if stored else oof.clear(), horizon_days(horizon))
    title = textwrap.fill(f"{settings.target_symbol} {horizon} forecast: {chosen.label}", 110)
    chart = forecast_chart(history, recent, row, title)
    log_path = root.forecast_log
    with log_lock(log_path):
        log = (
            updated_log(read_parquet(log_path, "forecast log"), frame, log_path)
            if log_path.exists()
            else frame
        )
        path = write_parquet(frame, root.forecast(horizon))
        chart_path = write_bytes(chart, root.forecast_plot(horizon))
        write_parquet(log, log_path)
    return Forecast(
        horizon, chosen.source, chosen.family, chosen.label, frame, path, chart_path, log_path
    )
