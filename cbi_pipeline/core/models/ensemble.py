"""The ensemble family: a purged, shrunk combination of the other families' forecasts (DESIGN §3).

The combined forecast at row ``i`` is the predicted log return ``sum_f w_f * r_f[i]`` over the
members ``f`` (each family's out-of-fold predicted return), with weights on the simplex
(``w >= 0``, ``sum w = 1``). The random walk is always a member and its return is 0, so weight on
it shrinks the combination toward no change.

Weights (``combination_weights``): the least-squares weights on the simplex, solved exactly, then
shrunk toward the random walk, ``w = lam * w_ls + (1 - lam) * e_rw`` with
``lam = n_eff / (n_eff + shrinkage_periods)`` and ``n_eff = n / h``: the ``n`` calibration rows'
h-step labels overlap, so they hold about ``n / h`` independent periods of evidence. No rows give
all the weight to the random walk.

Purge (``walk_forward_ensemble``): fold ``k``'s weights are fitted only on out-of-fold rows ``i``
of earlier folds whose label ended before fold ``k``'s first test origin ``s_k``
(``i + h < s_k``), the same rule the models' training rows follow, so the first fold is the
random walk. The final weights (for a forecast from the latest date) use every out-of-fold row
whose label has ended by the last export row.

Earned departure: the weights fitted for each fold are a *proposal*, and its predictions on that
fold are kept as its track record. Fold ``k`` uses its proposal only when the earlier proposals'
track record, on the same purged rows (``i + h < s_k``), beats the random walk's absolute
percentage error by more than noise: a one-sided Diebold–Mariano test (HAC lag ``h - 1``, the
same test as the skill gate's) rejects equal accuracy at ``departure_p``. Otherwise fold ``k`` is
the random walk. So the combination departs from no change only where departing has paid,
significantly, out of sample before; the first two folds (no record yet) are the random walk, and
so is any fold whose record holds too few origins for the test (``2h`` or fewer). The final
forecast follows the same rule on the whole record. ``departure_p = 0.5`` is the plain rule "a
lower mean error than the random walk" (a negative statistic).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from cbi_pipeline.core.metrics import mape
from cbi_pipeline.core.probabilistic import diebold_mariano
from cbi_pipeline.core.vocabulary import COMPLEXITY, ENSEMBLE, RANDOM_WALK
from cbi_pipeline.core.walkforward import (
    FoldRecord,
    TrainingData,
    WalkForwardResult,
    date_range,
    prediction_frame,
)

# The exact solver enumerates the simplex's faces (2**F - 1 of them): plenty for the pipeline's
# handful of families, and a clear error rather than a silent slowdown beyond it.
MAX_MEMBERS = 12
# Relative tolerance on the objective when comparing faces: a later face must be better by more
# than rounding to replace an earlier one, so ties go to the sparser, simpler combination.
_TIE_TOLERANCE = 1e-12
_FEASIBLE_TOLERANCE = 1e-10
MEMBER_COLUMNS = ("date", "fold", "pred_return")


class EnsembleError(ValueError):
    """The members cannot be combined as given (missing random walk, mismatched dates, ...)."""


@dataclass(frozen=True)
class EnsembleSpec:
    """shrinkage_periods: prior strength toward the random walk, in independent h-step periods
    (0 = no shrinkage: the least-squares weights as they are); departure_p: the one-sided
    Diebold–Mariano p-value below which the proposals' record has earned a departure from the
    random walk."""

    shrinkage_periods: float = 20.0
    departure_p: float = 0.05

    def __post_init__(self) -> None:
        s = self.shrinkage_periods
        if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s) or s < 0:
            raise EnsembleError(
                f"EnsembleSpec.shrinkage_periods must be a finite number >= 0, got {s!r}"
            )
        p = self.departure_p
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 1:
            raise EnsembleError(f"EnsembleSpec.departure_p must be a number in (0, 1], got {p!r}")


def _check_returns(member_returns: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    R = np.asarray(member_returns, dtype=np.float64)
    y = np.asarray(label, dtype=np.float64)
    if R.ndim != 2 or R.shape[1] < 1:
        raise EnsembleError(
            f"member_returns must be a 2-d array (rows, members) with >= 1 member, got shape {R.shape}"
        )
    if R.shape[1] > MAX_MEMBERS:
        raise EnsembleError(
            f"{R.shape[1]} members; the exact simplex solver takes at most {MAX_MEMBERS}"
        )
    if y.shape != (R.shape[0],):
        raise EnsembleError(f"label must have shape ({R.shape[0]},), got {y.shape}")
    if not (np.isfinite(R).all() and np.isfinite(y).all()):
        raise EnsembleError("member_returns and label must be finite (no NaN or infinity)")
    if (R[:, 0] != 0).any():
        raise EnsembleError(
            "column 0 of member_returns must be the random walk (all zero); "
            f"{int((R[:, 0] != 0).sum())} rows are not"
        )
    return R, y


def simplex_least_squares(member_returns: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The weights ``w`` on the simplex that minimise ``sum_i (label_i - sum_f w_f R_if)**2``,
    before any shrinkage (column 0 = the random walk, all zero).

    Exact: the minimum of a convex quadratic over the simplex lies in the relative interior of
    one face (a support set ``S``), where it is the stationary point of the problem restricted to
    ``sum_{f in S} w_f = 1``. Every face is solved from the KKT system and the feasible one with
    the smallest objective wins; faces are visited smallest first and, for equal objectives, in
    member order, so the answer is deterministic and ties favour the random walk. No rows give the
    random walk.
    """
    R, y = _check_returns(member_returns, label)
    n, F = R.shape
    w_best = np.zeros(F)
    w_best[0] = 1.0
    if n == 0:
        return w_best
    G = R.T @ R / n  # mean squares: objective(w) = w'Gw - 2b'w + mean(y**2)
    b = R.T @ y / n
    scale = float(np.mean(y**2)) + float(np.max(np.abs(np.diag(G))))

    def objective(w: np.ndarray) -> float:
        return float(w @ G @ w - 2.0 * b @ w)

    best = objective(w_best)
    for size in range(1, F + 1):
        for support in itertools.combinations(range(F), size):
            if support == (0,):
                continue
            idx = np.asarray(support)
            m = idx.size
            kkt = np.zeros((m + 1, m + 1))
            kkt[:m, :m] = 2.0 * G[np.ix_(idx, idx)]
            kkt[:m, m] = 1.0
            kkt[m, :m] = 1.0
            rhs = np.append(2.0 * b[idx], 1.0)
            sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:m]
            if not np.isfinite(sol).all() or sol.min() < -_FEASIBLE_TOLERANCE:
                continue
            # A singular face (collinear members) may give a least-squares fit of its system:
            # made feasible, it is still only a candidate judged by the objective itself.
            w = np.zeros(F)
            w[idx] = np.clip(sol, 0.0, None)
            w /= w.sum()
            value = objective(w)
            if value < best - _TIE_TOLERANCE * scale:
                best, w_best = value, w
    return w_best


def shrinkage(n: int, h: int, spec: EnsembleSpec) -> float:
    """``lam = n_eff / (n_eff + shrinkage_periods)`` with ``n_eff = n / h``; 0 for no rows."""
    if isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1:
        raise EnsembleError(f"h must be an integer >= 1 (the horizon in rows), got {h!r}")
    if n < 0:
        raise EnsembleError(f"n must be >= 0, got {n}")
    if n == 0:
        return 0.0
    n_eff = n / h
    return n_eff / (n_eff + spec.shrinkage_periods)


def combination_weights(
    member_returns: np.ndarray, label: np.ndarray, h: int, spec: EnsembleSpec
) -> np.ndarray:
    """Simplex least-squares weights of the members (column 0 = random walk), shrunk toward the
    random walk by ``shrinkage``. Returns one weight per column, on the simplex."""
    w_ls = simplex_least_squares(member_returns, label)
    lam = shrinkage(int(np.asarray(member_returns).shape[0]), h, spec)
    rw = np.zeros_like(w_ls)
    rw[0] = 1.0
    return lam * w_ls + (1.0 - lam) * rw


@dataclass(frozen=True, eq=False)
class EnsembleRun:
    """The ensemble's walk-forward result (family ``ensemble``, one record per fold), the member
    order of the weights (random walk first), each fold's weights and the final weights."""

    result: WalkForwardResult
    members: tuple[str, ...]
    fold_weights: tuple[dict[str, float], ...]
    final_weights: dict[str, float]


def member_order(families: list[str]) -> tuple[str, ...]:
    """The random walk first, then the vocabulary's complexity order, then any others by name."""
    rank = {f: i for i, f in enumerate(COMPLEXITY)}
    rest = [f for f in families if f != RANDOM_WALK]
    return (RANDOM_WALK, *sorted(rest, key=lambda f: (rank.get(f, len(rank)), f)))


def _examples(values: np.ndarray) -> str:
    return ", ".join(str(v) for v in values[:5]) + (" ..." if values.size > 5 else "")


def _member_arrays(
    family: str, frame: pl.DataFrame, data: TrainingData
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dates, folds, pred_return) of one member, sorted by date and checked."""
    missing = [c for c in MEMBER_COLUMNS if c not in frame.columns]
    if missing:
        raise EnsembleError(
            f"member {family!r}: missing column(s) {missing}; expected the out-of-fold "
            f"prediction columns {list(MEMBER_COLUMNS)}"
        )
    if frame.height == 0:
        raise EnsembleError(f"member {family!r}: no predictions")
    for col, want in (("family", family), ("horizon", data.horizon)):
        if col in frame.columns:
            other = frame.filter(pl.col(col) != want)[col].unique().sort().to_list()
            if other or frame[col].null_count():
                raise EnsembleError(
                    f"member {family!r}: column {col!r} must be {want!r} on every row, found "
                    f"{other or [None]}"
                )
    frame = frame.sort("date")
    nulls = [c for c in MEMBER_COLUMNS if frame[c].null_count()]
    if nulls:
        raise EnsembleError(f"member {family!r}: null values in column(s) {nulls}")
    dates = frame["date"].cast(pl.Date).to_numpy().astype("datetime64[D]")
    dup = dates[1:][dates[1:] == dates[:-1]]
    if dup.size:
        raise EnsembleError(f"member {family!r}: duplicate dates {_examples(np.unique(dup))}")
    folds = frame["fold"].cast(pl.Int64).to_numpy()
    pred = frame["pred_return"].cast(pl.Float64).to_numpy()
    bad = ~np.isfinite(pred)
    if bad.any():
        raise EnsembleError(
            f"member {family!r}: pred_return is not finite on {int(bad.sum())} rows, e.g. "
            f"{_examples(dates[bad])}"
        )
    return dates, folds, pred


def _rows_of(family: str, dates: np.ndarray, data: TrainingData) -> np.ndarray:
    rows = np.searchsorted(data.dates, dates)
    inside = rows < data.rows
    found = np.zeros(dates.shape, bool)
    found[inside] = data.dates[rows[inside]] == dates[inside]
    if not found.all():
        raise EnsembleError(
            f"member {family!r}: {int((~found).sum())} dates are not rows of the "
            f"{data.horizon} export, e.g. {_examples(dates[~found])}"
        )
    unlabelled = ~data.labelled[rows]
    if unlabelled.any():
        raise EnsembleError(
            f"member {family!r}: {int(unlabelled.sum())} predicted dates have no "
            f"{data.horizon} label in the export, e.g. {_examples(dates[unlabelled])}"
        )
    return rows


def member_matrix(
    members: Mapping[str, pl.DataFrame], data: TrainingData
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray]:
    """Check the members against each other and the export; return (member order, export rows
    ascending, fold numbers, predicted returns with one column per member)."""
    if RANDOM_WALK not in members:
        raise EnsembleError(
            f"members must include {RANDOM_WALK!r} (the combination's shrinkage target); got "
            f"{sorted(members)}"
        )
    if ENSEMBLE in members:
        raise EnsembleError(f"members must not include {ENSEMBLE!r} itself")
    order = member_order(list(members))
    ref_dates, ref_folds, ref_pred = _member_arrays(RANDOM_WALK, members[RANDOM_WALK], data)
    if (ref_pred != 0).any():
        raise EnsembleError(
            f"member {RANDOM_WALK!r}: pred_return must be 0 (no change) on every row; "
            f"{int((ref_pred != 0).sum())} rows are not, e.g. {_examples(ref_dates[ref_pred != 0])}"
        )
    rows = _rows_of(RANDOM_WALK, ref_dates, data)
    R = np.zeros((rows.size, len(order)))
    for j, family in enumerate(order[1:], start=1):
        dates, folds, pred = _member_arrays(family, members[family], data)
        if dates.shape != ref_dates.shape or (dates != ref_dates).any():
            extra = np.setdiff1d(dates, ref_dates)
            lacking = np.setdiff1d(ref_dates, dates)
            raise EnsembleError(
                f"member {family!r} predicts other dates than {RANDOM_WALK!r}: "
                f"{lacking.size} missing (e.g. {_examples(lacking)}), {extra.size} extra "
                f"(e.g. {_examples(extra)}); every member must predict the same dates"
            )
        differ = folds != ref_folds
        if differ.any():
            raise EnsembleError(
                f"member {family!r}: fold numbers differ from {RANDOM_WALK!r} on "
                f"{int(differ.sum())} dates, e.g. {_examples(dates[differ])}; every member must "
                "use the same folds"
            )
        R[:, j] = pred
    return order, rows, ref_folds, R


def random_walk_weights(members: int) -> np.ndarray:
    """All the weight on the random walk (member 0): no change."""
    w = np.zeros(members)
    w[0] = 1.0
    return w


def track_record(
    label: np.ndarray, proposal: np.ndarray, h: int, spec: EnsembleSpec
) -> dict[str, object]:
    """The proposals' out-of-sample record against the random walk on the given rows (in date
    order): mean absolute percentage errors (|y - y_hat| / y = |1 - exp(pred - label)|) of both,
    the one-sided Diebold–Mariano test of the proposals' errors against the random walk's, and
    whether the proposals earned their departure (p-value below ``spec.departure_p``).

    Not earned, with the reason, when there is nothing to test: fewer than ``2h + 1`` origins
    (the HAC variance of overlapping h-step errors needs more) or proposals that never differ
    from the random walk on the record."""
    if label.shape != proposal.shape:
        raise EnsembleError(f"{label.shape[0]} labels for {proposal.shape[0]} proposals")
    record: dict[str, object] = {
        "rows": int(label.size),
        "proposal_ape": None,
        "random_walk_ape": None,
        "dm_statistic": None,
        "dm_p_value": None,
        "why": None,
    }
    if label.size and not np.isfinite(proposal).all():
        raise EnsembleError("a proposal has no prediction on a row of its own record")
    if label.size:
        ape = np.abs(1.0 - np.exp(proposal - label)) * 100.0
        ape_rw = np.abs(1.0 - np.exp(-label)) * 100.0
        record["proposal_ape"] = round(float(ape.mean()), 6)
        record["random_walk_ape"] = round(float(ape_rw.mean()), 6)
    if label.size <= 2 * h:
        record["why"] = f"{label.size} origins on the record; the test needs more than {2 * h}"
    elif np.ptp(ape - ape_rw) == 0:
        record["why"] = "the proposals never differed from the random walk's errors"
    else:
        dm = diebold_mariano(ape, ape_rw, h)
        record["dm_statistic"] = round(dm.statistic, 6)
        record["dm_p_value"] = round(dm.p_value, 6)
        if not dm.p_value < spec.departure_p:
            record["why"] = f"Diebold–Mariano p = {dm.p_value:.3g}, not below {spec.departure_p}"
    record["earned"] = record["why"] is None
    return record


def _weights_dict(
    order: tuple[str, ...], w: np.ndarray, digits: int | None = None
) -> dict[str, float]:
    return {
        f: float(x) if digits is None else round(float(x), digits)
        for f, x in zip(order, w, strict=True)
    }


def walk_forward_ensemble(
    members: Mapping[str, pl.DataFrame],
    data: TrainingData,
    spec: EnsembleSpec = EnsembleSpec(),
    progress: Callable[[str], None] | None = None,
) -> EnsembleRun:
    """The ensemble's out-of-fold predictions on the members' folds, with purged weights (see the
    module docstring), and the final weights for a forecast from the latest date."""
    order, rows, folds, R = member_matrix(members, data)
    h = data.horizon_days
    label = data.label[rows]
    fold_ids = np.unique(folds)
    frames, records, fold_weights = [], [], []
    proposal_pred = np.full(rows.size, np.nan)  # each fold's proposal on its own rows
    for k, fold in enumerate(fold_ids):
        start = time.perf_counter()
        own = folds == fold
        origin = int(rows[own].min())
        calib = (folds < fold) & (rows + h < origin)
        proposal = combination_weights(R[calib], label[calib], h, spec)
        proposal_pred[own] = R[own] @ proposal
        track = track_record(label[calib], proposal_pred[calib], h, spec)
        w = proposal if track["earned"] else random_walk_weights(len(order))
        n = int(calib.sum())
        lam = shrinkage(n, h, spec)
        pred = R[own] @ w
        frame = prediction_frame(data, rows[own], folds[own], pred, ENSEMBLE)
        seconds = time.perf_counter() - start
        record = FoldRecord(
            fold=int(fold),
            fit=date_range(data, rows[calib]),
            validation=[],
            test=date_range(data, rows[own]),
            fit_rows=n,
            validation_rows=0,
            test_rows=int(own.sum()),
            val_mape=mape(frame["y_true"], frame["y_pred"]),
            seconds=round(seconds, 3),
            info={
                "weights": _weights_dict(order, w, 6),
                "proposal_weights": _weights_dict(order, proposal, 6),
                "earned": track["earned"],
                "record": {k: v for k, v in track.items() if k != "earned"},
                "calibration_rows": n,
                "shrinkage": round(lam, 6),
            },
        )
        frames.append(frame)
        records.append(record)
        fold_weights.append(_weights_dict(order, w))
        if progress is not None:
            shown = ", ".join(f"{f} {x:.3f}" for f, x in record.info["weights"].items())
            progress(
                f"{data.horizon} {ENSEMBLE} fold {k + 1}/{fold_ids.size}: test "
                f"{record.test[0]}..{record.test[1]} ({record.test_rows} rows), weights from "
                f"{n} rows (shrinkage {lam:.3f}): {shown}: MAPE {record.val_mape:.3f}% in "
                f"{seconds:.2f}s"
            )
    final = rows + h <= data.rows - 1
    w_final = combination_weights(R[final], label[final], h, spec)
    if not track_record(label[final], proposal_pred[final], h, spec)["earned"]:
        w_final = random_walk_weights(len(order))
    result = WalkForwardResult(ENSEMBLE, pl.concat(frames), tuple(records))
    return EnsembleRun(result, order, tuple(fold_weights), _weights_dict(order, w_final))
