"""LightGBM and XGBoost over the full purged walk-forward of one horizon on the default data.

Run: .venv/bin/python cbi_pipeline_tests/benchmarks/training.py [--runs 3] [--horizon 1m]
     [--data-root DIR] [--mlflow] [--all-features]

Without --data-root the default (sample) data's export is built into a temporary root first (not
timed). Each family is trained --runs times exactly as the model assets do (the same
``steps.models.train``, hyperparameters from the detected hardware); the figures printed are medians.
A fit is one booster: one per fold plus the final model. --mlflow also times logging each
family's result to a fresh SQLite MLflow store (what the assets add on top of training);
--all-features also times each family without the per-fold feature selection, as the baseline for
the selection's speed-up (slow: XGBoost takes minutes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace

from cbi_pipeline.core.export import export_filename
from cbi_pipeline.core.hardware import detect_system
from cbi_pipeline.settings import Settings, settings_from_env
from cbi_pipeline.steps import data as tasks
from cbi_pipeline.steps import models as training
from cbi_pipeline.store.root import DataRoot
from cbi_pipeline.store.tracking import Tracker, experiment_name

FAMILIES = ("lightgbm", "xgboost")


def ensure_export(settings: Settings, horizon: str) -> None:
    root = DataRoot(settings.data_root)
    if root.export(export_filename(settings.target_symbol, settings.surface, horizon)).exists():
        return
    start = time.perf_counter()
    tasks.write_raw(root, tasks.load_raw(settings))
    tasks.build_exports(root, settings, [horizon], panel=tasks.build_panel(root, settings))
    print(f"built the {horizon} export in {time.perf_counter() - start:.1f}s (not timed)")


def train_once(settings: Settings, horizon: str, family: str, system, tracker=None):
    start = time.perf_counter()
    (out,) = training.train(
        DataRoot(settings.data_root), settings, horizon, family, system, tracker
    )
    return time.perf_counter() - start, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--horizon", default="1m")
    parser.add_argument("--data-root", help="a root whose export to use (default: a temp root)")
    parser.add_argument("--mlflow", action="store_true", help="also time MLflow tracking")
    parser.add_argument("--all-features", action="store_true", help="also time max_features=0")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cbi-train-bench-") as tmp:
        settings = settings_from_env(
            {"data_root": args.data_root or tmp, "fold_cache": 0}
        )  # time fitting, not the fold cache
        ensure_export(settings, args.horizon)
        system = detect_system()
        print(f"{system.cores} cores, {system.platform}; max_features={settings.max_features}")
        medians: dict[str, float] = {}
        last = {}
        folds = 0
        for family in FAMILIES:
            seconds = []
            for i in range(args.runs):
                wall, out = train_once(settings, args.horizon, family, system)
                seconds.append(wall)
                folds = len(out.manifest["folds"])
                trees = out.trees
                print(
                    f"{family} run {i + 1}: {wall:.1f}s, {folds + 1} fits ({folds} folds + final), "
                    f"trees kept per fold median {statistics.median(trees):g} "
                    f"(min {min(trees)}, max {max(trees)}, sum {sum(trees)}), "
                    f"final {out.manifest['final']['trees']}, grown "
                    f"{sum(f['rounds'] for f in out.manifest['folds'])}; "
                    f"MAPE {out.val_mape:.3f}% vs random walk {out.random_walk_mape:.3f}%",
                    flush=True,
                )
            medians[family] = statistics.median(seconds)
            last[family] = out
            if args.all_features:
                wall, _ = train_once(
                    replace(settings, max_features=0), args.horizon, family, system
                )
                print(
                    f"{family} with all features: {wall:.1f}s "
                    f"(selection speed-up x{wall / medians[family]:.2f})",
                    flush=True,
                )
        if args.mlflow:
            tracker = Tracker.for_data_root(tmp, f"sqlite:///{tmp}/bench-mlflow.db")
            experiment = experiment_name(settings.target_symbol, args.horizon)
            for family in FAMILIES:
                out = last[family]
                start = time.perf_counter()
                run = tracker.log_walk_forward(
                    experiment, out.manifest, out.model_dir, out.predictions_path
                )
                print(
                    f"{family} MLflow tracking: {time.perf_counter() - start:.2f}s "
                    f"(1 run + {len(run.fold_run_ids)} fold runs; the first call includes the "
                    "mlflow import and creating the SQLite schema)",
                    flush=True,
                )
        total = sum(medians.values())
        print(
            f"training: horizon={args.horizon} folds={folds} "
            f"lightgbm_s={medians['lightgbm']:.1f} xgboost_s={medians['xgboost']:.1f} "
            f"total_s={total:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
