"""The fold cache: reuse a walk-forward fold's model and predictions while nothing it sees changed.

A fold's model depends only on what its fit reads: the feature rows, labels and weights (or
prices) of its fit and validation rows, the family's effective parameters and the code. Each
family says exactly which rows those are (``Learner.fit_reads``: the trees read their fit and
validation rows, a network also the rows its input windows reach back to, ETS the prices up to
the fold's origin). The fold's key is the digest of those rows' contents (``RowPrints``: one
digest per row and kind, dates included), the walk-forward spec, the parameters and the code
version (``core.fingerprint``). Its predictions have a key of their own: the model's key plus what
predicting the test rows reads. So with a new trading day:

- a fold whose key is unchanged is **reused**: its stored model is not refitted;
- if its test rows or what they read changed (the last fold gains the new labelled row), the
  stored model **predicts** them;
- any other fold is **refit**, with the reason (no entry, an unreadable or foreign one, code or
  parameters changed, which rows' contents changed and from which date).

Predictions always come from the stored form of the model (serialised, then loaded), for a fold
fitted now as for one reused, so reused and refitted folds give bit-identical predictions and an
incremental run equals a full rebuild. An entry is trusted only when its format, family,
horizon, name, checksum and model bytes all check out; anything else is refitted and rewritten.
The final model (every labelled row) is cached the same way under the name ``final``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from cbi_pipeline.core.fingerprint import digest, json_digest, row_digests, rows_digest
from cbi_pipeline.core.memo import Kept
from cbi_pipeline.core.walkforward import (
    Fold,
    FoldFit,
    TrainingData,
    WalkForwardResult,
    run_walk_forward,
)

FORMAT = "cbi-fold-v1"
FINAL = "final"
REUSED, PREDICTED, REFIT = "reused", "predicted", "refit"
KINDS = ("features", "labels", "prices")
_EMPTY = np.zeros(0, dtype=np.int64)
_PRINTS: Kept[RowPrints] = Kept(8)


@dataclass(frozen=True, eq=False)
class RowPrints:
    """One digest per export row and kind: features (the row's feature vector), labels (label,
    weight and whether it is labelled) and prices; each covers the row's date too."""

    dates: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    prices: np.ndarray

    @classmethod
    def of(cls, data: TrainingData) -> RowPrints:
        """The data's row digests; every family of a horizon reads the same export, so the
        digests of the last few distinct data sets are kept (keyed by their bytes)."""
        days = np.asarray(data.dates, dtype="datetime64[D]").astype(np.int64)
        columns = (days, data.X, data.label, data.weight, data.labelled, data.price)
        key = digest(*(np.ascontiguousarray(c).tobytes() for c in columns), str(data.X.shape))
        return _PRINTS.get(
            key,
            lambda: cls(
                data.dates,
                row_digests(days, data.X),
                row_digests(days, data.label, data.weight, data.labelled.astype(np.uint8)),
                row_digests(days, data.price),
            ),
        )

    def of_kind(self, kind: str) -> np.ndarray:
        return {"features": self.features, "labels": self.labels, "prices": self.prices}[kind]


@dataclass(frozen=True, eq=False)
class Reads:
    """The rows (ascending export row indices) whose features, labels or prices a fit reads."""

    features: np.ndarray = field(default_factory=lambda: _EMPTY)
    labels: np.ndarray = field(default_factory=lambda: _EMPTY)
    prices: np.ndarray = field(default_factory=lambda: _EMPTY)

    def rows(self, kind: str) -> np.ndarray:
        return {"features": self.features, "labels": self.labels, "prices": self.prices}[kind]

    def parts(self, prints: RowPrints) -> dict[str, str]:
        return {k: rows_digest(prints.of_kind(k), self.rows(k)) for k in KINDS}


def window_rows(rows: np.ndarray, length: int) -> np.ndarray:
    """Every row a window of ``length`` rows ending at one of ``rows`` reads (from row 0 on)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return _EMPTY
    # Row r reads [r - length + 1, r]: mark where those intervals start and end, and keep the
    # rows that some interval covers (linear in the rows, no rows x length array to sort).
    end = int(rows.max()) + 1
    starts = np.bincount(np.maximum(rows - length + 1, 0), minlength=end + 1)
    stops = np.bincount(rows + 1, minlength=end + 1)
    return np.flatnonzero(np.cumsum(starts - stops)[:end] > 0).astype(np.int64)


@dataclass(frozen=True)
class Stored:
    """A fitted model in stored form: JSON ``meta`` and the model file's bytes (may be empty)
    from which ``Learner.load`` rebuilds it, and the fold facts for the manifest."""

    meta: dict[str, Any]
    blob: bytes
    info: dict[str, Any]


class Learner(Protocol):
    """A model family as the fold cache drives it (``core.models.learners``)."""

    @property
    def family(self) -> str: ...

    @property
    def chained(self) -> bool:
        """Each fold starts from the previous fold's model (warm start)."""
        ...

    @property
    def workers(self) -> int:
        """Folds fitted at once (threads); the results do not depend on it."""
        ...

    def fingerprint(self) -> dict[str, Any]: ...

    def fit_reads(self, data: TrainingData, fold: Fold) -> Reads: ...

    def predict_reads(self, data: TrainingData, rows: np.ndarray) -> Reads: ...

    def fit(
        self, data: TrainingData, fold: Fold, budget: int | None, previous: Any | None, label: str
    ) -> Stored: ...

    def load(self, stored: Stored) -> Any: ...

    def predict(self, model: Any, data: TrainingData, rows: np.ndarray) -> np.ndarray: ...


class FoldStore(Protocol):
    """Where entries live (``store.foldcache``): raw JSON and bytes, no trust implied."""

    def load(self, name: str) -> tuple[Any, bytes | None, str]: ...

    def save(self, name: str, entry: Mapping[str, Any], blob: bytes) -> None: ...

    def previous_prints(self) -> RowPrints | None: ...

    def save_prints(self, prints: RowPrints) -> None: ...


@dataclass(frozen=True)
class CacheNote:
    """What the cache did for one fold (or the final model) and why."""

    name: str
    status: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"status": self.status, "reason": self.reason}


def _checksum(entry: Mapping[str, Any]) -> str:
    return json_digest({k: v for k, v in entry.items() if k != "checksum"})


def _entry(
    family: str, horizon: str, name: str, key: str, parts: dict[str, Any], stored: Stored
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "family": family,
        "horizon": horizon,
        "name": name,
        "key": key,
        "parts": parts,
        "meta": stored.meta,
        "info": stored.info,
        "blob_sha256": hashlib.sha256(stored.blob).hexdigest(),
        "blob_bytes": len(stored.blob),
        "predictions": None,
    }


def entry_problem(raw: Any, blob: bytes | None, family: str, horizon: str, name: str) -> str | None:
    """Why a stored entry cannot be trusted (None when it can): format, identity, checksum and
    the model bytes must all be what the entry says."""
    if not isinstance(raw, dict):
        return f"not a JSON object ({type(raw).__name__})"
    if raw.get("format") != FORMAT:
        return f"format {raw.get('format')!r}, expected {FORMAT!r}"
    who = (raw.get("family"), raw.get("horizon"), raw.get("name"))
    if who != (family, horizon, name):
        return f"foreign entry: it is for {who}, expected {(family, horizon, name)}"
    if raw.get("checksum") != _checksum(raw):
        return "checksum mismatch (edited or truncated)"
    for key in ("key", "parts", "meta", "info", "blob_sha256"):
        if key not in raw:
            return f"missing {key!r}"
    if blob is None:
        return "model file missing"
    if hashlib.sha256(blob).hexdigest() != raw["blob_sha256"]:
        return f"model file of {len(blob)} bytes does not match the entry's sha256"
    return None


def _changed_dates(now: RowPrints, before: RowPrints | None, kind: str, rows: np.ndarray) -> str:
    """``N of its rows, first DATE`` for rows whose ``kind`` content differs from the last run's."""
    if before is None or rows.size == 0:
        return ""
    index = {int(d): i for i, d in enumerate(before.dates.astype("datetime64[D]").astype(np.int64))}
    days = now.dates.astype("datetime64[D]").astype(np.int64)
    old, new = before.of_kind(kind), now.of_kind(kind)
    changed = [
        r
        for r in rows.tolist()
        if (i := index.get(int(days[r]))) is None or not np.array_equal(old[i], new[r])
    ]
    if not changed:
        return ""
    return f" on {len(changed)} of its rows, first {now.dates[changed[0]]}"


def _span(rows: Any) -> str:
    """``7016 rows 2000-01-03..2026-11-23`` for a ``[first, last, count]`` span."""
    if isinstance(rows, list) and len(rows) == 3:
        return f"{rows[2]} rows {rows[0]}..{rows[1]}"
    return str(rows)


def refit_reason(
    problem: str | None,
    raw: Any,
    parts: Mapping[str, Any],
    reads: Reads,
    now: RowPrints,
    before: RowPrints | None,
) -> str:
    """Why a fold is refitted, in words: what is missing or differs from its stored entry."""
    if problem is not None:
        return problem
    old = raw["parts"]
    why = []
    if old.get("code") != parts["code"]:
        why.append("code changed")
    if old.get("columns") != parts["columns"] or old.get("spec") != parts["spec"]:
        why.append("the feature columns or the walk-forward spec changed")
    if old.get("params") != parts["params"]:
        why.append("parameters changed")
    if old.get("rows") != parts["rows"]:
        why.append(f"its rows changed ({_span(old.get('rows'))} -> {_span(parts['rows'])})")
    elif old.get("budget") != parts.get("budget"):
        why.append(f"its tree or epoch budget changed ({old.get('budget')} -> {parts['budget']})")
    for kind in KINDS:
        if old.get(kind) != parts[kind] and old.get("rows") == parts["rows"]:
            why.append(f"{kind} changed{_changed_dates(now, before, kind, reads.rows(kind))}")
    if old.get("previous") != parts.get("previous"):
        why.append("the previous fold's model changed (warm start)")
    return "; ".join(why) or "key changed"


def _row_span(data: TrainingData, reads: Reads) -> list[Any]:
    rows = np.unique(np.concatenate([reads.features, reads.labels, reads.prices]))
    return (
        [str(data.dates[rows[0]]), str(data.dates[rows[-1]]), int(rows.size)] if rows.size else []
    )


@dataclass
class _Slot:
    """One fold's (or the final's) state while a cached walk-forward runs."""

    name: str
    parts: dict[str, Any]
    key: str
    reads: Reads
    label: str = ""
    raw: Any = None
    stored: Stored | None = None
    status: str = REFIT
    reason: str = ""
    fit_seconds: float = 0.0
    model: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class FoldCache:
    """Drives one family's folds through a store (or none: every fold is fitted)."""

    def __init__(
        self,
        learner: Learner,
        data: TrainingData,
        store: FoldStore | None,
        spec: Mapping[str, Any],
        code: str,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.learner, self.data, self.store, self.progress = learner, data, store, progress
        self.prints = RowPrints.of(data)
        self.before = store.previous_prints() if store is not None else None
        self.base = {
            "code": code,
            "params": json_digest(learner.fingerprint()),
            "spec": spec,
            "columns": json_digest(list(data.features)),  # a model names the features it reads
        }
        self.notes: list[CacheNote] = []

    def _slot(self, name: str, fold: Fold, budget: int | None, previous: str) -> _Slot:
        reads = self.learner.fit_reads(self.data, fold)
        parts = {
            **self.base,
            **reads.parts(self.prints),
            "rows": _row_span(self.data, reads),
            "budget": budget,
            "previous": previous,
        }
        slot = _Slot(name, parts, json_digest(parts), reads)
        if self.store is None:
            slot.reason = "no fold cache"
            return slot
        raw, blob, problem = self.store.load(name)
        if raw is None:
            slot.reason = problem or "no cached entry"
            return slot
        bad = entry_problem(raw, blob, self.learner.family, self.data.horizon, name)
        if bad is None and raw["key"] == slot.key:
            slot.raw, slot.status = raw, REUSED
            slot.reason = "nothing it reads changed"
            slot.stored = Stored(dict(raw["meta"]), blob or b"", dict(raw["info"]))
            return slot
        slot.reason = refit_reason(
            None if bad is None else f"cached entry untrusted: {bad}",
            raw,
            parts,
            reads,
            self.prints,
            self.before,
        )
        return slot

    def _fit(self, slot: _Slot, fold: Fold, budget: int | None, previous: Any) -> None:
        start = time.perf_counter()
        label = f"{self.data.horizon} {self.learner.family} {slot.label or slot.name}"
        slot.stored = self.learner.fit(self.data, fold, budget, previous, label)
        slot.fit_seconds = time.perf_counter() - start
        if self.progress is not None:  # as each fit ends: the MAPE lines follow once all have
            self.progress(f"{label} fitted in {slot.fit_seconds:.2f}s ({slot.reason})")
        slot.raw = _entry(
            self.learner.family, self.data.horizon, slot.name, slot.key, slot.parts, slot.stored
        )
        slot.raw["fit_seconds"] = round(slot.fit_seconds, 3)

    def _model(self, slot: _Slot) -> Any:
        if slot.model is None:
            assert slot.stored is not None
            slot.model = self.learner.load(slot.stored)
        return slot.model

    def _save(self, slot: _Slot) -> None:
        if self.store is not None and slot.stored is not None:
            slot.raw["checksum"] = _checksum(slot.raw)
            self.store.save(slot.name, slot.raw, slot.stored.blob)

    def walk_forward(self, folds: Sequence[Fold]) -> tuple[WalkForwardResult, list[_Slot]]:
        """Every fold's out-of-fold predictions, fitting only folds whose key changed."""
        learner, data = self.learner, self.data
        slots: list[_Slot] = []
        previous = ""
        for fold in folds:
            name = f"fold {fold.index}"
            slot = self._slot(name, fold, None, previous)
            slot.label = f"fold {fold.index + 1}/{len(folds)}"
            slots.append(slot)
            previous = slot.key if learner.chained else ""
        todo = [(s, f) for s, f in zip(slots, folds, strict=True) if s.status == REFIT]
        if self.progress is not None:
            self.progress(
                f"{data.horizon} {learner.family}: {len(folds) - len(todo)} of {len(folds)} "
                f"folds reused from the fold cache, {len(todo)} to fit"
                + (f" ({todo[0][0].name}: {todo[0][0].reason})" if todo else "")
            )
        if learner.chained:
            position = {id(s): i for i, s in enumerate(slots)}
            for slot, fold in todo:
                at = position[id(slot)]
                init = self._model(slots[at - 1]) if at > 0 else None
                self._fit(slot, fold, None, init)
        elif todo:
            # Folds are independent: fit several at once (each fit single-threaded, so results
            # do not depend on how many run together); map re-raises the first failure.
            with ThreadPoolExecutor(max(1, min(learner.workers, len(todo)))) as pool:
                list(pool.map(lambda sf: self._fit(sf[0], sf[1], None, None), todo))
        for slot, fold in zip(slots, folds, strict=True):
            self._predict(slot, fold)

        by_fold = {fold.index: slot for slot, fold in zip(slots, folds, strict=True)}

        def predict(d: TrainingData, fold: Fold) -> FoldFit:
            slot = by_fold[fold.index]
            pred = np.asarray(slot.extra["pred_return"], dtype=np.float64)
            info = {**slot.stored.info, "cache": {"status": slot.status, "reason": slot.reason}}  # type: ignore[union-attr]
            return FoldFit(pred, info, seconds=slot.fit_seconds + slot.extra["predict_seconds"])

        result = run_walk_forward(data, folds, learner.family, predict, self.progress)
        self.notes += [CacheNote(s.name, s.status, s.reason) for s in slots]
        return result, slots

    def _predict(self, slot: _Slot, fold: Fold) -> None:
        data, rows = self.data, fold.test_rows
        key = json_digest(
            {
                "model": slot.key,
                **self.learner.predict_reads(data, rows).parts(self.prints),
                "test": json_digest([str(d) for d in data.dates[rows]]),
            }
        )
        start = time.perf_counter()
        cached = slot.raw.get("predictions") if isinstance(slot.raw, dict) else None
        if slot.status == REUSED and isinstance(cached, dict) and cached.get("key") == key:
            pred = np.asarray(cached["pred_return"], dtype=np.float64)
        else:
            pred = np.asarray(self.learner.predict(self._model(slot), data, rows), dtype=np.float64)
            if slot.status == REUSED:
                slot.status = PREDICTED
                slot.reason = f"model reused; {rows.size} test rows predicted (they changed)"
            slot.raw["predictions"] = {"key": key, "pred_return": pred.tolist()}
            self._save(slot)
        slot.extra["pred_return"] = pred
        slot.extra["predict_seconds"] = time.perf_counter() - start

    def final(
        self, rows: np.ndarray, budget: int, previous: _Slot | None
    ) -> tuple[Any, Stored, CacheNote]:
        """The final model on ``rows`` with ``budget`` trees or epochs (the last fold's choice),
        from the cache when nothing it reads changed; returns the loaded model too. Its learner
        sees a fold with no validation or test rows and ``test_origin`` past the last row."""
        rows = np.asarray(rows, dtype=np.int64)
        fold = Fold(-1, self.data.rows, rows, _EMPTY, _EMPTY)
        chained = self.learner.chained and previous is not None
        slot = self._slot(FINAL, fold, budget, previous.key if chained and previous else "")
        slot.label = "final model"
        if slot.status == REFIT:
            init = self._model(previous) if chained and previous else None
            self._fit(slot, fold, budget, init)
            self._save(slot)
        note = CacheNote(FINAL, slot.status, slot.reason)
        self.notes.append(note)
        assert slot.stored is not None
        return self._model(slot), slot.stored, note

    def finish(self) -> dict[str, Any]:
        """Record this run's row digests (for the next run's reasons); the cache summary."""
        if self.store is not None:
            self.store.save_prints(self.prints)
        return cache_summary(self.notes)


def cache_summary(notes: Sequence[CacheNote]) -> dict[str, Any]:
    """Counts by status over the folds (the final model apart) and the reason per refit fold."""
    folds = [n for n in notes if n.name != FINAL]
    final = [n for n in notes if n.name == FINAL]
    return {
        "reused_folds": sum(n.status == REUSED for n in folds),
        "predicted_folds": sum(n.status == PREDICTED for n in folds),
        "refit_folds": sum(n.status == REFIT for n in folds),
        "refit": {n.name: n.reason for n in folds if n.status == REFIT},
        "final": final[-1].as_dict() if final else None,
    }
