"""The pipeline's vocabulary, defined once: horizons, model families and their groups, training
targets, check and gate names, stage names and run tags. Every other module imports these."""

from __future__ import annotations

# --- horizons: label -> trading days ahead ------------------------------------------------------

HORIZONS: dict[str, int] = {"1w": 5, "1m": 21, "3m": 63, "6m": 126, "12m": 252}
HORIZON_LABELS: tuple[str, ...] = tuple(HORIZONS)


def horizon_days(label: str) -> int:
    """Trading days ahead for a horizon label such as ``"1m"``."""
    try:
        return HORIZONS[label]
    except KeyError:
        raise ValueError(
            f"unknown horizon {label!r}: expected one of {', '.join(HORIZON_LABELS)}"
        ) from None


def target_column(label: str) -> str:
    """Name of the export's label column for a horizon, e.g. ``target_1m``."""
    horizon_days(label)
    return f"target_{label}"


# --- model families ----------------------------------------------------------------------------

RANDOM_WALK = "random_walk"
DRIFT = "drift"
ETS = "ets"  # statsforecast's AutoETS: ordinary exponential smoothing
# The market's own forecast, from a futures curve (trained only when the data has one).
FUTURES_CURVE = "futures_curve"
BASELINES: tuple[str, ...] = (RANDOM_WALK, DRIFT, ETS, FUTURES_CURVE)
CURVE_BASELINES: tuple[str, ...] = (FUTURES_CURVE,)
LIGHTGBM = "lightgbm"
XGBOOST = "xgboost"
TREE_FAMILIES: tuple[str, ...] = (LIGHTGBM, XGBOOST)
LSTM = "lstm"
GRU = "gru"
NEURAL_FAMILIES: tuple[str, ...] = (LSTM, GRU)
# Families with hyperparameters from the hardware config (the baselines have none).
MODEL_FAMILIES: tuple[str, ...] = (*TREE_FAMILIES, *NEURAL_FAMILIES)
# The combination of every other family's out-of-fold forecasts (trained after them).
ENSEMBLE = "ensemble"
# Every family, simplest first: the evaluation breaks ties in favour of the simpler model.
COMPLEXITY: tuple[str, ...] = (
    RANDOM_WALK,
    FUTURES_CURVE,
    DRIFT,
    ETS,
    LIGHTGBM,
    XGBOOST,
    GRU,
    LSTM,
    ENSEMBLE,
)
# The constant-width random-walk intervals that the pinball skill is measured against: written
# beside the families' predictions, never a candidate.
INTERVAL_BENCHMARK = "random_walk_constant"

# What one training step trains: a model family, or both baselines together.
BASELINES_TARGET = "baselines"
TRAIN_TARGETS: tuple[str, ...] = (*TREE_FAMILIES, BASELINES_TARGET, *NEURAL_FAMILIES, ENSEMBLE)
# The Dagster asset that trains each target.
MODEL_ASSETS: dict[str, str] = {
    BASELINES_TARGET: "baselines",
    LIGHTGBM: "lightgbm_model",
    XGBOOST: "xgboost_model",
    LSTM: "lstm_model",
    GRU: "gru_model",
    ENSEMBLE: "ensemble_model",
}


def families_of(target: str) -> tuple[str, ...]:
    """The families one training target produces (``baselines`` -> random_walk, drift, ets and,
    with a curve, futures_curve)."""
    if target == BASELINES_TARGET:
        return BASELINES
    if target in MODEL_FAMILIES or target == ENSEMBLE:
        return (target,)
    raise ValueError(f"unknown training target {target!r}; expected one of {TRAIN_TARGETS}")


# --- pre-training diagnostics checks (blocking) -------------------------------------------------

CHECK_ALIGNED = "export_target_is_aligned"
CHECK_NO_LEAK = "export_has_no_future_leak"
CHECK_MISSING = "export_missing_data_within_limits"
CHECK_NAMES: tuple[str, ...] = (CHECK_ALIGNED, CHECK_NO_LEAK, CHECK_MISSING)

# --- promotion gates: gate name -> the asset check that reports it ------------------------------

GATE_MAPE = "mape_threshold"
GATE_SHARPE = "sharpe_threshold"
GATE_SKILL = "skill_vs_random_walk"
GATE_DRIFT = "mape_drift_vs_champion"
GATE_DIAGNOSTICS = "diagnostics_passed"
GATE_COVERAGE_80 = "coverage_80"
GATE_COVERAGE_90 = "coverage_90"
GATES: tuple[str, ...] = (
    GATE_MAPE,
    GATE_SHARPE,
    GATE_SKILL,
    GATE_DRIFT,
    GATE_DIAGNOSTICS,
    GATE_COVERAGE_80,
    GATE_COVERAGE_90,
)
GATE_CHECKS: dict[str, str] = {
    GATE_MAPE: "candidate_meets_mape_threshold",
    GATE_SHARPE: "candidate_meets_sharpe_threshold",
    GATE_SKILL: "candidate_beats_random_walk",
    GATE_DRIFT: "candidate_mape_within_drift_of_champion",
    GATE_DIAGNOSTICS: "diagnostics_passed_before_training",
    GATE_COVERAGE_80: "candidate_80pct_interval_is_calibrated",
    GATE_COVERAGE_90: "candidate_90pct_interval_is_calibrated",
}

# --- stages of the cycle (one Dagster job each) and run tags ------------------------------------

STAGE_DATA = "data"
STAGE_CORRELATIONS = "correlations"
STAGE_HORIZON = "horizon"
STAGE_PROMOTION = "promotion"

STAGE_TAG = "cbi/stage"  # the stage a run belongs to
CYCLE_TAG = "cbi/cycle"  # the nightly cycle a run belongs to: its schedule date (Chicago)
PID_TAG = "cbi/pid"  # the process that runs an in-process cycle run (dead-run recovery)
PARTITION_TAG = "dagster/partition"  # Dagster's own partition tag

# --- MLflow tags --------------------------------------------------------------------------------

TAG_HORIZON = "cbi.horizon"
TAG_FAMILY = "cbi.family"
TAG_FOLD = "cbi.fold"
TAG_MLFLOW_STAGE = "cbi.stage"
TAG_SOURCE = "cbi.source"  # what started a run outside Dagster (e.g. "cbi train")
TAG_DAGSTER_RUN = "dagster.run_id"  # the Dagster run that logged an MLflow run
TAG_DAGSTER_PARTITION = "dagster.partition"
