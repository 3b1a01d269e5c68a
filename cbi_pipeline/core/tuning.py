"""Hyperparameter tuning on the rows before the first test date only ("fewer but smarter trials").

The objective is the project's walk-forward error (MAPE over the test rows of every fold, pooled)
on *tuning folds* that never reach the test period:

- the tuning rows are the export's first rows ``i`` with ``i + h < F``, where ``F`` is the first
  row dated on or after ``first_test_date``: each of them is dated before the first test date and
  so is the end of its label window (the price at row ``i + h``);
- the tuning data is that prefix cut off as a new ``TrainingData`` (``prefix_data``), so a
  predictor cannot read a later row even by mistake;
- on the prefix the project's own purged walk-forward (``plan_folds``) runs with the first test
  date moved back to ``blocks`` refit steps before its end: the last ``blocks`` refit blocks before
  the real first test date are the tuning test blocks, with the same purges, validation slice and
  expanding window as training.

The study is Optuna's multivariate TPE sampler with a fixed seed (a quarter of the trials, at most
10, drawn at random first) and a median pruner: after each fold the trial reports its pooled MAPE
so far (comparable across trials at the same fold, and after the last fold equal to the
objective); a trial worse than the median of the earlier trials at that fold stops there. The
default parameters are scored on the same folds (the baseline) outside the study; tuned
parameters are only proposed for training when the best trial beats them (``TuningResult.params``).

``SEARCH_SPACES`` lists, per family, the keys tuned and their ranges; they are all keys that the
training path honours: LightGBM and XGBoost read them through ``TreeSpec.hyper`` ->
``library_params`` (every non-control key goes to the library), the networks through
``neural_spec`` (``NeuralSpec`` fields). The number of trees and epochs stays early stopping's
choice on each fold's validation slice, as in training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cbi_pipeline.core.metrics import mape
from cbi_pipeline.core.models.neural.spec import NeuralSpec
from cbi_pipeline.core.models.trees import TreeSpec, fit_tree_model
from cbi_pipeline.core.vocabulary import GRU, LIGHTGBM, LSTM, MODEL_FAMILIES, XGBOOST
from cbi_pipeline.core.walkforward import (
    Fold,
    FoldFit,
    FoldPredictor,
    TrainingData,
    WalkForwardError,
    WalkForwardSpec,
    date_range,
    plan_folds,
)

DEFAULT_BLOCKS = 3
PRUNER_STARTUP_TRIALS = 5
METRIC = "MAPE (%) of the predicted prices, pooled over the tuning folds' test rows"


class TuningError(ValueError):
    """Tuning cannot run as asked (unknown family, no trials, too few rows); says why."""


@dataclass(frozen=True)
class Dimension:
    """One tuned hyperparameter: ``low``..``high``, on a log scale when ``log``, integers when
    ``integer``."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def as_dict(self) -> dict[str, Any]:
        kind = "int" if self.integer else "float"
        return {"type": kind, "low": self.low, "high": self.high, "log": self.log}


_NEURAL_SPACE = {
    "hidden_size": Dimension(16, 128, log=True, integer=True),
    "num_layers": Dimension(1, 2, integer=True),
    "dropout": Dimension(0.0, 0.4),
    "learning_rate": Dimension(3e-4, 1e-2, log=True),
}
# Defaults (get_config_for_model) for comparison: LightGBM 31 leaves, depth 6, lr 0.05 (and the
# library's min_child_samples 20, feature_fraction 1, lambda_l2 0); XGBoost depth 8, lr 0.03 (and
# min_child_weight 1, subsample 1, colsample_bytree 1, reg_lambda 1); networks hidden 32, 1 layer,
# dropout 0, lr 1e-3.
SEARCH_SPACES: dict[str, dict[str, Dimension]] = {
    LIGHTGBM: {
        "num_leaves": Dimension(7, 63, log=True, integer=True),
        "max_depth": Dimension(2, 8, integer=True),
        "learning_rate": Dimension(0.01, 0.2, log=True),
        "min_child_samples": Dimension(10, 300, log=True, integer=True),
        "feature_fraction": Dimension(0.4, 1.0),
        "lambda_l2": Dimension(1e-3, 30.0, log=True),
    },
    XGBOOST: {
        "max_depth": Dimension(2, 8, integer=True),
        "learning_rate": Dimension(0.01, 0.2, log=True),
        "min_child_weight": Dimension(1.0, 100.0, log=True),
        "subsample": Dimension(0.5, 1.0),
        "colsample_bytree": Dimension(0.4, 1.0),
        "reg_lambda": Dimension(1e-2, 30.0, log=True),
    },
    LSTM: _NEURAL_SPACE,
    GRU: _NEURAL_SPACE,
}


def search_space(family: str) -> dict[str, Dimension]:
    if family not in SEARCH_SPACES:
        raise TuningError(
            f"unknown family {family!r} to tune; expected one of {', '.join(MODEL_FAMILIES)}"
        )
    return SEARCH_SPACES[family]


def space_as_dict(family: str) -> dict[str, dict[str, Any]]:
    return {name: d.as_dict() for name, d in search_space(family).items()}


def check_params(family: str, params: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Tuned parameters as stored: only the family's searched keys, each a number in its range."""
    space = search_space(family)
    unknown = sorted(set(params) - set(space))
    if unknown:
        raise TuningError(
            f"{source}: unknown {family} parameter(s) {unknown}; expected some of {sorted(space)}"
        )
    checked: dict[str, Any] = {}
    for name, value in params.items():
        dim = space[name]
        kind_ok = isinstance(value, int) if dim.integer else isinstance(value, int | float)
        if isinstance(value, bool) or not kind_ok or not math.isfinite(value):
            kind = "an integer" if dim.integer else "a number"
            raise TuningError(f"{source}: {family} parameter {name} = {value!r} is not {kind}")
        if not dim.low <= value <= dim.high:
            raise TuningError(
                f"{source}: {family} parameter {name} = {value!r} is outside the search range "
                f"[{dim.low}, {dim.high}]"
            )
        checked[name] = value
    return checked


@dataclass(frozen=True)
class TuningSpec:
    """What to tune: the family, the number of trials, the sampler's seed, the tuning blocks."""

    family: str
    trials: int
    seed: int = 42
    blocks: int = DEFAULT_BLOCKS

    def __post_init__(self) -> None:
        search_space(self.family)
        for name in ("trials", "blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TuningError(f"{name} must be an integer >= 1, got {value!r}")

    @property
    def startup_trials(self) -> int:
        """Trials the TPE sampler draws at random before it models the results."""
        return max(1, min(10, self.trials // 4))


# --- the tuning rows and folds -------------------------------------------------------------------


def tuning_rows(dates: np.ndarray, first_test_date: dt.date, horizon_days: int) -> tuple[int, int]:
    """(rows, F): F is the first row dated on or after ``first_test_date``; the tuning rows are the
    first ``rows = max(0, F - h)`` rows, those whose label window ``[i, i + h]`` ends before F."""
    days = np.asarray(dates, dtype="datetime64[D]")
    first = int(np.searchsorted(days, np.datetime64(first_test_date, "D")))
    return max(0, first - horizon_days), first


def rows_needed(spec: WalkForwardSpec, blocks: int) -> int:
    """Rows before the first test date that ``blocks`` tuning blocks need (no label holes):
    the blocks, the fewest fit rows, the validation slice and three h-row purges (before the
    validation slice, before the tuning test origin and before the real first test date)."""
    return (
        blocks * spec.refit_step
        + spec.min_train_rows
        + spec.validation_rows
        + 3 * spec.horizon_days
    )


@dataclass(frozen=True, eq=False)
class TuningPlan:
    """The tuning rows (a prefix of the export) and the purged folds on them.

    rows: the prefix length; first_test_row: F (the real first test row); spec: the tuning
    walk-forward (the real one with the first test date moved back); folds: its folds, whose row
    indices are the export's own (the prefix starts at row 0).
    """

    rows: int
    first_test_row: int
    first_test_date: dt.date
    blocks: int
    spec: WalkForwardSpec
    folds: tuple[Fold, ...]


def tuning_plan(
    dates: np.ndarray, labelled: np.ndarray, spec: WalkForwardSpec, blocks: int = DEFAULT_BLOCKS
) -> TuningPlan:
    """The tuning folds for an export's dates and label flags under the real walk-forward."""
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise TuningError(f"blocks must be an integer >= 1, got {blocks!r}")
    days = np.asarray(dates, dtype="datetime64[D]")
    h = spec.horizon_days
    rows, first = tuning_rows(days, spec.first_test_date, h)
    need = rows_needed(spec, blocks)
    if first < need:
        since = f" (from {days[0]})" if days.size else ""
        raise TuningError(
            f"no tuning folds: tuning needs {need} rows before the first test date "
            f"{spec.first_test_date} ({blocks} test blocks of refit_step={spec.refit_step} rows, "
            f"min_train_rows={spec.min_train_rows}, validation_rows={spec.validation_rows} and "
            f"three {h}-row purges), the data has {first}{since}; move first_test_date later or "
            "tune with fewer blocks (--blocks)"
        )
    start = rows - blocks * spec.refit_step
    tspec = dataclasses.replace(spec, first_test_date=days[start].astype(dt.date))
    try:
        folds = plan_folds(days[:rows], np.asarray(labelled, dtype=bool)[:rows], tspec)
    except WalkForwardError as exc:
        raise TuningError(
            f"no tuning folds on the {rows} rows before {spec.first_test_date}: {exc}"
        ) from exc
    return TuningPlan(rows, first, spec.first_test_date, blocks, tspec, tuple(folds))


def prefix_data(data: TrainingData, rows: int) -> TrainingData:
    """The first ``rows`` rows as their own ``TrainingData``: nothing after them is reachable."""
    return dataclasses.replace(
        data,
        dates=data.dates[:rows],
        price=data.price[:rows],
        target=data.target[:rows],
        label=data.label[:rows],
        weight=data.weight[:rows],
        regime=data.regime[:rows],
        X=np.ascontiguousarray(data.X[:rows]),
        labelled=data.labelled[:rows],
    )


def rows_sha256(data: TrainingData, rows: int) -> str:
    """A hash of everything tuning reads from the first ``rows`` rows (features named, values as
    validated): equal hashes mean tuning on them again would see the same data."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(data.features).encode("utf-8"))
    for array in (data.dates, data.price, data.target, data.weight, data.X):
        digest.update(np.ascontiguousarray(array[:rows]).tobytes())
    digest.update("\x1f".join(str(r) for r in data.regime[:rows]).encode("utf-8"))
    return digest.hexdigest()


# --- the objective -------------------------------------------------------------------------------

Report = Callable[[int, float, float], None]


def walk_forward_error(
    data: TrainingData, folds: Sequence[Fold], predict: FoldPredictor, report: Report | None = None
) -> tuple[float, list[float]]:
    """Pooled MAPE over every fold's test rows, and each fold's MAPE. After fold k, ``report(k,
    pooled MAPE so far, fold MAPE)`` (it may raise to stop, e.g. Optuna's ``TrialPruned``)."""
    truth: list[np.ndarray] = []
    predicted: list[np.ndarray] = []
    per_fold: list[float] = []
    for k, fold in enumerate(folds):
        rows = fold.test_rows
        pred_return = np.asarray(predict(data, fold).pred_return, dtype=np.float64)
        if pred_return.shape != rows.shape or not np.isfinite(pred_return).all():
            raise TuningError(
                f"tuning fold {fold.index}: expected {rows.size} finite predicted returns, got "
                f"shape {pred_return.shape} with {int((~np.isfinite(pred_return)).sum())} "
                "non-finite"
            )
        truth.append(data.target[rows])
        predicted.append(data.price[rows] * np.exp(pred_return))
        per_fold.append(mape(truth[-1], predicted[-1]))
        if report is not None:
            report(k, mape(np.concatenate(truth), np.concatenate(predicted)), per_fold[-1])
    if not per_fold:
        raise TuningError("no tuning folds to score")
    return mape(np.concatenate(truth), np.concatenate(predicted)), per_fold


def tree_predictor(spec: TreeSpec) -> FoldPredictor:
    """One fold as training fits it (``fit_tree_model``: selection, weights, early stopping)."""

    def predict(d: TrainingData, fold: Fold) -> FoldFit:
        model = fit_tree_model(d, spec, fold.fit_rows, fold.validation_rows)
        return FoldFit(model.predict(d.X[fold.test_rows]), {"trees": model.trees})

    return predict


def neural_predictor(spec: NeuralSpec) -> FoldPredictor:
    """One fold as ``walk_forward_neural`` fits it (warm-started from the previous fold if the
    spec says so)."""
    # imports torch: only when a network is tuned
    from cbi_pipeline.core.models.neural.fit import fit_neural_model

    previous: list[Any] = []

    def predict(d: TrainingData, fold: Fold) -> FoldFit:
        init = previous[-1] if spec.warm_start and previous and fold.index > 0 else None
        model, history = fit_neural_model(d, spec, fold.fit_rows, fold.validation_rows, init=init)
        previous[:] = [model]
        return FoldFit(model.predict(d, fold.test_rows), {"best_epoch": history.best_epoch})

    return predict


# --- the study -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialRecord:
    """One scored parameter set: ``value`` is the pooled MAPE (None when pruned)."""

    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    fold_values: list[float]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class TuningResult:
    spec: TuningSpec
    plan: TuningPlan
    baseline: TrialRecord
    trials: tuple[TrialRecord, ...]
    best: TrialRecord
    seconds: float
    sampler: dict[str, Any]
    pruner: dict[str, Any]

    @property
    def improved(self) -> bool:
        assert self.best.value is not None and self.baseline.value is not None
        return self.best.value < self.baseline.value

    @property
    def params(self) -> dict[str, Any]:
        """What training should overlay: the best trial's parameters if they beat the defaults
        on the tuning folds, else none (the defaults stay)."""
        return dict(self.best.params) if self.improved else {}


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[Any]:
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield optuna
    finally:
        optuna.logging.set_verbosity(level)


def tune(
    data: TrainingData,
    wf_spec: WalkForwardSpec,
    spec: TuningSpec,
    build: Callable[[Mapping[str, Any]], FoldPredictor],
    progress: Callable[[str], None] | None = None,
) -> TuningResult:
    """Score the defaults (``build({})``) and ``spec.trials`` TPE trials (``build(params)``) on
    the tuning folds of ``data``; only the tuning prefix of ``data`` is handed to a predictor."""
    start = time.perf_counter()
    space = search_space(spec.family)
    plan = tuning_plan(data.dates, data.labelled, wf_spec, spec.blocks)
    tdata = prefix_data(data, plan.rows)
    last = len(plan.folds) - 1

    t0 = time.perf_counter()
    value, fold_values = walk_forward_error(tdata, plan.folds, build({}))
    baseline = TrialRecord(
        -1, "baseline", {}, value, fold_values, round(time.perf_counter() - t0, 3)
    )
    if progress is not None:
        progress(
            f"{data.horizon} {spec.family} defaults on {len(plan.folds)} tuning folds "
            f"(test {date_range(tdata, plan.folds[0].test_rows)[0]}.."
            f"{date_range(tdata, plan.folds[-1].test_rows)[1]}): MAPE {value:.4f}% "
            f"in {baseline.seconds:.1f}s"
        )

    with _quiet_optuna() as optuna:
        sampler = optuna.samplers.TPESampler(
            seed=spec.seed, n_startup_trials=spec.startup_trials, multivariate=True
        )
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=0
        )
        study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)

        def objective(trial: Any) -> float:
            params = {
                name: trial.suggest_int(name, int(d.low), int(d.high), log=d.log)
                if d.integer
                else trial.suggest_float(name, d.low, d.high, log=d.log)
                for name, d in space.items()
            }
            seen: list[float] = []
            trial.set_user_attr("fold_values", seen)
            begun = time.perf_counter()

            def report(k: int, pooled: float, fold_value: float) -> None:
                seen.append(fold_value)
                trial.set_user_attr("fold_values", list(seen))
                trial.set_user_attr("seconds", round(time.perf_counter() - begun, 3))
                trial.report(pooled, k)
                if k < last and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after tuning fold {k}")

            return walk_forward_error(tdata, plan.folds, build(params), report)[0]

        def announce(study: Any, trial: Any) -> None:
            if progress is None:
                return
            done = trial.state == optuna.trial.TrialState.COMPLETE
            what = (
                f"MAPE {trial.value:.4f}%"
                if done
                else f"pruned after fold {len(trial.user_attrs['fold_values']) - 1}"
            )
            progress(
                f"{data.horizon} {spec.family} trial {trial.number + 1}/{spec.trials}: {what} in "
                f"{trial.user_attrs.get('seconds', 0.0):.1f}s, best {study.best_value:.4f}% "
                f"(defaults {baseline.value:.4f}%); {trial.params}"
            )

        study.optimize(objective, n_trials=spec.trials, callbacks=[announce])
        records = tuple(
            TrialRecord(
                t.number,
                t.state.name.lower(),
                dict(t.params),
                None if t.state != optuna.trial.TrialState.COMPLETE else float(t.value),
                list(t.user_attrs.get("fold_values", [])),
                float(t.user_attrs.get("seconds", 0.0)),
            )
            for t in study.trials
        )
        best = records[study.best_trial.number]
    return TuningResult(
        spec,
        plan,
        baseline,
        records,
        best,
        round(time.perf_counter() - start, 3),
        sampler={
            "name": "TPESampler",
            "seed": spec.seed,
            "n_startup_trials": spec.startup_trials,
            "multivariate": True,
        },
        pruner={
            "name": "MedianPruner",
            "n_startup_trials": PRUNER_STARTUP_TRIALS,
            "n_warmup_steps": 0,
            "reports": "pooled MAPE so far after each tuning fold",
        },
    )
