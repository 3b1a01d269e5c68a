"""LSTM and GRU over the full purged walk-forward of one horizon on the default data.

Run: .venv/bin/python cbi_pipeline_tests/benchmarks/neural.py [--runs 3] [--horizon 1m]
     [--data-root DIR] [--device cpu|cuda|mps] [--threads-baseline N]

Without --data-root the default (sample) data's export is built into a temporary root first (not
timed); with it, the predictions and models are written there. Each family is trained --runs times exactly as ``lstm_model`` / ``gru_model`` do (the
same ``steps.models.train``, settings from the detected hardware config, no MLflow);
the figures printed are medians, the time including the final model. --threads-baseline N also
times each family once with N torch threads (e.g. the core count) against the configured one
thread, as the baseline for that choice. The last line is the summary:
``neural: horizon=1m folds=N lstm_s=N gru_s=N total_s=N``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from cbi_pipeline.core.export import export_filename
from cbi_pipeline.core.hardware import detect_system, get_config_for_model
from cbi_pipeline.settings import Settings, settings_from_env
from cbi_pipeline.steps import data as tasks
from cbi_pipeline.steps.models import train
from cbi_pipeline.store.root import DataRoot

FAMILIES = ("lstm", "gru")


def ensure_export(settings: Settings, horizon: str) -> None:
    root = DataRoot(settings.data_root)
    if root.export(export_filename(settings.target_symbol, settings.surface, horizon)).exists():
        return
    start = time.perf_counter()
    tasks.write_raw(root, tasks.load_raw(settings))
    tasks.build_exports(root, settings, [horizon], panel=tasks.build_panel(root, settings))
    print(f"built the {horizon} export in {time.perf_counter() - start:.1f}s (not timed)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--horizon", default="1m")
    parser.add_argument("--data-root", help="a root whose export to use (default: a temp root)")
    parser.add_argument("--device", choices=("cpu", "cuda", "mps"), help="default: detected")
    parser.add_argument("--threads-baseline", type=int, help="also time N torch threads")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cbi-neural-bench-") as tmp:
        settings = settings_from_env(
            {"data_root": args.data_root or tmp, "fold_cache": 0}
        )  # time fitting, not the fold cache
        ensure_export(settings, args.horizon)
        system = detect_system(device=args.device)
        hyper = get_config_for_model("lstm", args.horizon, system)
        print(
            f"{system.cores} cores, {system.ram_gb} GB, device {system.device}, {system.platform}; "
            f"batch {hyper['batch_size']}, sequence {hyper['sequence_length']}, hidden "
            f"{hyper['hidden_size']}, threads {hyper['num_threads']}",
            flush=True,
        )
        medians: dict[str, float] = {}
        folds = 0
        for family in FAMILIES:
            seconds = []
            for i in range(args.runs):
                start = time.perf_counter()
                (out,) = train(DataRoot(settings.data_root), settings, args.horizon, family, system)
                wall = time.perf_counter() - start
                seconds.append(wall)
                manifest = out.manifest
                folds = len(manifest["folds"])
                epochs = [f["epochs"] for f in manifest["folds"]]
                print(
                    f"{family} run {i + 1}: {wall:.1f}s, {folds} folds + final, epochs per fold "
                    f"median {statistics.median(epochs):g} (min {min(epochs)}, max {max(epochs)}, "
                    f"sum {sum(epochs)}), final {manifest['final']['epochs']}, on "
                    f"{manifest['final']['device']} ({manifest['final']['precision']}); "
                    f"MAPE {out.val_mape:.3f}% vs random walk {out.random_walk_mape:.3f}%",
                    flush=True,
                )
            medians[family] = statistics.median(seconds)
            if args.threads_baseline:
                start = time.perf_counter()
                train(
                    DataRoot(settings.data_root),
                    settings,
                    args.horizon,
                    family,
                    system,
                    overrides={"threads": args.threads_baseline},
                )
                wall = time.perf_counter() - start
                print(
                    f"{family} with {args.threads_baseline} threads: {wall:.1f}s "
                    f"(x{wall / medians[family]:.2f} the configured threads' time)",
                    flush=True,
                )
        total = sum(medians.values())
        print(
            f"neural: horizon={args.horizon} folds={folds} lstm_s={medians['lstm']:.1f} "
            f"gru_s={medians['gru']:.1f} total_s={total:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
