"""The tree families and ETS as the fold cache drives them (``core.foldcache.Learner``).

Each learner says which rows a fit reads, fits into a stored form (native model bytes plus JSON),
rebuilds the model from that form and predicts with it:

- trees read the features, labels and weights of their fit and validation rows; predicting reads
  the test rows' features. Stored: the kept trees in the library's native format (LightGBM text,
  XGBoost JSON) and the selected columns.
- ETS reads the log prices up to the fold's first test origin; predicting runs the states
  forward over the prices up to the last test row. Stored: the fitted parameters (JSON).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cbi_pipeline.core.fingerprint import code_fingerprint
from cbi_pipeline.core.foldcache import FoldCache, FoldStore, Reads, Stored
from cbi_pipeline.core.models.ets import EtsFit, ets_fold_fit, ets_predict
from cbi_pipeline.core.models.trees import (
    TreeModel,
    TreeSpec,
    TreeTrainingError,
    fit_tree_model,
    library_params,
)
from cbi_pipeline.core.vocabulary import ETS
from cbi_pipeline.core.walkforward import Fold, TrainingData, WalkForwardResult

TREE_CODE = (
    "cbi_pipeline.core.models.trees",
    "cbi_pipeline.core.models.learners",
    "cbi_pipeline.core.walkforward",
    "cbi_pipeline.core.foldcache",
)
TREE_LIBRARIES = ("lightgbm", "xgboost", "numpy")
ETS_CODE = (
    "cbi_pipeline.core.models.ets",
    "cbi_pipeline.core.models.learners",
    "cbi_pipeline.core.walkforward",
    "cbi_pipeline.core.foldcache",
)
ETS_LIBRARIES = ("statsforecast", "numpy")


def _validation(fold: Fold) -> np.ndarray | None:
    return fold.validation_rows if fold.validation_rows.size else None


def _fit_and_validation(fold: Fold) -> np.ndarray:
    return np.union1d(fold.fit_rows, fold.validation_rows).astype(np.int64)


def load_booster(family: str, blob: bytes) -> Any:
    """A LightGBM or XGBoost booster from its native model bytes."""
    if family == "lightgbm":
        import lightgbm as lgb

        return lgb.Booster(model_str=blob.decode("utf-8"))
    if family == "xgboost":
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(blob))
        return booster
    raise TreeTrainingError(f"unknown tree family {family!r}")


@dataclass(frozen=True)
class TreeLearner:
    """LightGBM or XGBoost: ``spec.threads`` folds fit at once, each on one thread."""

    spec: TreeSpec

    chained = False

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def workers(self) -> int:
        return self.spec.threads

    def fingerprint(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "library": library_params(self.spec),
            "rounds": self.spec.rounds,
            "patience": self.spec.patience,
            "max_features": self.spec.max_features,
            "max_bin": self.spec.max_bin,
        }

    def fit_reads(self, data: TrainingData, fold: Fold) -> Reads:
        rows = _fit_and_validation(fold)
        return Reads(features=rows, labels=rows)

    def predict_reads(self, data: TrainingData, rows: np.ndarray) -> Reads:
        return Reads(features=np.asarray(rows, dtype=np.int64))

    def fit(
        self, data: TrainingData, fold: Fold, budget: int | None, previous: Any, label: str
    ) -> Stored:
        model = fit_tree_model(data, self.spec, fold.fit_rows, _validation(fold), trees=budget)
        meta = {
            "features": list(model.features),
            "columns": model.columns.tolist(),
            "trees": model.trees,
            "rounds": model.rounds,
            "best_score": model.best_score,
        }
        info: dict[str, Any] = {
            "trees": model.trees,
            "rounds": model.rounds,
            "features": len(model.features),
            "validation_score": None if model.best_score is None else round(model.best_score, 8),
        }
        return Stored(meta, model.to_bytes(), info)

    def load(self, stored: Stored) -> TreeModel:
        meta = stored.meta
        return TreeModel(
            self.family,
            load_booster(self.family, stored.blob),
            tuple(str(f) for f in meta["features"]),
            np.asarray(meta["columns"], dtype=np.int64),
            int(meta["trees"]),
            int(meta["rounds"]),
            None if meta["best_score"] is None else float(meta["best_score"]),
        )

    def predict(self, model: TreeModel, data: TrainingData, rows: np.ndarray) -> np.ndarray:
        return model.predict(data.X[rows])


@dataclass(frozen=True)
class EtsLearner:
    """AutoETS per fold (``core.models.ets``): parameters on the log prices up to the origin."""

    family = ETS
    chained = False
    workers = 1  # statsforecast's fit holds the GIL; a fold takes about 0.1 s

    def fingerprint(self) -> dict[str, Any]:
        return {"family": ETS}

    def fit_reads(self, data: TrainingData, fold: Fold) -> Reads:
        return Reads(prices=np.arange(fold.test_origin + 1, dtype=np.int64))

    def predict_reads(self, data: TrainingData, rows: np.ndarray) -> Reads:
        return Reads(prices=np.arange(int(np.max(rows)) + 1, dtype=np.int64))

    def fit(
        self, data: TrainingData, fold: Fold, budget: int | None, previous: Any, label: str
    ) -> Stored:
        fit, info = ets_fold_fit(data, fold)
        return Stored(dataclasses.asdict(fit), b"", info)

    def load(self, stored: Stored) -> EtsFit:
        return EtsFit(**stored.meta)

    def predict(self, model: EtsFit, data: TrainingData, rows: np.ndarray) -> np.ndarray:
        return ets_predict(model, data, rows)


@dataclass(frozen=True, eq=False)
class TreeRun:
    """The walk-forward result, the final model fitted on every labelled row, and the cache's
    account (``core.foldcache.cache_summary``)."""

    result: WalkForwardResult
    final: TreeModel
    final_rows: np.ndarray
    cache: dict[str, Any]


def walk_forward_trees(
    data: TrainingData,
    folds: list[Fold],
    spec: TreeSpec,
    progress: Callable[[str], None] | None = None,
    store: FoldStore | None = None,
    walk_forward: dict[str, Any] | None = None,
) -> TreeRun:
    """Out-of-fold predictions of one tree family on every fold, then the final model with the
    last fold's number of trees; folds (and the final) unchanged since ``store`` kept them are
    reused."""
    cache = FoldCache(
        TreeLearner(spec),
        data,
        store,
        walk_forward or {},
        code_fingerprint(TREE_CODE, TREE_LIBRARIES),
        progress,
    )
    result, _ = cache.walk_forward(folds)
    final_rows = np.flatnonzero(data.labelled)
    final, _, note = cache.final(final_rows, int(result.folds[-1].info["trees"]), None)
    if progress is not None:
        progress(
            f"{data.horizon} {spec.family} final model: {final_rows.size} "
            f"labelled rows, {final.trees} trees (the last fold's choice), "
            f"{len(final.features)} features ({note.status}: {note.reason})"
        )
    return TreeRun(result, final, final_rows, cache.finish())


def walk_forward_ets(
    data: TrainingData,
    folds: list[Fold],
    progress: Callable[[str], None] | None = None,
    store: FoldStore | None = None,
    walk_forward: dict[str, Any] | None = None,
) -> tuple[WalkForwardResult, dict[str, Any]]:
    """The ETS baseline's folds through the fold cache; the result and the cache's account."""
    cache = FoldCache(
        EtsLearner(), data, store, walk_forward or {}, code_fingerprint(ETS_CODE, ETS_LIBRARIES)
    )
    result, _ = cache.walk_forward(folds)
    return result, cache.finish()
