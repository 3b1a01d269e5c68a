"""Promotion gates (DESIGN §3) as pure functions: a failing gate is a result, never an exception.

Every gate reports its value, its threshold and the random walk's figure side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

from cbi_pipeline.core.metrics import MetricSet
from cbi_pipeline.core.vocabulary import (
    GATE_COVERAGE_80,
    GATE_COVERAGE_90,
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
COVERAGE_TOLERANCE = 0.03  # interval coverage within 3 points of nominal


@dataclass(frozen=True)
class GateSpec:
    """One horizon's thresholds. ``mape_max``: MAPE (%) at most (None: no absolute bar);
    ``mape_max_vs_random_walk``: MAPE at most this multiple of the random walk's (None: no
    relative bar; with both, both hold); ``max_dm_p``: the skill gate also needs the one-sided
    Diebold-Mariano p-value against the random walk below this (None: skill alone)."""

    mape_max: float | None
    sharpe_min: float
    max_mape_drift: float = MAX_MAPE_DRIFT
    min_skill: float = MIN_SKILL
    coverage_tolerance: float = COVERAGE_TOLERANCE
    mape_max_vs_random_walk: float | None = None
    max_dm_p: float | None = None

    def __post_init__(self) -> None:
        if self.mape_max is None and self.mape_max_vs_random_walk is None:
            raise ValueError(
                "GateSpec: mape_max and mape_max_vs_random_walk are both None; expected at "
                "least one MAPE bar"
            )

    @classmethod
    def for_horizon(cls, horizon: str, coverage_tolerance: float = COVERAGE_TOLERANCE) -> GateSpec:
        horizon_days(horizon)
        mape_max, sharpe_min = GATE_THRESHOLDS[horizon]
        return cls(mape_max, sharpe_min, coverage_tolerance=coverage_tolerance)


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


def mape_threshold(spec: GateSpec, rw_mape: float) -> float:
    """The MAPE bar for this random walk: the absolute one, the relative one, or the lower."""
    bars = [] if spec.mape_max is None else [spec.mape_max]
    if spec.mape_max_vs_random_walk is not None:
        bars.append(spec.mape_max_vs_random_walk * rw_mape)
    return min(bars)


def mape_gate(m: MetricSet, spec: GateSpec) -> GateResult:
    limit = mape_threshold(spec, m.rw_mape)
    ok = m.mape <= limit
    how = (
        ""
        if spec.mape_max_vs_random_walk is None
        else f" = min of {spec.mape_max}% and {spec.mape_max_vs_random_walk} x random walk"
        if spec.mape_max is not None
        else f" = {spec.mape_max_vs_random_walk} x random walk"
    )
    return GateResult(
        GATE_MAPE,
        ok,
        m.mape,
        limit,
        m.rw_mape,
        f"MAPE {m.mape:.3f}% {'<=' if ok else '>'} {round(limit, 4)}%{how} "
        f"(random walk {m.rw_mape:.3f}%)",
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


COVERAGE_GATES: dict[str, float] = {GATE_COVERAGE_80: 0.8, GATE_COVERAGE_90: 0.9}


def coverage_gate(
    name: str,
    covered: float | None,
    random_walk: float | None,
    spec: GateSpec,
) -> GateResult:
    """The candidate's out-of-fold share of outcomes inside its central interval is within the
    tolerance of nominal (too narrow and too wide both fail)."""
    nominal = COVERAGE_GATES[name]
    if covered is None:
        return GateResult(
            name, False, None, nominal, random_walk, f"no {nominal:.0%} intervals to judge: fails"
        )
    ok = abs(covered - nominal) <= spec.coverage_tolerance + 1e-12
    return GateResult(
        name,
        ok,
        covered,
        nominal,
        random_walk,
        f"{nominal:.0%} interval covers {covered:.1%} of outcomes "
        f"({'within' if ok else 'outside'} ±{spec.coverage_tolerance * 100:g} points of nominal; "
        f"random walk {'-' if random_walk is None else f'{random_walk:.1%}'})",
        {"tolerance": spec.coverage_tolerance},
    )


def evaluate_gates(
    m: MetricSet,
    rw: MetricSet,
    spec: GateSpec,
    champion_mape: float | None,
    diagnostics_ok: bool,
    diagnostics_failing: list[str],
    coverage: Mapping[str, float] | None = None,
    rw_coverage: Mapping[str, float] | None = None,
    diebold_mariano: Mapping[str, float] | None = None,
) -> list[GateResult]:
    """All gates for one candidate; promotion requires every one to pass. ``coverage`` maps
    "80"/"90" to the candidate's out-of-fold coverage (None: it has no intervals, and the
    coverage gates fail); ``diebold_mariano`` (statistic, p_value) is reported beside the skill
    gate as the evidence against the random walk; it gates only when ``spec.max_dm_p`` is set."""
    skill = skill_gate(m, spec)
    if diebold_mariano is not None:
        skill = replace(
            skill,
            detail=f"{skill.detail}; Diebold-Mariano vs random walk: statistic "
            f"{diebold_mariano['statistic']:+.2f}, one-sided p {diebold_mariano['p_value']:.3f}",
            extra={**skill.extra, "diebold_mariano": dict(diebold_mariano)},
        )
    if spec.max_dm_p is not None:
        p = None if diebold_mariano is None else diebold_mariano.get("p_value")
        significant = p is not None and p < spec.max_dm_p
        skill = replace(
            skill,
            passed=skill.passed and significant,
            detail=f"{skill.detail}; needs p < {spec.max_dm_p}: "
            + ("met" if significant else "not met" if p is not None else "no test: fails"),
        )
    gates = [
        mape_gate(m, spec),
        sharpe_gate(m, rw, spec),
        skill,
        drift_gate(m, champion_mape, spec),
        diagnostics_gate(diagnostics_ok, diagnostics_failing),
    ]
    for name, nominal in COVERAGE_GATES.items():
        key = f"{nominal * 100:.0f}"
        covered = None if coverage is None else coverage.get(key)
        rw_covered = None if rw_coverage is None else rw_coverage.get(key)
        gates.append(coverage_gate(name, covered, rw_covered, spec))
    return gates
