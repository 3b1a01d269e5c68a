"""Purged walk-forward folds (DESIGN §3) and the out-of-fold prediction contract.

Rows are the export's trading days in date order; row ``i``'s label is the price at row ``i + h``,
so its label window is ``[i, i + h]``. For a test block starting at row ``s`` (the fold's first
test origin):

- training candidates are the labelled rows ``i`` with ``i + h < s``: no training label window
  reaches the test origin (the purge);
- the early-stopping validation slice is the last ``validation_rows`` candidates, and the rows
  the model is fitted on are the candidates ``i`` with ``i + h < v`` (``v`` = first validation
  row): no fitted label window reaches into the validation slice either;
- test rows are the labelled rows of ``[s, s + refit_step)``; blocks follow each other from the
  first row dated on or after ``first_test_date`` to the last labelled row, so every labelled
  row from there on is predicted exactly once, by the model of its block (expanding window).

The first test date is a calendar date rather than a share of the rows, so that the fold
boundaries stay where they are when new days arrive (a new fold is appended once a year with the
default step). Data whose labelled rows end before it is an error that says so.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from cbi_pipeline.core.export import PRICE_COL, feature_columns
from cbi_pipeline.core.metrics import mape
from cbi_pipeline.core.progress import LineBatch, Progress
from cbi_pipeline.core.vocabulary import horizon_days, target_column

DEFAULT_FIRST_TEST_DATE = dt.date(2010, 1, 4)
PREDICTION_COLUMNS = (
    "date",
    "horizon",
    "family",
    "fold",
    "price",
    "y_true",
    "y_pred",
    "pred_return",
    "market_regime",
)


class WalkForwardError(ValueError):
    """The data cannot be split as asked (too short, unsorted, no test rows); says why."""


@dataclass(frozen=True)
class WalkForwardSpec:
    """How to split one horizon's rows into purged, expanding-window folds.

    horizon_days: label length h in trading days (rows).
    first_test_date: the first test block starts at the first row dated on or after it.
    refit_step: test block length in trading days; one refit per block (252 = yearly).
    validation_rows: early-stopping slice taken from the end of each fold's training rows.
    min_train_rows: the fewest fitted rows a fold may have; the first fold is checked against it.
    """

    horizon_days: int
    first_test_date: dt.date = DEFAULT_FIRST_TEST_DATE
    refit_step: int = 252
    validation_rows: int = 252
    min_train_rows: int = 504

    def __post_init__(self) -> None:
        for name in ("horizon_days", "refit_step", "validation_rows", "min_train_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise WalkForwardError(
                    f"WalkForwardSpec.{name} must be an integer >= 1, got {value!r}"
                )


@dataclass(frozen=True, eq=False)
class Fold:
    """Row indices (into the export, ascending) of one fold's three roles."""

    index: int
    test_origin: int
    fit_rows: np.ndarray
    validation_rows: np.ndarray
    test_rows: np.ndarray


def _as_days(dates: Sequence[dt.date] | np.ndarray | pl.Series) -> np.ndarray:
    days = np.asarray(
        dates.to_numpy() if isinstance(dates, pl.Series) else dates, dtype="datetime64[D]"
    )
    if days.ndim != 1:
        raise WalkForwardError(f"dates must be one-dimensional, got shape {days.shape}")
    if np.isnat(days).any():
        raise WalkForwardError(
            f"dates contain nulls at rows {np.flatnonzero(np.isnat(days))[:5].tolist()}"
        )
    bad = np.flatnonzero(np.diff(days) <= np.timedelta64(0, "D"))
    if bad.size:
        i = int(bad[0])
        raise WalkForwardError(
            f"dates must be strictly increasing: row {i + 1} ({days[i + 1]}) follows row {i} ({days[i]})"
        )
    return days


def walk_forward(
    dates: Sequence[dt.date] | np.ndarray | pl.Series, labelled: np.ndarray, spec: WalkForwardSpec
) -> Iterator[Fold]:
    """Yield the purged folds in time order (see the module docstring for the rules)."""
    days = _as_days(dates)
    labelled = np.asarray(labelled, dtype=bool)
    if labelled.shape != days.shape:
        raise WalkForwardError(f"{labelled.shape[0]} label flags for {days.shape[0]} dates")
    lab = np.flatnonzero(labelled)
    if lab.size == 0:
        raise WalkForwardError("no labelled rows: every target is null")
    h, step = spec.horizon_days, spec.refit_step
    first = int(np.searchsorted(days, np.datetime64(spec.first_test_date, "D")))
    last = int(lab[-1])
    if first > last:
        raise WalkForwardError(
            f"no labelled rows on or after first_test_date {spec.first_test_date}: the labelled "
            f"rows end at {days[last]} (the last {h} rows have no {h}-day target yet) and the data "
            f"ends at {days[-1]}; set an earlier first test date (CBI_FIRST_TEST_DATE or "
            "--first-test-date)"
        )
    index = 0
    for start in range(first, last + 1, step):
        test = lab[(lab >= start) & (lab < start + step)]
        if test.size == 0:
            continue
        candidates = lab[lab + h < start]
        if candidates.size <= spec.validation_rows:
            raise WalkForwardError(
                f"fold {index} (test from {days[start]}): {candidates.size} labelled rows end "
                f"their {h}-day label before the test origin, not more than validation_rows="
                f"{spec.validation_rows}; move first_test_date later or shrink validation_rows"
            )
        validation = candidates[-spec.validation_rows :]
        fit = candidates[candidates + h < validation[0]]
        if fit.size < spec.min_train_rows:
            raise WalkForwardError(
                f"fold {index} (test from {days[start]}): {fit.size} fit rows before "
                f"{days[validation[0]]} (after the validation slice of {validation.size} rows and "
                f"the {h}-row purge), fewer than min_train_rows={spec.min_train_rows}; move "
                "first_test_date later or lower min_train_rows"
            )
        yield Fold(index, start, fit, validation, test)
        index += 1


def plan_folds(
    dates: Sequence[dt.date] | np.ndarray | pl.Series, labelled: np.ndarray, spec: WalkForwardSpec
) -> list[Fold]:
    return list(walk_forward(dates, labelled, spec))


@dataclass(frozen=True, eq=False)
class TrainingData:
    """One horizon's export as arrays: the label is the h-step log return log(target / price)."""

    horizon: str
    horizon_days: int
    dates: np.ndarray
    price: np.ndarray
    target: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    regime: np.ndarray
    features: tuple[str, ...]
    X: np.ndarray
    labelled: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.dates.shape[0])


def _bad_rows(mask: np.ndarray, days: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(f"{r} ({days[r]})" for r in rows[:5])
    return f"{rows.size} rows, e.g. {shown}"


def training_data(export: pl.DataFrame, horizon: str, source: str = "export") -> TrainingData:
    """Validate an export and turn it into arrays (features as float32, NaN where missing)."""
    h = horizon_days(horizon)
    target_col = target_column(horizon)
    required = ("date", PRICE_COL, "market_regime", "training_weight", target_col)
    missing = [c for c in required if c not in export.columns]
    if missing:
        raise WalkForwardError(f"{source}: missing column(s) {missing}; expected {list(required)}")
    features = tuple(feature_columns(export))
    if not features:
        raise WalkForwardError(f"{source}: no feature columns")
    days = _as_days(export["date"])
    price = export[PRICE_COL].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    bad = ~(np.isfinite(price) & (price > 0))
    if bad.any():
        raise WalkForwardError(
            f"{source}: column {PRICE_COL!r} not positive/finite at {_bad_rows(bad, days)}"
        )
    target = export[target_col].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    known = ~np.isnan(target)
    bad = known & ~(np.isfinite(target) & (target > 0))
    if bad.any():
        raise WalkForwardError(
            f"{source}: column {target_col!r} not positive/finite at {_bad_rows(bad, days)}"
        )
    weight = export["training_weight"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    bad = ~(np.isfinite(weight) & (weight > 0))
    if bad.any():
        raise WalkForwardError(
            f"{source}: column 'training_weight' not positive/finite at {_bad_rows(bad, days)}"
        )
    regime = export["market_regime"].to_numpy()
    if export["market_regime"].null_count():
        raise WalkForwardError(
            f"{source}: column 'market_regime' is null at {_bad_rows(export['market_regime'].is_null().to_numpy(), days)}"
        )
    X = export.select(features).cast(pl.Float32).fill_null(float("nan")).to_numpy()
    if np.isinf(X).any():
        col = int(np.flatnonzero(np.isinf(X).any(axis=0))[0])
        raise WalkForwardError(
            f"{source}: feature {features[col]!r} is infinite at {_bad_rows(np.isinf(X[:, col]), days)}"
        )
    label = np.full(price.shape, np.nan)
    label[known] = np.log(target[known] / price[known])
    return TrainingData(
        horizon=horizon,
        horizon_days=h,
        dates=days,
        price=price,
        target=target,
        label=label,
        weight=weight,
        regime=regime,
        features=features,
        X=np.ascontiguousarray(X),
        labelled=known,
    )


def normalised_weights(weight: np.ndarray) -> np.ndarray:
    """Regime weights scaled to mean 1 over the rows given (ratios matter, not scale)."""
    return weight / weight.mean()


def date_range(data: TrainingData, rows: np.ndarray) -> list[str]:
    return [str(data.dates[rows[0]]), str(data.dates[rows[-1]])] if rows.size else []


@dataclass(frozen=True)
class FoldFit:
    """What a family returns for one fold: predicted log returns for the test rows, and facts."""

    pred_return: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None  # the fold's time when it was spent elsewhere (fold cache)


@dataclass(frozen=True)
class FoldRecord:
    """One fold's roles as date ranges and row counts, its test MAPE and the family's facts."""

    fold: int
    fit: list[str]
    validation: list[str]
    test: list[str]
    fit_rows: int
    validation_rows: int
    test_rows: int
    val_mape: float
    seconds: float
    info: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "fit": self.fit,
            "validation": self.validation,
            "test": self.test,
            "fit_rows": self.fit_rows,
            "validation_rows": self.validation_rows,
            "test_rows": self.test_rows,
            "val_mape": self.val_mape,
            "seconds": self.seconds,
            **self.info,
        }


@dataclass(frozen=True, eq=False)
class WalkForwardResult:
    family: str
    predictions: pl.DataFrame
    folds: tuple[FoldRecord, ...]

    @property
    def val_mape(self) -> float:
        return mape(self.predictions["y_true"], self.predictions["y_pred"])

    @property
    def random_walk_mape(self) -> float:
        return mape(self.predictions["y_true"], self.predictions["price"])


def prediction_frame(
    data: TrainingData, rows: np.ndarray, fold: np.ndarray, pred_return: np.ndarray, family: str
) -> pl.DataFrame:
    """The out-of-fold prediction contract (DESIGN §2) for the given rows."""
    price = data.price[rows]
    return pl.DataFrame(
        {
            "date": data.dates[rows],
            "horizon": [data.horizon] * rows.size,
            "family": [family] * rows.size,
            "fold": fold.astype(np.int32),
            "price": price,
            "y_true": data.target[rows],
            "y_pred": price * np.exp(pred_return),
            "pred_return": pred_return.astype(np.float64),
            "market_regime": data.regime[rows],
        },
        schema={
            "date": pl.Date,
            "horizon": pl.String,
            "family": pl.String,
            "fold": pl.Int32,
            "price": pl.Float64,
            "y_true": pl.Float64,
            "y_pred": pl.Float64,
            "pred_return": pl.Float64,
            "market_regime": pl.String,
        },
    )


FoldPredictor = Callable[[TrainingData, Fold], FoldFit]


def run_walk_forward(
    data: TrainingData,
    folds: Sequence[Fold],
    family: str,
    predict: FoldPredictor,
    progress: Progress | None = None,
) -> WalkForwardResult:
    """Fit and predict each fold in order; collect the out-of-fold predictions and fold records."""
    frames, records = [], []
    with LineBatch(progress) as lines:
        for fold in folds:
            frame, record = _run_fold(data, fold, len(folds), family, predict, lines)
            frames.append(frame)
            records.append(record)
    if not frames:
        raise WalkForwardError(f"{family}: no folds to run")
    return WalkForwardResult(family, pl.concat(frames), tuple(records))


def _run_fold(
    data: TrainingData,
    fold: Fold,
    n_folds: int,
    family: str,
    predict: FoldPredictor,
    lines: LineBatch,
) -> tuple[pl.DataFrame, FoldRecord]:
    start = time.perf_counter()
    fit = predict(data, fold)
    if fit.pred_return.shape != fold.test_rows.shape or not np.isfinite(fit.pred_return).all():
        raise WalkForwardError(
            f"{family} fold {fold.index}: expected {fold.test_rows.size} finite predicted "
            f"returns, got shape {fit.pred_return.shape} with "
            f"{int((~np.isfinite(fit.pred_return)).sum())} non-finite"
        )
    frame = prediction_frame(
        data, fold.test_rows, np.full(fold.test_rows.size, fold.index), fit.pred_return, family
    )
    seconds = time.perf_counter() - start if fit.seconds is None else fit.seconds
    record = FoldRecord(
        fold=fold.index,
        fit=date_range(data, fold.fit_rows),
        validation=date_range(data, fold.validation_rows),
        test=date_range(data, fold.test_rows),
        fit_rows=int(fold.fit_rows.size),
        validation_rows=int(fold.validation_rows.size),
        test_rows=int(fold.test_rows.size),
        val_mape=mape(frame["y_true"], frame["y_pred"]),
        seconds=round(seconds, 3),
        info=fit.info,
    )
    extra = "".join(f", {k} {v}" for k, v in fit.info.items() if not isinstance(v, list | tuple))
    lines.add(
        f"{data.horizon} {family} fold {fold.index + 1}/{n_folds}: test "
        f"{record.test[0]}..{record.test[1]} ({record.test_rows} rows), fit "
        f"{record.fit[0]}..{record.fit[1]} ({record.fit_rows} rows), validation "
        f"{record.validation[0]}..{record.validation[1]}{extra}: MAPE "
        f"{record.val_mape:.3f}% in {seconds:.2f}s"
    )
    return frame, record


def spec_as_dict(spec: WalkForwardSpec) -> dict[str, Any]:
    return {
        "horizon_days": spec.horizon_days,
        "first_test_date": spec.first_test_date.isoformat(),
        "refit_step": spec.refit_step,
        "validation_rows": spec.validation_rows,
        "min_train_rows": spec.min_train_rows,
    }
