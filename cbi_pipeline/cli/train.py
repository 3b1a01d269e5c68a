"""``cbi train``: the model assets' training step from the terminal (same ``steps.models.train``)."""

from __future__ import annotations

import argparse
import time

import polars as pl

from cbi_pipeline.cli.arguments import (
    ALL,
    add_horizon,
    add_training_settings,
    horizons,
    settings_from_args,
)
from cbi_pipeline.core.hardware import detect_system
from cbi_pipeline.core.tables import text_table
from cbi_pipeline.core.vocabulary import LIGHTGBM, NEURAL_FAMILIES, TAG_SOURCE, TRAIN_TARGETS
from cbi_pipeline.steps.models import fold_table, train
from cbi_pipeline.store.root import DataRoot
from cbi_pipeline.store.tracking import Tracker

NAME = "train"
HELP = "train a model family or the baselines on the purged walk-forward"
DESCRIPTION = """\
Train one family (or both baselines) for one horizon, or all horizons, on the purged
walk-forward over the horizon's export (build it first with `cbi export`). Writes
predictions/{h}/{family}.parquet, models/{h}/{family}/ (native model file + manifest.json) and
an MLflow run with nested fold runs (default store: sqlite under <data_root>/mlflow;
MLFLOW_TRACKING_URI overrides it). Prints one row per family with the walk-forward MAPE beside
the random walk's on the same test rows.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_horizon(p, "1m")
    p.add_argument(
        "--family",
        default=LIGHTGBM,
        choices=(*TRAIN_TARGETS, ALL),
        help=f"what to train (all = {', '.join(TRAIN_TARGETS)}); default {LIGHTGBM}",
    )
    add_training_settings(p)
    neural = p.add_argument_group(
        "neural families (lstm, gru)",
        "override the architecture of the configuration file and the hardware defaults",
    )
    neural.add_argument("--num-layers", type=int, help="stacked recurrent layers (e.g. 2)")
    neural.add_argument("--hidden-size", type=int, help="units per recurrent layer (e.g. 64)")
    neural.add_argument("--dropout", type=float, help="dropout between layers, in [0, 1)")
    p.add_argument("--folds", action="store_true", help="also print each fold")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    root = DataRoot(settings.data_root)
    system = detect_system(cores=args.cores)
    tracker = None if args.no_mlflow else Tracker.for_data_root(settings.data_root)
    targets = TRAIN_TARGETS if args.family == ALL else (args.family,)
    neural = {
        "num_layers": args.num_layers,
        "hidden_size": args.hidden_size,
        "dropout": args.dropout,
    }
    if any(v is not None for v in neural.values()) and not set(targets) & set(NEURAL_FAMILIES):
        raise ValueError(
            "--num-layers, --hidden-size and --dropout set the neural architecture; "
            f"--family {args.family} trains no neural family (lstm, gru)"
        )
    rows = []
    for horizon in horizons(args.horizon):
        for target in targets:
            start = time.perf_counter()
            outputs = train(
                root,
                settings,
                horizon,
                target,
                system,
                tracker,
                tags={TAG_SOURCE: "cbi train"},
                overrides=neural if target in NEURAL_FAMILIES else None,
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
                    print(text_table(fold_table(out)))
                print(
                    f"{horizon} {out.family}: {out.predictions_path}, {out.model_dir}", flush=True
                )
                if out.tracked is not None:
                    print(f"  mlflow run {out.tracked.run_id}: {out.tracked.url}", flush=True)
    print(text_table(pl.DataFrame(rows)))
    if tracker is not None:
        print(f"mlflow ui --backend-store-uri {tracker.tracking_uri}")
    return 0
