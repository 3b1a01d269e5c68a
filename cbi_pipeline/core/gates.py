"""Promotion gates (DESIGN §3) as pure functions: a failing gate is a result, never an exception.

Every gate reports its value, its threshold and the random walk's figure side by side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cbi_pipeline.core.metrics import MetricSet
from cbi_pipeline.core.vocabulary import (
    GATE_DIAGNOSTICS,
    GATE_DRIFT,
    GATE_MAPE,
    GATE_SHARPE,
    GATE_SKILL,
    horizon_days,
)

# The seed's thresholds: MAPE (%) at most, Sharpe at least.
GATE_THRESHOLDS: dict[str, tuple[float, float]] = {
    "1w": (3.0, 1.2),
    "1m": (4.0, 1.0),
    "3m": (6.0, 0.8),
    "6m": (8.0, 0.6),
    "12m": (12.0, 0.5),
}
MAX_MAPE_DRIFT = 0.20  # no promotion if MAPE is more than 20% above the champion's
MIN_SKILL = 0.0  # skill vs random walk must be strictly greater


@dataclass(frozen=True)
class GateSpec:
    mape_max: float
    sharpe_min: float
    max_mape_drift: float = MAX_MAPE_DRIFT
    min_skill: float = MIN_SKILL

    @classmethod
    def for_horizon(cls, horizon: str) -> GateSpec:
        horizon_days(horizon)
        mape_max, sharpe_min = GATE_THRESHOLDS[horizon]
        return cls(mape_max, sharpe_min)


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    random_walk: float | None
    detail: str
    extra: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def mape_gate(m: MetricSet, spec: GateSpec) -> GateResult:
    ok = m.mape <= spec.mape_max
    return GateResult(
        GATE_MAPE,
        ok,
        m.mape,
        spec.mape_max,
        m.rw_mape,
        f"MAPE {m.mape:.3f}% {'<=' if ok else '>'} {spec.mape_max}% (random walk {m.rw_mape:.3f}%)",
    )


def sharpe_gate(m: MetricSet, rw: MetricSet, spec: GateSpec) -> GateResult:
    if m.sharpe is None:
        return GateResult(
            GATE_SHARPE,
            False,
            None,
            spec.sharpe_min,
            rw.sharpe,
            "Sharpe undefined (no position or no dispersion): fails",
        )
    ok = m.sharpe >= spec.sharpe_min
    return GateResult(
        GATE_SHARPE,
        ok,
        m.sharpe,
        spec.sharpe_min,
        rw.sharpe,
        f"Sharpe {m.sharpe:.3f} {'>=' if ok else '<'} {spec.sharpe_min} "
        f"(PSR {m.psr if m.psr is None else round(m.psr, 3)})",
    )


def skill_gate(m: MetricSet, spec: GateSpec) -> GateResult:
    if m.skill is None:
        return GateResult(
            GATE_SKILL,
            False,
            None,
            spec.min_skill,
            0.0,
            "skill undefined (random walk MAPE is 0): fails",
        )
    ok = m.skill > spec.min_skill
    return GateResult(
        GATE_SKILL,
        ok,
        m.skill,
        spec.min_skill,
        0.0,
        f"skill {m.skill:+.4f} {'>' if ok else '<='} {spec.min_skill} "
        f"(MAPE {m.mape:.3f}% vs random walk {m.rw_mape:.3f}%)",
    )


def drift_gate(m: MetricSet, champion_mape: float | None, spec: GateSpec) -> GateResult:
    if champion_mape is None:
        return GateResult(
            GATE_DRIFT,
            True,
            m.mape,
            None,
            m.rw_mape,
            "no current champion: nothing to drift from",
        )
    limit = champion_mape * (1.0 + spec.max_mape_drift)
    ok = m.mape <= limit
    return GateResult(
        GATE_DRIFT,
        ok,
        m.mape,
        limit,
        m.rw_mape,
        f"MAPE {m.mape:.3f}% vs champion {champion_mape:.3f}% "
        f"(limit +{spec.max_mape_drift:.0%} = {limit:.3f}%)",
        {"champion_mape": champion_mape},
    )


def diagnostics_gate(passed: bool, failing: list[str]) -> GateResult:
    return GateResult(
        GATE_DIAGNOSTICS,
        passed,
        None,
        None,
        None,
        "pre-training diagnostics passed"
        if passed
        else f"pre-training diagnostics failed: {', '.join(failing)}",
        {"failing_checks": failing},
    )


def evaluate_gates(
    m: MetricSet,
    rw: MetricSet,
    spec: GateSpec,
    champion_mape: float | None,
    diagnostics_ok: bool,
    diagnostics_failing: list[str],
) -> list[GateResult]:
    """All gates for one candidate; promotion requires every one to pass."""
    return [
        mape_gate(m, spec),
        sharpe_gate(m, rw, spec),
        skill_gate(m, spec),
        drift_gate(m, champion_mape, spec),
        diagnostics_gate(diagnostics_ok, diagnostics_failing),
    ]
