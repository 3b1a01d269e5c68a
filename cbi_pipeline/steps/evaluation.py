"""Evaluation over files: every family's out-of-fold predictions compared on the same rows, the
gates run on the candidate, ``evaluations/{h}.json`` written with its chart ``evaluations/{h}.png``
beside it; the step behind ``evaluation``, and the tables that ``cbi cycle`` and the UI show."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from cbi_pipeline.core.curves.returns import held_returns
from cbi_pipeline.core.evaluation import Evaluation, FamilyEvaluation, evaluate
from cbi_pipeline.core.evaluation_plots import evaluation_png
from cbi_pipeline.core.export import export_filename
from cbi_pipeline.core.gates import GateResult, GateSpec, evaluate_gates
from cbi_pipeline.core.metrics import DEFAULT_COST_BP, MetricSet
from cbi_pipeline.core.probabilistic import ProbabilisticSet, pinball_skill
from cbi_pipeline.core.tables import markdown_table, text_table
from cbi_pipeline.core.vocabulary import (
    COMPLEXITY,
    FUTURES_CURVE,
    GATE_COVERAGE_80,
    GATE_COVERAGE_90,
    GATE_DIAGNOSTICS,
    GATE_DRIFT,
    GATE_MAPE,
    GATE_SHARPE,
    GATE_SKILL,
    HORIZON_LABELS,
    INTERVAL_BENCHMARK,
    RANDOM_WALK,
    horizon_days,
)
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps.tuning import tuned_by_family
from cbi_pipeline.store.models import MANIFEST_FILE, current_champion
from cbi_pipeline.store.root import (
    DataRoot,
    StorageError,
    as_path,
    read_json,
    read_parquet,
    write_bytes,
    write_json,
)

SCHEMA_VERSION = 1


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prediction_files(root: DataRoot, horizon: str) -> dict[str, Path]:
    """Every family's out-of-fold predictions present for a horizon, simplest family first."""
    found = {f: root.predictions(horizon, f) for f in COMPLEXITY}
    return {f: p for f, p in found.items() if p.exists()}


def diagnostics_status(root: DataRoot, horizon: str) -> tuple[bool, list[str]]:
    payload = read_json(root.diagnostics(horizon), "pretraining_diagnostics")
    failing = [name for name, c in payload["checks"].items() if not c["passed"]]
    return bool(payload["passed"]) and not failing, failing


def metrics_dict(m: MetricSet) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in m.as_dict().items()}


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def probabilistic_dict(
    e: FamilyEvaluation, random_walk: FamilyEvaluation, benchmark: ProbabilisticSet | None
) -> dict[str, Any] | None:
    """A family's interval scores, with its pinball skill against the constant-width random-walk
    intervals and against the random walk's own (EWMA-scaled) intervals."""
    if e.probabilistic is None:
        return None
    rw = random_walk.probabilistic
    return {
        "overall": _rounded(e.probabilistic.as_dict()),
        "pinball_skill_vs_constant_rw": None
        if benchmark is None
        else round(pinball_skill(e.probabilistic, benchmark), 6),
        "pinball_skill_vs_random_walk": None
        if rw is None
        else round(pinball_skill(e.probabilistic, rw), 6),
        "breakdowns": {
            by: {k: _rounded(s.as_dict()) for k, s in parts.items()}
            for by, parts in e.probabilistic_breakdowns.items()
        },
    }


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
        "interval_benchmark": None
        if ev.interval_benchmark is None
        else {"family": INTERVAL_BENCHMARK, "overall": _rounded(ev.interval_benchmark.as_dict())},
        "diebold_mariano": None
        if ev.diebold_mariano is None
        else {"candidate": ev.candidate, **_rounded(asdict(ev.diebold_mariano))},
        "predictions": {f: {"path": str(p), "sha256": file_sha256(p)} for f, p in sources.items()},
        "families": {
            f: {
                "overall": metrics_dict(e.overall),
                "breakdowns": {
                    by: {k: metrics_dict(m) for k, m in parts.items()}
                    for by, parts in e.breakdowns.items()
                },
                "probabilistic": probabilistic_dict(e, ev.random_walk, ev.interval_benchmark),
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
    plot_path: Path


FRONT_RETURNS = (
    "front month: log(price[t+h] / price[t]) of the export's target series (no curve given)"
)


def position_returns(
    root: DataRoot, horizon: str, settings: Settings | None
) -> tuple[pl.DataFrame | None, str]:
    """The rolled position's h-day returns on the export's dates when the data root holds a
    curve (else None), and a line saying which returns the Sharpe ratio and hit rate use."""
    if not root.raw_curve.exists():
        return None, FRONT_RETURNS
    if settings is None:
        raise ValueError(
            f"{root.raw_curve}: a curve is present; pass the settings (roll rule, target) so the "
            "Sharpe ratio uses the rolled position's returns"
        )
    export = read_parquet(
        root.export(export_filename(settings.target_symbol, settings.surface, horizon)),
        "training_export",
    )
    curve = read_parquet(root.raw_curve, "raw_market (the curve)")
    spec = settings.roll_spec()
    held = held_returns(curve, settings.target_symbol, export["date"], horizon_days(horizon), spec)
    line = (
        f"rolled position: the h-day return of {settings.target_symbol}'s ratio back-adjusted "
        f"curve series, rolling {spec.days_before_notice} weekdays before first notice "
        f"({root.raw_curve})"
    )
    return held, line


def evaluate_root(
    root: DataRoot,
    horizon: str,
    cost_bp: float = DEFAULT_COST_BP,
    gate_spec: GateSpec | None = None,
    settings: Settings | None = None,
) -> EvaluationOutput:
    """Compare every family's predictions, run the gates on the candidate, write the JSON.
    ``gate_spec`` defaults to ``settings.gate_spec`` (the configuration file's gates over the
    seed's), else the seed's thresholds; the payload records it (``config``). With a
    curve under the data root (``raw/curve.parquet``) the Sharpe ratio and hit rate use the
    rolled position's returns (``settings`` gives the roll rule and the export). The chart
    (``evaluation_png``: candidate and random walk against the actuals, MAPE and skill by
    regime) is written beside the JSON."""
    if gate_spec is not None:
        spec = gate_spec
    else:
        spec = settings.gate_spec(horizon) if settings else GateSpec.for_horizon(horizon)
    files = prediction_files(root, horizon)
    if RANDOM_WALK not in files:
        raise StorageError(
            f"{root.predictions(horizon, RANDOM_WALK)}: not found; materialize baselines first"
        )
    preds = {f: read_parquet(p, f"{f} predictions") for f, p in files.items()}
    benchmark_path = root.predictions(horizon, INTERVAL_BENCHMARK)
    benchmark = (
        read_parquet(benchmark_path, "baselines (constant-width intervals)")
        if benchmark_path.exists()
        else None
    )
    held, returns = position_returns(root, horizon, settings)
    ev = evaluate(preds, horizon, horizon_days(horizon), cost_bp, benchmark, held)
    diag = diagnostics_status(root, horizon)
    champion = current_champion(root, horizon)
    gates: list[GateResult] = []
    if ev.candidate is not None:
        cand, rw = ev.families[ev.candidate], ev.random_walk
        dm = ev.diebold_mariano
        gates = evaluate_gates(
            cand.overall,
            rw.overall,
            spec,
            None if champion is None else float(champion["mape"]),
            diag[0],
            diag[1],
            coverage=None if cand.probabilistic is None else cand.probabilistic.coverage,
            rw_coverage=None if rw.probabilistic is None else rw.probabilistic.coverage,
            diebold_mariano=None
            if dm is None
            else {"statistic": dm.statistic, "p_value": dm.p_value},
        )
    payload = evaluation_payload(
        ev, gates if ev.candidate else None, champion, diag, files, cost_bp
    )
    payload["returns"] = returns
    payload["config"] = {
        "file": settings.project_config().path if settings else None,
        "gates": asdict(spec),
    }
    payload["futures_curve"] = (
        futures_curve_fallbacks(root, horizon) if FUTURES_CURVE in files else None
    )
    payload["tuned"] = tuned_by_family(root, horizon, files)  # cbi tune's parameters, per family
    path = write_json(payload, root.evaluation(horizon))
    chart = evaluation_png(
        payload, preds[ev.candidate] if ev.candidate else None, preds[RANDOM_WALK]
    )
    plot_path = write_bytes(chart, root.evaluation_plot(horizon))
    return EvaluationOutput(horizon, ev, gates, payload, path, plot_path)


def futures_curve_fallbacks(root: DataRoot, horizon: str) -> dict[str, Any]:
    """How often the market's own forecast fell back to the random walk on the test origins
    (its folds' ``fallback`` counts), and the front rule it forecast."""
    path = root.model_dir(horizon, FUTURES_CURVE) / MANIFEST_FILE
    manifest = read_json(path, "baselines (futures_curve)")
    try:
        folds = manifest["folds"]
        fallback = sum(int(f["fallback"]) for f in folds)
        rows = sum(int(f["test_rows"]) for f in folds)
        rule = str(manifest["final"]["rule"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StorageError(
            f"{path}: expected folds with 'fallback' and 'test_rows' and final.rule ({exc!r}); "
            "materialize baselines again"
        ) from exc
    return {
        "fallback_rows": fallback,
        "rows": rows,
        "fallback_share": round(fallback / rows, 4) if rows else None,
        "rule": rule,
    }


def futures_curve_line(payload: Mapping[str, Any]) -> str | None:
    """One line on the market's own forecast, or None when there was no curve."""
    fc = payload.get("futures_curve")
    if not fc:
        return None
    m = payload["families"][FUTURES_CURVE]["overall"]
    return (
        f"{FUTURES_CURVE} (the market's own forecast): MAPE {m['mape']}% vs random walk "
        f"{m['rw_mape']}%; fell back to the random walk on {fc['fallback_rows']} of "
        f"{fc['rows']} origins ({100 * (fc['fallback_share'] or 0):.1f}%)"
    )


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
                **interval_columns(body.get("probabilistic")),
                "rows": m["rows"],
            }
        )
    return pl.DataFrame(rows, infer_schema_length=None)


def interval_columns(prob: Mapping[str, Any] | None) -> dict[str, Any]:
    """Coverage at 80/90% (in %) and the pinball skill against constant-width random-walk
    intervals, for the tables (None where the family has no intervals)."""
    if not prob:
        return {"cov80_%": None, "cov90_%": None, "pinball_skill": None}
    cov = prob["overall"]["coverage"]
    return {
        "cov80_%": round(100 * cov["80"], 2),
        "cov90_%": round(100 * cov["90"], 2),
        "pinball_skill": prob["pinball_skill_vs_constant_rw"],
    }


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
            f"Sharpe and hit rate on: {payload.get('returns', FRONT_RETURNS)}",
            *filter(None, [futures_curve_line(payload)]),
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
            f"Sharpe and hit rate on: {payload.get('returns', FRONT_RETURNS)}",
            *filter(None, [futures_curve_line(payload)]),
            text_table(families_frame(payload)),
            text_table(gates_frame(payload)),
        ]
    )


def curve_columns(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The market's own forecast beside the candidate in the gate table (None: no curve)."""
    fc = payload.get("futures_curve")
    if not fc:
        return {"curve_mape_%": None, "curve_fallback_%": None}
    return {
        "curve_mape_%": payload["families"][FUTURES_CURVE]["overall"]["mape"],
        "curve_fallback_%": round(100 * (fc["fallback_share"] or 0), 2),
    }


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

        def verdict(name: str, gates: dict[str, Any] = gates) -> str:
            return "-" if name not in gates else ("pass" if gates[name]["passed"] else "FAIL")

        rows.append(
            {
                "horizon": h,
                "candidate": cand or "-",
                "mape_%": m.get("mape"),
                "max_%": gates[GATE_MAPE]["threshold"] if GATE_MAPE in gates else None,
                "rw_mape_%": m.get("rw_mape"),
                "skill": m.get("skill"),
                "sharpe": m.get("sharpe"),
                "min_sharpe": gates[GATE_SHARPE]["threshold"] if GATE_SHARPE in gates else None,
                "psr": m.get("psr"),
                **interval_columns(
                    payload["families"][cand].get("probabilistic") if cand else None
                ),
                "dm_p": (payload.get("diebold_mariano") or {}).get("p_value"),
                **curve_columns(payload),
                "mape_gate": verdict(GATE_MAPE),
                "sharpe_gate": verdict(GATE_SHARPE),
                "skill_gate": verdict(GATE_SKILL),
                "drift_gate": verdict(GATE_DRIFT),
                "diag_gate": verdict(GATE_DIAGNOSTICS),
                "cov80_gate": verdict(GATE_COVERAGE_80),
                "cov90_gate": verdict(GATE_COVERAGE_90),
                "promotable": payload["promotable"],
                "champion": champ["family"] if champ else "none",
            }
        )
    widest: dict[str, Any] = max(rows, key=len)  # a not-evaluated row has fewer keys
    columns = list(widest)
    return pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], infer_schema_length=None)
