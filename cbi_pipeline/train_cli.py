"""``cbi train``: the model assets' training step from the terminal (same ``training.train``)."""

from __future__ import annotations

import argparse
import time

import polars as pl

from cbi_pipeline.core.horizons import HORIZON_LABELS
from cbi_pipeline.report import text_table
from cbi_pipeline.settings import settings_from_env

DESCRIPTION = """\
Train one family (or both baselines) for one horizon, or all horizons, on the purged
walk-forward over the horizon's export (build it first with `cbi export`). Writes
predictions/{h}/{family}.parquet, models/{h}/{family}/ (native model file + manifest.json) and
an MLflow run with nested fold runs (default store: sqlite under <data_root>/mlflow;
MLFLOW_TRACKING_URI overrides it). Prints one row per family with the walk-forward MAPE beside
the random walk's on the same test rows.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--horizon", default="1m", choices=(*HORIZON_LABELS, "all"))
    p.add_argument(
        "--family",
        default="lightgbm",
        choices=("lightgbm", "xgboost", "baselines", "lstm", "gru", "all"),
        help="what to train (all = lightgbm, xgboost, baselines, lstm and gru)",
    )
    p.add_argument(
        "--data-root", help="data root holding exports/ (default: $CBI_DATA_ROOT or data)"
    )
    p.add_argument("--target", help="target symbol (default ZL)")
    p.add_argument(
        "--first-test-date",
        help="first test block starts on the first trading day on or after it (default 2010-01-04)",
    )
    p.add_argument("--refit-step", type=int, help="trading days per test block (default 252)")
    p.add_argument("--cores", type=int, help="threads for the tree libraries (default: detected)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--folds", action="store_true", help="also print each fold")


def cmd_train(args: argparse.Namespace) -> int:
    from cbi_pipeline import training
    from cbi_pipeline.core.hardware import detect_system
    from cbi_pipeline.storage import DataRoot
    from cbi_pipeline.tracking import Tracker

    settings = settings_from_env(
        {
            "data_root": args.data_root,
            "target_symbol": args.target,
            "first_test_date": args.first_test_date,
            "refit_step_days": args.refit_step,
        }
    )
    root = DataRoot(settings.data_root)
    system = detect_system(cores=args.cores)
    tracker = None if args.no_mlflow else Tracker.for_data_root(settings.data_root)
    horizons = HORIZON_LABELS if args.horizon == "all" else (args.horizon,)
    targets = training.TRAIN_TARGETS if args.family == "all" else (args.family,)
    rows = []
    for horizon in horizons:
        for target in targets:
            start = time.perf_counter()
            outputs = training.train(
                root, settings, horizon, target, system, tracker, tags={"cbi.source": "cbi train"}
            )
            seconds = time.perf_counter() - start
            for out in outputs:
                rows.append(
                    {
                        "horizon": horizon,
                        "family": out.family,
                        "folds": len(out.manifest["folds"]),
                        "test_rows": out.result.predictions.height,
                        "mape_pct": round(out.val_mape, 3),
                        "random_walk_pct": round(out.random_walk_mape, 3),
                        "final_trees": out.manifest["final"].get("trees"),
                        "seconds": round(seconds, 1),
                    }
                )
                if args.folds:
                    print(f"{horizon} {out.family}")
                    print(text_table(training.fold_table(out)))
                print(
                    f"{horizon} {out.family}: {out.predictions_path}, {out.model_dir}", flush=True
                )
                if out.tracked is not None:
                    print(f"  mlflow run {out.tracked.run_id}: {out.tracked.url}", flush=True)
    print(text_table(pl.DataFrame(rows)))
    if tracker is not None:
        print(f"mlflow ui --backend-store-uri {tracker.tracking_uri}")
    return 0
