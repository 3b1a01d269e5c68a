"""``cbi evaluate``: the evaluation's metrics and gates on any predictions parquet; with quantile
columns also the probabilistic metrics (pinball loss, CRPS, coverage and width)."""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from cbi_pipeline.cli.arguments import add_setting, settings_from_args
from cbi_pipeline.core.contracts import DataContractError
from cbi_pipeline.core.gates import evaluate_gates
from cbi_pipeline.core.intervals import QUANTILE_COLUMNS
from cbi_pipeline.core.metrics import DEFAULT_COST_BP, breakdown, mae, mape, metric_set, rmse, smape
from cbi_pipeline.core.probabilistic import (
    ProbabilisticError,
    ProbabilisticSet,
    has_quantiles,
    probabilistic_breakdown,
    probabilistic_set,
)
from cbi_pipeline.core.tables import text_table
from cbi_pipeline.core.vocabulary import (
    GATE_COVERAGE_80,
    GATE_COVERAGE_90,
    GATE_MAPE,
    GATE_SHARPE,
    GATE_SKILL,
    HORIZON_LABELS,
    horizon_days,
)
from cbi_pipeline.steps.evaluation import gates_frame, metrics_dict

NAME = "evaluate"
HELP = "metrics and gates of any predictions parquet"
DESCRIPTION = """\
Evaluate one predictions parquet the way the pipeline evaluates its models: MAPE, sMAPE, MAE,
RMSE; with a price column (the price at the forecast origin) also skill against the random walk,
MASE, directional hit rate, the non-overlapping Sharpe net of costs and its PSR, and the
horizon's gates. With the nine quantile columns q2.5 q5 q10 q25 q50 q75 q90 q95 q97.5 (price
scale, as the pipeline's predictions carry them) and a price column, also the probabilistic
metrics overall and per regime: pinball loss and CRPS (in % of the origin price), coverage and
mean width (% of price) of the 50/80/90/95% central intervals, and the 80% and 90% coverage
gates. Exit status: 0 when every gate judged passes, 1 when a gate fails or the gates cannot be
judged (no price column), 2 on bad input. The diagnostics and champion-drift gates are not
judged here (they need the pipeline's state).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", required=True, help="predictions parquet file")
    p.add_argument("--y-true-col", required=True, help="column with the realised price")
    p.add_argument("--y-pred-col", required=True, help="column with the predicted price")
    p.add_argument("--horizon", required=True, choices=HORIZON_LABELS)
    p.add_argument("--regime-col", help="column for a per-regime breakdown (e.g. market_regime)")
    p.add_argument("--price-col", help="price at the origin (default: 'price' when present)")
    p.add_argument("--date-col", default="date", help="origin date column (default date)")
    p.add_argument(
        "--cost-bp", type=float, default=DEFAULT_COST_BP, help="cost per position change"
    )
    add_setting(p, "--coverage-tolerance", "coverage_tolerance")


# The gates a predictions file alone can judge (with quantiles also the coverage gates).
POINT_GATES = (GATE_MAPE, GATE_SHARPE, GATE_SKILL)
COVERAGE_GATES = (GATE_COVERAGE_80, GATE_COVERAGE_90)


def load_predictions(args: argparse.Namespace) -> tuple[pl.DataFrame, bool, bool]:
    """The frame under the pipeline's column names, whether it has a price column, and whether it
    has the nine quantile columns (kept under their own names)."""
    path = Path(args.predictions)
    if not path.is_file():
        raise DataContractError(f"{path}: predictions file not found")
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:
        raise DataContractError(f"{path}: unreadable parquet ({exc})") from exc
    price_col = args.price_col or ("price" if "price" in frame.columns else None)
    wanted = {"date": args.date_col, "y_true": args.y_true_col, "y_pred": args.y_pred_col}
    if price_col:
        wanted["price"] = price_col
    if args.regime_col:
        wanted["market_regime"] = args.regime_col
    try:
        quantiles = has_quantiles(frame)
    except ProbabilisticError as exc:
        raise DataContractError(f"{path}: {exc}") from exc
    if quantiles:
        wanted |= {q: q for q in QUANTILE_COLUMNS}
    missing = [c for c in wanted.values() if c not in frame.columns]
    if missing:
        raise DataContractError(
            f"{path}: missing column(s) {missing}; the file has {frame.columns}"
        )
    if frame.height == 0:
        raise DataContractError(f"{path}: no rows")
    out = frame.select(pl.col(src).alias(dst) for dst, src in wanted.items())
    if out.schema["date"] != pl.Date:
        try:
            out = out.with_columns(pl.col("date").cast(pl.Date))
        except Exception as exc:
            raise DataContractError(
                f"{path}: column {args.date_col!r} is {frame.schema[args.date_col]}, not a date"
            ) from exc
    for dst, src in wanted.items():
        if dst in ("date", "market_regime"):
            continue
        if not out.schema[dst].is_numeric():
            raise DataContractError(
                f"{path}: column {src!r} is {out.schema[dst]}, expected numbers"
            )
        bad = out.with_row_index("row").filter(
            ~pl.col(dst).cast(pl.Float64).is_finite().fill_null(False) | (pl.col(dst) <= 0)
        )
        if bad.height:
            raise DataContractError(
                f"{path}: column {src!r} has {bad.height} null, non-finite or non-positive "
                f"value(s), e.g. rows {bad['row'].head(5).to_list()}; expected prices > 0"
            )
    dup = out.filter(pl.col("date").is_duplicated())
    if dup.height:
        raise DataContractError(
            f"{path}: column {args.date_col!r} repeats dates, e.g. {dup['date'].head(3).to_list()}; "
            "expected one prediction per origin date"
        )
    out = out.sort("date").with_columns(pl.col("y_true", "y_pred").cast(pl.Float64))
    return out, bool(price_col), quantiles


def probabilistic_row(key: str, name: str, m: ProbabilisticSet) -> dict[str, object]:
    return {
        key: name,
        "rows": m.rows,
        "pinball_%": m.pinball,
        "crps_%": m.crps,
        **{f"cover_{k}": v for k, v in m.coverage.items()},
        **{f"width_{k}_%": v for k, v in m.width.items()},
    }


def print_probabilistic(frame: pl.DataFrame, path: str, by_regime: bool) -> ProbabilisticSet:
    """Print the probabilistic metrics overall (and per regime); return the overall set."""
    try:
        overall = probabilistic_set(frame)
        regimes = probabilistic_breakdown(frame, "market_regime") if by_regime else {}
    except ProbabilisticError as exc:
        raise DataContractError(f"{path}: {exc}") from exc
    print(
        "probabilistic (quantiles q2.5..q97.5): pinball loss and CRPS in % of the origin price, "
        "coverage = share of outcomes inside the central interval, width in % of price"
    )
    print(text_table(pl.DataFrame([probabilistic_row("model", "predictions", overall)])))
    if regimes:
        print(
            text_table(
                pl.DataFrame([probabilistic_row("regime", k, v) for k, v in regimes.items()])
            )
        )
    return overall


def run(args: argparse.Namespace) -> int:
    frame, has_price, quantiles = load_predictions(args)
    h = horizon_days(args.horizon)
    if not has_price:
        t, p = frame["y_true"].to_numpy(), frame["y_pred"].to_numpy()
        print(
            text_table(
                pl.DataFrame(
                    [
                        {
                            "rows": frame.height,
                            "mape": mape(t, p),
                            "smape": smape(t, p),
                            "mae": mae(t, p),
                            "rmse": rmse(t, p),
                        }
                    ]
                )
            )
        )
        print(
            "no price column: skill, MASE, hit rate, Sharpe"
            + (", the probabilistic metrics" if quantiles else "")
            + " and the gates need the origin price (--price-col); gates not judged"
        )
        return 1
    frame = frame.with_columns(pl.col("price").cast(pl.Float64))
    m = metric_set(frame, h, args.cost_bp)
    rw = metric_set(frame.with_columns(pl.col("price").alias("y_pred")), h, args.cost_bp)
    print(
        f"{args.predictions}: {frame.height} origins {frame['date'].min()!s}..{frame['date'].max()!s}"
    )
    print(
        text_table(
            pl.DataFrame(
                [
                    {"model": "predictions", **metrics_dict(m)},
                    {"model": "random_walk", **metrics_dict(rw)},
                ]
            )
        )
    )
    if args.regime_col:
        rows = [
            {"regime": k, **metrics_dict(v)}
            for k, v in breakdown(frame, "market_regime", h, args.cost_bp).items()
        ]
        print(
            text_table(
                pl.DataFrame(rows).select(
                    "regime", "rows", "mape", "rw_mape", "skill", "sharpe", "psr"
                )
            )
        )
    coverage = None
    if quantiles:
        coverage = print_probabilistic(frame, args.predictions, bool(args.regime_col)).coverage
    judged = POINT_GATES + (COVERAGE_GATES if quantiles else ())
    spec = settings_from_args(args).gate_spec(args.horizon)
    gates = [
        g
        for g in evaluate_gates(m, rw, spec, None, True, [], coverage=coverage)
        if g.name in judged
    ]
    print(text_table(gates_frame({"gates": [g.as_dict() for g in gates]})))
    passed = all(g.passed for g in gates)
    print(
        "every gate passes"
        if passed
        else "a gate fails: " + ", ".join(g.name for g in gates if not g.passed)
    )
    return 0 if passed else 1
