"""The ``cbi`` command: one module per subcommand in this folder, each on the same steps as the
Dagster assets."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from cbi_pipeline.cli import (
    config,
    correlations,
    cycle,
    diagnostics,
    evaluate,
    export,
    train,
    tune,
)
from cbi_pipeline.cli.errors import CycleError
from cbi_pipeline.core.contracts import DataContractError
from cbi_pipeline.core.regimes import RegimeConfigError
from cbi_pipeline.steps.promotion import PromotionError
from cbi_pipeline.store.root import StorageError

DESCRIPTION = (
    "cbi_pipeline from the terminal: the pipeline's steps on the same code as the Dagster assets "
    "(export, diagnostics, correlations, train, evaluate) and the whole cycle (cycle)."
)
# Each subcommand module defines NAME, HELP, DESCRIPTION, add_arguments(parser) and run(args).
SUBCOMMANDS = (config, export, cycle, diagnostics, correlations, train, tune, evaluate)

EXPECTED_ERRORS = (
    CycleError,
    PromotionError,
    DataContractError,
    RegimeConfigError,
    StorageError,
    FileNotFoundError,
    ValueError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cbi", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        p = sub.add_parser(
            command.NAME,
            help=command.HELP,
            description=command.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(p)
        p.set_defaults(func=command.run)
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
