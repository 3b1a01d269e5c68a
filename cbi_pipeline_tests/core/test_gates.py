from cbi_pipeline.core.gates import GATE_THRESHOLDS, GateSpec, evaluate_gates
from cbi_pipeline.core.metrics import MetricSet


def ms(mape: float, rw_mape: float, sharpe: float | None, psr: float | None = 0.9) -> MetricSet:
    return MetricSet(
        rows=100,
        mape=mape,
        smape=mape,
        mae=1.0,
        rmse=1.0,
        rw_mape=rw_mape,
        skill=1 - mape / rw_mape,
        mase=mape / rw_mape,
        hit_rate=0.5,
        sharpe=sharpe,
        psr=psr,
        sharpe_periods=20,
    )


RW_1W = ms(2.5, 2.5, None, None)
CALIBRATED = {"50": 0.5, "80": 0.8, "90": 0.9, "95": 0.95}


def verdicts(results):
    return {r.name: r.passed for r in results}


def test_thresholds_are_the_seed_numbers():
    assert GATE_THRESHOLDS == {
        "1w": (3.0, 1.2),
        "1m": (4.0, 1.0),
        "3m": (6.0, 0.8),
        "6m": (8.0, 0.6),
        "12m": (12.0, 0.5),
    }


def test_model_worse_than_random_walk_meeting_mape_is_not_promotable():
    spec = GateSpec.for_horizon("1w")
    worse = ms(2.8, 2.5, 1.5)  # meets 3.0% and the Sharpe gate, loses to the random walk
    results = evaluate_gates(worse, RW_1W, spec, None, True, [])
    v = verdicts(results)
    assert v["mape_threshold"] and v["sharpe_threshold"]
    assert not v["skill_vs_random_walk"]
    assert not all(r.passed for r in results)


def test_every_gate_passes_for_a_good_model():
    results = evaluate_gates(
        ms(2.0, 2.5, 1.3), RW_1W, GateSpec.for_horizon("1w"), 2.1, True, [], CALIBRATED
    )
    assert all(r.passed for r in results)
    mape = next(r for r in results if r.name == "mape_threshold")
    assert (mape.value, mape.threshold, mape.random_walk) == (2.0, 3.0, 2.5)


def test_each_gate_fails_on_its_own():
    spec = GateSpec.for_horizon("1m")
    rw = ms(5.0, 5.0, None)
    assert (
        verdicts(evaluate_gates(ms(4.5, 5.0, 1.2), rw, spec, None, True, []))["mape_threshold"]
        is False
    )
    assert (
        verdicts(evaluate_gates(ms(3.0, 5.0, 0.9), rw, spec, None, True, []))["sharpe_threshold"]
        is False
    )
    assert (
        verdicts(evaluate_gates(ms(3.0, 5.0, None), rw, spec, None, True, []))["sharpe_threshold"]
        is False
    )
    drift = evaluate_gates(ms(3.7, 5.0, 1.2), rw, spec, 3.0, True, [])
    assert verdicts(drift)["mape_drift_vs_champion"] is False  # 3.7 > 3.0 * 1.2
    assert verdicts(evaluate_gates(ms(3.55, 5.0, 1.2), rw, spec, 3.0, True, []))[
        "mape_drift_vs_champion"
    ]
    diag = evaluate_gates(ms(3.0, 5.0, 1.2), rw, spec, None, False, ["export_has_no_future_leak"])
    assert verdicts(diag)["diagnostics_passed"] is False
    assert (
        "export_has_no_future_leak"
        in next(r for r in diag if r.name == "diagnostics_passed").detail
    )


def test_coverage_gates_fail_when_intervals_are_too_narrow_too_wide_or_missing():
    spec = GateSpec.for_horizon("1m")
    good, rw = ms(3.0, 5.0, 1.2), ms(5.0, 5.0, None)

    def coverage_verdicts(coverage):
        results = evaluate_gates(good, rw, spec, None, True, [], coverage, CALIBRATED)
        return verdicts(results)["coverage_80"], verdicts(results)["coverage_90"]

    assert coverage_verdicts({"80": 0.78, "90": 0.925}) == (True, True)  # within 3 points
    assert coverage_verdicts({"80": 0.76, "90": 0.9}) == (False, True)  # too narrow
    assert coverage_verdicts({"80": 0.8, "90": 0.94}) == (True, False)  # too wide
    assert coverage_verdicts(None) == (False, False)  # no intervals at all
    loose = GateSpec.for_horizon("1m", coverage_tolerance=0.05)
    results = evaluate_gates(good, rw, loose, None, True, [], {"80": 0.76, "90": 0.9})
    assert verdicts(results)["coverage_80"]
    cov80 = next(r for r in results if r.name == "coverage_80")
    assert (cov80.value, cov80.threshold) == (0.76, 0.8) and "76.0%" in cov80.detail


def test_the_diebold_mariano_evidence_is_reported_beside_the_skill_gate():
    results = evaluate_gates(
        ms(3.0, 5.0, 1.2),
        ms(5.0, 5.0, None),
        GateSpec.for_horizon("1m"),
        None,
        True,
        [],
        CALIBRATED,
        diebold_mariano={"statistic": -2.5, "p_value": 0.012},
    )
    skill = next(r for r in results if r.name == "skill_vs_random_walk")
    assert "p 0.012" in skill.detail and skill.extra["diebold_mariano"]["statistic"] == -2.5
