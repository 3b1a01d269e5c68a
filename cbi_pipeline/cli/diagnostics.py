"""``cbi diagnostics``: pre-training diagnostics and leakage checks; exit 1 when a check fails."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cbi_pipeline.cli.arguments import add_horizon, add_setting, horizons, settings_from_args
from cbi_pipeline.core.diagnostics import failing_checks
from cbi_pipeline.steps.diagnostics import diagnose_file, diagnose_root, summary_text
from cbi_pipeline.store.root import DataRoot, write_json

NAME = "diagnostics"
HELP = "pre-training diagnostics and leakage checks; exit 1 when a check fails"
DESCRIPTION = """\
Diagnose the data root's exports (or any export parquet with --data-path, a user's own included):
regime statistics, missing data, regime weights and the leakage report (target alignment,
truncation test, future-information screen and its canary). Writes the diagnostics JSON and
prints a summary; exit status 0 when every check passes, 1 when one fails, 2 on bad input.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-path",
        help="an export parquet (any, a user's own included); default: the data root's exports",
    )
    add_horizon(p, "all")
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
    add_setting(
        p,
        "--data-root",
        "data_root",
        note="With --data-path, its raw/ enables the truncation test.",
    )
    add_setting(p, "--target", "target_symbol")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    root = DataRoot(settings.data_root)
    if args.data_path:
        horizon = None if args.horizon == "all" else args.horizon
        path = Path(args.data_path)
        out = Path(args.out) if args.out else path.with_name(f"{path.stem}.diagnostics.json")
        raw = root if args.data_root else None
        outputs = [
            diagnose_file(path, horizon, out, settings, args.catalog and Path(args.catalog), raw)
        ]
    else:
        if args.out and args.horizon == "all":
            raise ValueError("--out needs a single --horizon (or --data-path)")
        outputs = diagnose_root(root, settings, horizons(args.horizon))
        if args.out:
            write_json(outputs[0].payload, Path(args.out))
    failed = False
    for o in outputs:
        print(summary_text(o.payload))
        for name, check in failing_checks(o.payload).items():
            failed = True
            named = ", ".join(check["offending"][:20]) or "-"
            print(f"FAIL {o.horizon} {name}: {check['summary']} [{named}]", file=sys.stderr)
        print(f"wrote {args.out or o.json_path}")
    return 1 if failed else 0
