"""``cbi tune``: an Optuna study of one family's hyperparameters on the rows before the first
test date (``steps.tuning.tune``); training then uses the parameters it writes."""

from __future__ import annotations

import argparse

import polars as pl

from cbi_pipeline.cli.arguments import add_horizon, add_training_settings, settings_from_args
from cbi_pipeline.core.hardware import detect_system
from cbi_pipeline.core.tables import text_table
from cbi_pipeline.core.tuning import DEFAULT_BLOCKS
from cbi_pipeline.core.vocabulary import LIGHTGBM, MODEL_FAMILIES, TAG_SOURCE
from cbi_pipeline.steps.tuning import tune
from cbi_pipeline.store.root import DataRoot
from cbi_pipeline.store.tracking import Tracker

NAME = "tune"
HELP = "tune a family's hyperparameters on the folds before the first test date"
DESCRIPTION = f"""\
Tune one model family for one horizon with Optuna (TPE sampler seeded with the train seed, a
median pruner after each fold) on tuning folds that end before the first test date: the
project's purged walk-forward over the export rows whose label window ends before it, with the
last --blocks refit blocks (default {DEFAULT_BLOCKS}) as the tuning test blocks. The objective
is the pooled walk-forward MAPE; the defaults are scored on the same folds. Writes
tuning/{{h}}/{{family}}.json under the data root (and an MLflow run); `cbi train` then uses the
parameters (only those that beat the defaults) and records them in the manifest. The test period
is never read.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_horizon(p, "1m", with_all=False)
    p.add_argument(
        "--family",
        default=LIGHTGBM,
        choices=MODEL_FAMILIES,
        help=f"the family to tune; default {LIGHTGBM}",
    )
    p.add_argument("--trials", type=int, default=20, help="Optuna trials (>= 1); default 20")
    p.add_argument(
        "--blocks",
        type=int,
        default=DEFAULT_BLOCKS,
        help=f"refit blocks before the first test date used as tuning test blocks; default "
        f"{DEFAULT_BLOCKS}",
    )
    add_training_settings(p)
    p.add_argument("--quiet", action="store_true", help="do not print each trial")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    root = DataRoot(settings.data_root)
    system = detect_system(cores=args.cores)
    tracker = None if args.no_mlflow else Tracker.for_data_root(settings.data_root)
    out = tune(
        root,
        settings,
        args.horizon,
        args.family,
        args.trials,
        system,
        blocks=args.blocks,
        tracker=tracker,
        tags={TAG_SOURCE: "cbi tune"},
        progress=None if args.quiet else (lambda line: print(line, flush=True)),
    )
    p = out.payload
    print(
        text_table(
            pl.DataFrame(
                [
                    {
                        "horizon": out.horizon,
                        "family": out.family,
                        "trials": p["trials"],
                        "pruned": p["pruned"],
                        "defaults_mape_pct": round(p["baseline_value"], 4),
                        "best_mape_pct": round(p["best_value"], 4),
                        "selected": p["selected"],
                        "seconds": round(p["wall_seconds"], 1),
                    }
                ]
            )
        )
    )
    print(
        f"tuning folds: {p['tuning']['walk_forward']['first_test_date']}..{p['tuning']['last_row_date']}"
    )
    print(f"parameters for training: {p['params'] or 'the defaults (no trial beat them)'}")
    print(f"{out.path}")
    if out.run_id is not None and tracker is not None:
        print(f"  mlflow run {out.run_id}: mlflow ui --backend-store-uri {tracker.tracking_uri}")
    return 0
