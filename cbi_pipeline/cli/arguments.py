"""Options shared by the ``cbi`` subcommands. A flag that sets a pipeline setting takes its help
text (meaning, default, env variable) from ``cbi_pipeline.settings``, where it is written once."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from cbi_pipeline.core.vocabulary import HORIZON_LABELS
from cbi_pipeline.settings import (
    Settings,
    describe,
    setting_field,
    setting_type,
    settings_from_env,
)

ALL = "all"
HORIZON_CHOICES = (*HORIZON_LABELS, ALL)


def add_setting(
    p: argparse.ArgumentParser,
    flag: str,
    setting: str,
    *,
    many: bool = False,
    note: str = "",
    **kwargs: object,
) -> None:
    """A flag that overrides one setting; its help is the setting's description (and ``note``,
    what the flag means to this subcommand in particular)."""
    kind = setting_type(setting_field(setting))
    if kind is not str and "type" not in kwargs:
        kwargs["type"] = kind
    if many:
        kwargs |= {"nargs": "+", "metavar": "PATH"}
    text = f"{note} {describe(setting)}" if note else describe(setting)
    p.add_argument(flag, dest=setting, help=text, **kwargs)  # type: ignore[arg-type]


def add_horizon(p: argparse.ArgumentParser, default: str, with_all: bool = True) -> None:
    p.add_argument(
        "--horizon",
        default=default,
        choices=HORIZON_CHOICES if with_all else HORIZON_LABELS,
        help=f"forecast horizon{' (all = every horizon)' if with_all else ''}; default {default}",
    )


def add_sources(p: argparse.ArgumentParser) -> None:
    """Where the data comes from and where outputs go (export, cycle)."""
    add_setting(p, "--data-root", "data_root")
    add_setting(p, "--market", "market_paths", many=True)
    add_setting(p, "--signals", "signal_paths", many=True)
    add_setting(p, "--curve", "curve_paths", many=True)
    add_setting(p, "--target", "target_symbol")
    add_setting(p, "--regimes", "regimes_path")


def add_training_settings(p: argparse.ArgumentParser) -> None:
    """What training and tuning read (cbi train, cbi tune): the data root, the export's target
    and surface, the configuration file, the walk-forward, threads and MLflow."""
    add_setting(p, "--data-root", "data_root")
    add_setting(p, "--target", "target_symbol")
    add_setting(p, "--surface", "surface")
    add_setting(p, "--config", "config_path", metavar="FILE")
    add_setting(p, "--first-test-date", "first_test_date")
    add_setting(p, "--refit-step", "refit_step_days")
    p.add_argument("--cores", type=int, help="threads for the tree libraries (default: detected)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")


def settings_from_args(args: argparse.Namespace, extra: Mapping[str, object] = {}) -> Settings:
    """Defaults, then ``CBI_*``, then every setting flag the subcommand defines and was given."""
    given = {k: v for k, v in vars(args).items() if k in Settings.__dataclass_fields__}
    return settings_from_env({**given, **extra})


def horizons(value: str) -> tuple[str, ...]:
    return HORIZON_LABELS if value == ALL else (value,)
