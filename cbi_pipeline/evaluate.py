"""Evaluation, promotion and the champion over files: the steps behind ``evaluation``,
``champion`` and ``cbi evaluate``.

The current champion of a horizon lives in ``models/{h}/champion.json``, a pointer to an immutable
copy of the promoted model under ``models/{h}/champions/<stamp>-<family>/``: training a new model
never touches it, and switching champions is one atomic JSON write.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from cbi_pipeline.core.evaluation import COMPLEXITY, RANDOM_WALK, Evaluation, evaluate
from cbi_pipeline.core.gates import GateResult, GateSpec, evaluate_gates
from cbi_pipeline.core.horizons import HORIZON_LABELS, horizon_days
from cbi_pipeline.core.metrics import DEFAULT_COST_BP, MetricSet
from cbi_pipeline.report import markdown_table, text_table
from cbi_pipeline.storage import (
    DataRoot,
    StorageError,
    as_path,
    read_json,
    read_parquet,
    write_bytes,
    write_json,
)

SCHEMA_VERSION = 1


class PromotionError(RuntimeError):
    """A promotion was asked for that cannot be done (stale evaluation, bad override)."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prediction_files(root: DataRoot, horizon: str) -> dict[str, Path]:
    """Every family's out-of-fold predictions present for a horizon, simplest family first."""
    found = {f: root.predictions(horizon, f) for f in COMPLEXITY}
    return {f: p for f, p in found.items() if p.exists()}


def diagnostics_status(root: DataRoot, horizon: str) -> tuple[bool, list[str]]:
    payload = read_json(root.diagnostics(horizon), "pretraining_diagnostics")
    failing = [name for name, c in payload["checks"].items() if not c["passed"]]
    return bool(payload["passed"]) and not failing, failing


def current_champion(root: DataRoot, horizon: str) -> dict[str, Any] | None:
    path = root.champion_pointer(horizon)
    if not path.exists():
        return None
    pointer = read_json(path, "champion")
    model_dir = root.path(pointer["model_dir"])
    if not model_dir.is_dir():
        raise StorageError(f"{path}: points to {model_dir}, which does not exist")
    return dict(pointer)


def metrics_dict(m: MetricSet) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in m.as_dict().items()}


def evaluation_payload(
    ev: Evaluation,
    gates: list[GateResult] | None,
    champion: dict[str, Any] | None,
    diagnostics: tuple[bool, list[str]],
    sources: Mapping[str, Path],
    cost_bp: float,
) -> dict[str, Any]:
    promotable = gates is not None and all(g.passed for g in gates)
    return {
        "schema_version": SCHEMA_VERSION,
        "horizon": ev.horizon,
        "horizon_days": ev.h,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows": ev.rows,
        "first_date": ev.first_date,
        "last_date": ev.last_date,
        "cost_bp": cost_bp,
        "candidate": ev.candidate,
        "promotable": promotable,
        "gates": [g.as_dict() for g in gates or []],
        "champion_before": champion,
        "diagnostics": {"passed": diagnostics[0], "failing_checks": diagnostics[1]},
        "predictions": {f: {"path": str(p), "sha256": _sha256(p)} for f, p in sources.items()},
        "families": {
            f: {
                "overall": metrics_dict(e.overall),
                "breakdowns": {
                    by: {k: metrics_dict(m) for k, m in parts.items()}
                    for by, parts in e.breakdowns.items()
                },
            }
            for f, e in ev.families.items()
        },
    }


@dataclass(frozen=True)
class EvaluationOutput:
    horizon: str
    evaluation: Evaluation
    gates: list[GateResult]
    payload: dict[str, Any]
    path: Path


def evaluate_root(
    root: DataRoot, horizon: str, cost_bp: float = DEFAULT_COST_BP
) -> EvaluationOutput:
    """Compare every family's predictions, run the gates on the candidate, write the JSON."""
    files = prediction_files(root, horizon)
    if RANDOM_WALK not in files:
        raise StorageError(
            f"{root.predictions(horizon, RANDOM_WALK)}: not found; materialize baselines first"
        )
    preds = {f: read_parquet(p, f"{f} predictions") for f, p in files.items()}
    ev = evaluate(preds, horizon, horizon_days(horizon), cost_bp)
    diag = diagnostics_status(root, horizon)
    champion = current_champion(root, horizon)
    gates: list[GateResult] = []
    if ev.candidate is not None:
        gates = evaluate_gates(
            ev.families[ev.candidate].overall,
            ev.random_walk.overall,
            GateSpec.for_horizon(horizon),
            None if champion is None else float(champion["mape"]),
            diag[0],
            diag[1],
        )
    payload = evaluation_payload(
        ev, gates if ev.candidate else None, champion, diag, files, cost_bp
    )
    path = write_json(payload, root.evaluation(horizon))
    return EvaluationOutput(horizon, ev, gates, payload, path)


def families_frame(payload: Mapping[str, Any]) -> pl.DataFrame:
    rows = []
    for family, body in payload["families"].items():
        m = body["overall"]
        rows.append(
            {
                "family": family,
                "mape": m["mape"],
                "rw_mape": m["rw_mape"],
                "skill": m["skill"],
                "mase": m["mase"],
                "hit_rate": m["hit_rate"],
                "sharpe": m["sharpe"],
                "psr": m["psr"],
                "rows": m["rows"],
            }
        )
    return pl.DataFrame(rows)


def gates_frame(payload: Mapping[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "gate": g["name"],
                "passed": g["passed"],
                "value": g["value"],
                "threshold": g["threshold"],
                "random_walk": g["random_walk"],
                "detail": g["detail"],
            }
            for g in payload["gates"]
        ],
        schema={
            "gate": pl.String,
            "passed": pl.Boolean,
            "value": pl.Float64,
            "threshold": pl.Float64,
            "random_walk": pl.Float64,
            "detail": pl.String,
        },
    )


def summary_markdown(payload: Mapping[str, Any]) -> str:
    verdict = "**promotable**" if payload["promotable"] else "**not promotable**"
    return "\n\n".join(
        [
            f"### {payload['horizon']}: candidate `{payload['candidate']}` — {verdict}",
            f"{payload['rows']} out-of-fold origins, {payload['first_date']} .. {payload['last_date']}",
            markdown_table(families_frame(payload)),
            markdown_table(gates_frame(payload)),
        ]
    )


def summary_text(payload: Mapping[str, Any]) -> str:
    verdict = "promotable" if payload["promotable"] else "not promotable"
    return "\n".join(
        [
            f"{payload['horizon']}: candidate {payload['candidate']} ({verdict}); "
            f"{payload['rows']} origins {payload['first_date']}..{payload['last_date']}",
            text_table(families_frame(payload)),
            text_table(gates_frame(payload)),
        ]
    )


# --- promotion --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Override:
    family: str
    by: str
    reason: str

    def __post_init__(self) -> None:
        if not self.by.strip() or not self.reason.strip():
            raise PromotionError("an override needs both who ('by') and why ('reason')")
        if self.family == RANDOM_WALK or self.family not in COMPLEXITY:
            raise PromotionError(
                f"override family {self.family!r} cannot be promoted; expected one of "
                f"{[f for f in COMPLEXITY if f != RANDOM_WALK]}"
            )


@dataclass(frozen=True)
class PromotionResult:
    horizon: str
    promoted: bool
    family: str | None
    reason: str
    champion: dict[str, Any] | None


def check_evaluation_is_current(root: DataRoot, payload: Mapping[str, Any]) -> None:
    """The evaluation must describe the predictions on disk now (no stale promotion)."""
    for family, src in payload["predictions"].items():
        path = as_path(src["path"])
        if not path.exists() or _sha256(path) != src["sha256"]:
            raise PromotionError(
                f"evaluations/{payload['horizon']}.json is stale: {family} predictions at {path} "
                "changed since it was written; materialize evaluation again"
            )


def _snapshot_model(root: DataRoot, horizon: str, family: str) -> Path:
    """Copy a family's model folder to an immutable champions/<stamp>-<family>/ folder."""
    src = root.model_dir(horizon, family)
    if not (src / "manifest.json").exists():
        raise StorageError(f"{src / 'manifest.json'}: not found; cannot promote {family}")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    dest = root.path("models", horizon, "champions", f"{stamp}-{family}-{uuid.uuid4().hex[:6]}")
    if root.remote:  # a new, unique prefix that only champion.json (written after) points to
        for child in src.iterdir():
            if child.is_file():
                write_bytes(child.read_bytes(), dest / child.name)
        return dest
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copytree(src, tmp)
    tmp.rename(dest)
    return dest


def promote(
    root: DataRoot,
    horizon: str,
    override: Override | None = None,
    registry: Any | None = None,
) -> PromotionResult:
    """Promote the evaluation's candidate when every gate passed (or an explicit override).

    Reads ``evaluations/{h}.json`` and re-checks it against the predictions on disk, so it is
    safe to run in a separate run from the checks. ``registry`` (``registry.Registry``) sets the
    MLflow alias; without one only the local pointer moves.
    """
    previous = current_champion(root, horizon)
    if not as_path(root.evaluation(horizon)).exists() and override is None:
        kept = f"; keeping {previous['family']}" if previous else "; no champion"
        return PromotionResult(
            horizon,
            False,
            None,
            f"no evaluation of {horizon} yet (diagnostics or training did not complete)" + kept,
            previous,
        )
    payload = read_json(root.evaluation(horizon), "evaluation")
    check_evaluation_is_current(root, payload)
    if override is None:
        diag_ok, diag_failing = diagnostics_status(root, horizon)
        if not diag_ok:
            kept = f"; keeping {previous['family']}" if previous else "; no champion"
            return PromotionResult(
                horizon,
                False,
                None,
                f"diagnostics fail now: {', '.join(diag_failing)}" + kept,
                previous,
            )
        if not payload["promotable"]:
            failed = [g["name"] for g in payload["gates"] if not g["passed"]]
            why = f"gates failed: {', '.join(failed)}" if failed else "no candidate to promote"
            kept = f"; keeping {previous['family']}" if previous else "; no champion"
            return PromotionResult(horizon, False, None, why + kept, previous)
        family = str(payload["candidate"])
    else:
        family = override.family
        if family not in payload["families"]:
            raise PromotionError(f"override family {family!r} has no evaluation for {horizon}")
    model_dir = _snapshot_model(root, horizon, family)
    mape = float(payload["families"][family]["overall"]["mape"])
    pointer: dict[str, Any] = {
        "horizon": horizon,
        "family": family,
        "mape": mape,
        "evaluation": payload["families"][family]["overall"],
        "model_dir": str(model_dir.relative_to(root.root)),
        "promoted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "override": None if override is None else {"by": override.by, "reason": override.reason},
        "previous": None if previous is None else previous["family"],
    }
    if registry is not None:
        pointer["mlflow"] = registry.set_champion(horizon, family, pointer)
    write_json(pointer, root.champion_pointer(horizon))
    why = "override" if override else "every gate passed"
    return PromotionResult(horizon, True, family, why, pointer)


def gate_table(root: DataRoot, horizons: tuple[str, ...] = HORIZON_LABELS) -> pl.DataFrame:
    """Per horizon: the candidate against its thresholds and the random walk, each gate's
    verdict, and who is champion now."""
    rows: list[dict[str, Any]] = []
    for h in horizons:
        champ = current_champion(root, h)
        if not as_path(root.evaluation(h)).exists():
            rows.append(
                {
                    "horizon": h,
                    "candidate": "not evaluated",
                    "promotable": False,
                    "champion": champ["family"] if champ else "none",
                }
            )
            continue
        payload = read_json(root.evaluation(h), "evaluation")
        gates = {g["name"]: g for g in payload["gates"]}
        cand = payload["candidate"]
        m = payload["families"][cand]["overall"] if cand else {}
        spec = GateSpec.for_horizon(h)

        def verdict(name: str, gates: dict[str, Any] = gates) -> str:
            return "-" if name not in gates else ("pass" if gates[name]["passed"] else "FAIL")

        rows.append(
            {
                "horizon": h,
                "candidate": cand or "-",
                "mape_%": m.get("mape"),
                "max_%": spec.mape_max,
                "rw_mape_%": m.get("rw_mape"),
                "skill": m.get("skill"),
                "sharpe": m.get("sharpe"),
                "min_sharpe": spec.sharpe_min,
                "psr": m.get("psr"),
                "mape_gate": verdict("mape_threshold"),
                "sharpe_gate": verdict("sharpe_threshold"),
                "skill_gate": verdict("skill_vs_random_walk"),
                "drift_gate": verdict("mape_drift_vs_champion"),
                "diag_gate": verdict("diagnostics_passed"),
                "promotable": payload["promotable"],
                "champion": champ["family"] if champ else "none",
            }
        )
    widest: dict[str, Any] = max(rows, key=len)  # a not-evaluated row has fewer keys
    columns = list(widest)
    return pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], infer_schema_length=None)
