"""The neural families on the fold cache (``core.foldcache``), and their walk-forward.

A network's fit reads the features of every row its input windows reach (each fit and validation
row and the ``sequence_length - 1`` rows before it) and the labels and weights of its fit and
validation rows; predicting reads the test rows' windows. Stored: the JSON config (architecture,
features, scaler) and the ``state_dict`` bytes (``files``), loaded back with ``weights_only``.
Folds fit in parallel threads when they are independent (no warm start) and need no random
numbers while training (no dropout), one torch thread each.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from cbi_pipeline.core.fingerprint import code_fingerprint
from cbi_pipeline.core.foldcache import FoldCache, FoldStore, Reads, Stored, window_rows
from cbi_pipeline.core.models.neural.files import NeuralModel, model_from_files
from cbi_pipeline.core.models.neural.fit import FitHistory, fit_neural_model, torch_runtime
from cbi_pipeline.core.models.neural.spec import NeuralSpec, resolve_device, spec_parameters
from cbi_pipeline.core.progress import Progress
from cbi_pipeline.core.walkforward import Fold, TrainingData, WalkForwardResult

NEURAL_CODE = (
    "cbi_pipeline.core.models.neural",
    "cbi_pipeline.core.models.trees",  # the feature selector
    "cbi_pipeline.core.walkforward",
    "cbi_pipeline.core.foldcache",
)
NEURAL_LIBRARIES = ("torch", "numpy")


def _rounded(values: tuple[float, ...] | list[float]) -> list[float]:
    return [round(v, 6) for v in values]


@dataclass(frozen=True)
class NeuralLearner:
    spec: NeuralSpec
    device: str
    max_workers: int = 1
    progress: Progress | None = None

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def chained(self) -> bool:
        return self.spec.warm_start

    @property
    def workers(self) -> int:
        independent = not self.spec.warm_start and self.spec.dropout == 0.0
        return self.max_workers if independent and self.device == "cpu" else 1

    def fingerprint(self) -> dict[str, Any]:
        return {**spec_parameters(self.spec), "device_used": self.device}

    def fit_reads(self, data: TrainingData, fold: Fold) -> Reads:
        rows = np.union1d(fold.fit_rows, fold.validation_rows).astype(np.int64)
        return Reads(features=window_rows(rows, self.spec.sequence_length), labels=rows)

    def predict_reads(self, data: TrainingData, rows: np.ndarray) -> Reads:
        return Reads(features=window_rows(rows, self.spec.sequence_length))

    def fit(
        self, data: TrainingData, fold: Fold, budget: int | None, previous: Any, label: str
    ) -> Stored:
        validation = fold.validation_rows if fold.validation_rows.size else None
        model, history = fit_neural_model(
            data,
            self.spec,
            fold.fit_rows,
            validation,
            epochs=budget,
            init=previous,
            progress=self.progress,
            label=label,
        )
        meta = {
            "config": model.config(),
            "device": model.device,
            "precision": model.precision,
            "history": {
                "train_loss": list(history.train_loss),
                "validation_loss": list(history.validation_loss),
                "best_epoch": history.best_epoch,
                "seconds": history.seconds,
            },
        }
        info: dict[str, Any] = {
            "epochs": history.epochs,
            "best_epoch": history.best_epoch,
            "features": len(model.features),
        }
        if validation is not None:
            info |= {
                "validation_score": round(history.validation_loss[history.best_epoch], 8),
                "warm_start": bool(self.spec.warm_start and fold.index > 0),
                "train_loss_curve": _rounded(history.train_loss),
                "validation_loss_curve": _rounded(history.validation_loss),
            }
        return Stored(meta, model.weights_bytes(), info)

    def load(self, stored: Stored) -> NeuralModel:
        model = model_from_files(stored.meta["config"], stored.blob, f"{self.family} fold cache")
        device = str(stored.meta["device"])
        model.module.to(device)
        return dataclasses.replace(model, device=device, precision=str(stored.meta["precision"]))

    def predict(self, model: NeuralModel, data: TrainingData, rows: np.ndarray) -> np.ndarray:
        return model.predict(data, rows)


def history_of(stored: Stored) -> FitHistory:
    h = stored.meta["history"]
    return FitHistory(
        tuple(float(v) for v in h["train_loss"]),
        tuple(float(v) for v in h["validation_loss"]),
        int(h["best_epoch"]),
        float(h["seconds"]),
    )


@dataclass(frozen=True, eq=False)
class NeuralRun:
    """The walk-forward result, each fold's model history, the final model and the cache's
    account (``core.foldcache.cache_summary``)."""

    result: WalkForwardResult
    histories: tuple[FitHistory, ...]
    final: NeuralModel
    final_history: FitHistory
    final_rows: np.ndarray
    device: str
    cache: dict[str, Any]


def walk_forward_neural(
    data: TrainingData,
    folds: list[Fold],
    spec: NeuralSpec,
    progress: Progress | None = None,
    store: FoldStore | None = None,
    walk_forward: dict[str, Any] | None = None,
    workers: int = 1,
) -> NeuralRun:
    """Out-of-fold predictions of one neural family on every fold, then the final model on every
    labelled row for the last fold's best epoch; folds (and the final) whose inputs did not
    change since they were stored in ``store`` are reused."""
    device = resolve_device(spec.device)
    learner = NeuralLearner(spec, device, workers, progress)
    cache = FoldCache(
        learner,
        data,
        store,
        walk_forward or {},
        code_fingerprint(NEURAL_CODE, NEURAL_LIBRARIES),
        progress,
    )
    with torch_runtime(spec, device):
        result, slots = cache.walk_forward(folds)
        histories = tuple(history_of(s.stored) for s in slots if s.stored is not None)
        final_rows = np.flatnonzero(data.labelled)
        epochs = histories[-1].best_epoch
        final, stored, note = cache.final(final_rows, epochs, slots[-1])
    if progress is not None:
        progress(
            f"{data.horizon} {spec.family} final model: {final_rows.size} "
            f"labelled rows, {epochs} epochs (the last fold's best epoch), "
            f"{len(final.features)} features, on {device} ({final.precision}; {note.status}: "
            f"{note.reason})"
        )
    summary = cache.finish()
    return NeuralRun(result, histories, final, history_of(stored), final_rows, device, summary)
