"""Tuning on the tuning folds, then the real walk-forward with the defaults and with the tuned
parameters: does a better tuning-fold error carry over to the test folds?

Run: .venv/bin/python cbi_pipeline_tests/benchmarks/tuning.py [--data-root /tmp/tune_root]
     [--horizon 1m] [--family lightgbm] [--trials 20]

The data root must hold the horizon's export (``CBI_DATA_ROOT=/tmp/tune_root .venv/bin/cbi
export``); without it the script says so and exits 0. Steps, each the pipeline's own code:
``steps.tuning.tune`` (writes tuning/{h}/{family}.json under the data root), then
``steps.models.train`` twice: with the defaults in a temporary root holding a copy of the export
only, and with the tuned parameters in the data root (its manifest records ``tuned``). The
test-fold error is the walk-forward MAPE over every test fold (the manifest's ``val_mape``, what
the evaluation compares), beside the random walk's on the same rows. No MLflow.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from cbi_pipeline.core.export import export_filename
from cbi_pipeline.core.hardware import detect_system
from cbi_pipeline.settings import settings_from_env
from cbi_pipeline.steps.models import train
from cbi_pipeline.steps.tuning import tune
from cbi_pipeline.store.root import DataRoot


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", help="the root with the export (default: CBI_DATA_ROOT)")
    parser.add_argument("--horizon", default="1m")
    parser.add_argument("--family", default="lightgbm")
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    settings = settings_from_env(
        {"data_root": args.data_root, "fold_cache": 0}
    )  # time fitting, not the fold cache
    root = DataRoot(settings.data_root)
    export = root.export(export_filename(settings.target_symbol, settings.surface, args.horizon))
    if not export.exists():
        print(
            f"tuning: cannot run: {export} not found; build it first with "
            f"CBI_DATA_ROOT={settings.data_root} .venv/bin/cbi export"
        )
        return 0
    system = detect_system()
    print(f"{args.horizon} {args.family} on {export} ({system.cores} cores)")

    out = tune(root, settings, args.horizon, args.family, args.trials, system, progress=print)
    p = out.payload

    with tempfile.TemporaryDirectory(prefix="cbi-tune-bench-") as tmp:
        plain = replace(settings, data_root=str(Path(tmp) / "root"))
        copy = DataRoot(plain.data_root).export(export.name)
        copy.parent.mkdir(parents=True)
        copy.write_bytes(export.read_bytes())
        start = time.perf_counter()
        (default,) = train(DataRoot(plain.data_root), plain, args.horizon, args.family, system)
        default_s = time.perf_counter() - start
    assert default.manifest["tuned"] is None
    start = time.perf_counter()
    (tuned,) = train(root, settings, args.horizon, args.family, system)
    tuned_s = time.perf_counter() - start
    assert tuned.manifest["tuned"] is not None

    folds = p["tuning"]["folds"]
    print(
        f"tuning folds: {len(folds)} (test {folds[0]['test'][0]}..{folds[-1]['test'][1]}), "
        f"trials {p['trials']} ({p['pruned']} pruned), wall {p['wall_seconds']:.1f}s"
    )
    print(
        f"tuning-fold MAPE: defaults {p['baseline_value']:.4f}%, best {p['best_value']:.4f}% "
        f"(trial {p['best_trial']}); training uses {p['selected']}: {p['params'] or 'defaults'}"
    )
    print(
        f"test-fold MAPE ({len(default.manifest['folds'])} folds, "
        f"{default.result.predictions.height} rows): defaults {default.val_mape:.4f}% in "
        f"{default_s:.1f}s, tuned {tuned.val_mape:.4f}% in {tuned_s:.1f}s, random walk "
        f"{default.random_walk_mape:.4f}%"
    )
    print(
        f"tuning: horizon={args.horizon} family={args.family} trials={p['trials']} "
        f"pruned={p['pruned']} tune_s={p['wall_seconds']:.1f} "
        f"tuning_default={p['baseline_value']:.4f} tuning_best={p['best_value']:.4f} "
        f"test_default={default.val_mape:.4f} test_tuned={tuned.val_mape:.4f} "
        f"test_rw={default.random_walk_mape:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
