"""The ``cbi`` command: the seed's scripts on the same core functions as the assets."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence

from cbi_pipeline import correlations_cli, evaluate_cli, train_cli
from cbi_pipeline.core.contracts import DataContractError
from cbi_pipeline.core.hardware import FAMILIES, detect_system, get_config_for_model, system_as_dict
from cbi_pipeline.core.horizons import HORIZON_LABELS
from cbi_pipeline.core.regimes import RegimeConfigError
from cbi_pipeline.errors import CycleError
from cbi_pipeline.evaluate import PromotionError
from cbi_pipeline.settings import Settings, settings_from_env
from cbi_pipeline.storage import StorageError

EXPECTED_ERRORS = (
    CycleError,
    PromotionError,
    DataContractError,
    RegimeConfigError,
    StorageError,
    FileNotFoundError,
    ValueError,
)


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="output folder (default: $CBI_DATA_ROOT or data)")
    p.add_argument(
        "--market",
        nargs="+",
        metavar="PATH",
        help="raw market parquet/CSV files or globs (default: the sample market)",
    )
    p.add_argument("--signals", nargs="+", metavar="PATH", help="raw signal files or globs")
    p.add_argument("--target", help="target symbol (default ZL)")
    p.add_argument("--regimes", help="JSON regime calendar replacing the default")


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    return settings_from_env(
        {
            "data_root": args.data_root,
            "market_paths": args.market,
            "signal_paths": args.signals,
            "target_symbol": args.target,
            "regimes_path": args.regimes,
            **extra,
        }
    )


def _horizons(value: str) -> tuple[str, ...]:
    return HORIZON_LABELS if value == "all" else (value,)


def cmd_config(args: argparse.Namespace) -> int:
    system = detect_system(args.cores, args.ram_gb, args.device)
    payload = {
        "system": system_as_dict(system),
        "families": {f: get_config_for_model(f, args.horizon, system) for f in FAMILIES},
    }
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    print("detected system")
    for k, v in payload["system"].items():
        print(f"  {k:<16} {v}")
    for family, params in payload["families"].items():
        print(f"{family} (horizon {args.horizon})")
        for k, v in params.items():
            print(f"  {k:<22} {v}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cbi_pipeline import tasks
    from cbi_pipeline.core.export import summarize_export
    from cbi_pipeline.storage import DataRoot

    settings = _settings(args, surface=args.surface)
    root = DataRoot(settings.data_root)
    start = time.perf_counter()
    raw = tasks.load_raw(settings)
    tasks.write_raw(root, raw)
    panel = tasks.build_panel(root, settings)
    for result in tasks.build_exports(root, settings, _horizons(args.horizon), panel=panel):
        s = summarize_export(result.frame, result.horizon)
        print(
            f"{result.horizon:>4}: {s.rows} rows {s.first_date}..{s.last_date}, "
            f"{s.features} features, {s.labelled_rows} labelled -> {result.path}"
        )
    print(f"built from {raw.source} in {time.perf_counter() - start:.1f}s")
    return 0


def cmd_cycle(args: argparse.Namespace) -> int:
    from cbi_pipeline.cycle import ensure_instance, export_table, run_cycle
    from cbi_pipeline.evaluate import gate_table
    from cbi_pipeline.report import text_table
    from cbi_pipeline.storage import DataRoot

    settings = _settings(args)
    instance = ensure_instance(DataRoot(settings.data_root).dagster_home)
    start = time.perf_counter()

    def progress(stage: str, key: str | None, seconds: float) -> None:
        print(f"  {stage:<10} {key or '-':<4} done in {seconds:5.1f}s", flush=True)

    print(
        f"running the cycle on {settings.market_paths or 'the sample market'} "
        f"-> {settings.data_root}",
        flush=True,
    )
    report = run_cycle(settings, instance, _horizons(args.horizon), on_run=progress)
    print(
        f"cycle finished in {time.perf_counter() - start:.1f}s: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in report.stage_seconds.items())
        + f" ({len(report.run_ids)} Dagster runs in {instance.root_directory})"
    )
    print(text_table(export_table(settings, _horizons(args.horizon))))
    for label, checks in report.failed_checks.items():
        print(f"  failing checks in {label}: {', '.join(checks)}")
    print("gates (a failing gate is a result, not an error):")
    print(text_table(gate_table(DataRoot(settings.data_root), _horizons(args.horizon))))
    return 0


def cmd_diagnostics(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cbi_pipeline import diagnose
    from cbi_pipeline.core.diagnostics import failing_checks
    from cbi_pipeline.storage import DataRoot

    settings = settings_from_env({"data_root": args.data_root, "target_symbol": args.target})
    root = DataRoot(settings.data_root)
    if args.data_path:
        horizon = None if args.horizon == "all" else args.horizon
        path = Path(args.data_path)
        out = Path(args.out) if args.out else path.with_name(f"{path.stem}.diagnostics.json")
        raw = root if args.data_root else None
        outputs = [
            diagnose.diagnose_file(
                path, horizon, out, settings, args.catalog and Path(args.catalog), raw
            )
        ]
    else:
        if args.out and args.horizon == "all":
            raise ValueError("--out needs a single --horizon (or --data-path)")
        outputs = diagnose.diagnose_root(root, settings, _horizons(args.horizon))
        if args.out:
            from cbi_pipeline.storage import write_json

            write_json(outputs[0].payload, Path(args.out))
    failed = False
    for o in outputs:
        print(diagnose.summary_text(o.payload))
        for name, check in failing_checks(o.payload).items():
            failed = True
            named = ", ".join(check["offending"][:20]) or "-"
            print(f"FAIL {o.horizon} {name}: {check['summary']} [{named}]", file=sys.stderr)
        print(f"wrote {args.out or o.json_path}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cbi", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="print the detected system and each family's parameters")
    p.add_argument("--horizon", default="1m", choices=HORIZON_LABELS)
    p.add_argument("--cores", type=int)
    p.add_argument("--ram-gb", type=float)
    p.add_argument("--device", choices=("cpu", "cuda", "mps"))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("export", help="build training exports (same code as the asset)")
    p.add_argument("--horizon", default="all", choices=(*HORIZON_LABELS, "all"))
    p.add_argument("--surface", default=None, help="export surface (default prod)")
    _add_source_args(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("cycle", help="run the whole cycle through Dagster (what make demo runs)")
    p.add_argument("--horizon", default="all", choices=(*HORIZON_LABELS, "all"))
    _add_source_args(p)
    p.set_defaults(func=cmd_cycle)

    p = sub.add_parser(
        "diagnostics",
        help="pre-training diagnostics and leakage checks; exit 1 when a check fails",
    )
    p.add_argument(
        "--data-path",
        help="an export parquet (any, a user's own included); default: the data root's exports",
    )
    p.add_argument(
        "--horizon",
        default="all",
        choices=(*HORIZON_LABELS, "all"),
        help="horizon (with --data-path: inferred from its target_ column when omitted)",
    )
    p.add_argument(
        "--out",
        help="JSON to write (default: diagnostics/{h}.json under the root, "
        "or FILE.diagnostics.json beside --data-path)",
    )
    p.add_argument(
        "--catalog",
        help="feature catalog JSON giving feature blocks "
        "(default: feature_catalog.json beside the export)",
    )
    p.add_argument(
        "--data-root",
        help="data root; with --data-path its raw/ enables the "
        "truncation test (default: $CBI_DATA_ROOT or data)",
    )
    p.add_argument("--target", help="target symbol (default ZL)")
    p.set_defaults(func=cmd_diagnostics)

    p = sub.add_parser(
        "correlations",
        help="build or update the correlation cache and print key pairs and staleness",
        description=correlations_cli.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    correlations_cli.add_arguments(p)
    p.set_defaults(func=correlations_cli.cmd_correlations)

    p = sub.add_parser(
        "train",
        help="train a model family or the baselines on the purged walk-forward",
        description=train_cli.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train_cli.add_arguments(p)
    p.set_defaults(func=train_cli.cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="metrics and gates of any predictions parquet",
        description=evaluate_cli.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate_cli.add_arguments(p)
    p.set_defaults(func=evaluate_cli.cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except EXPECTED_ERRORS as exc:
        print(f"cbi {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
