"""Pipeline settings in one place: defaults, their meaning, and the CBI_* environment overrides."""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cbi_pipeline.config_file import (
    ConfigFileError,
    ProjectConfig,
    find_config,
    load_config,
)
from cbi_pipeline.core.correlations.spec import CorrelationSpec
from cbi_pipeline.core.curves.market import NEAREST, ROLL
from cbi_pipeline.core.curves.roll import RollSpec
from cbi_pipeline.core.export import ExportSpec
from cbi_pipeline.core.features import FeatureSpec
from cbi_pipeline.core.gates import GateSpec
from cbi_pipeline.core.hardware import SystemInfo, get_config_for_model
from cbi_pipeline.core.intervals import IntervalSpec
from cbi_pipeline.core.models.ensemble import EnsembleSpec
from cbi_pipeline.core.models.trees import TreeSpec
from cbi_pipeline.core.panel import PanelSpec
from cbi_pipeline.core.regimes import DEFAULT_REGIMES, Regime, regimes_from_json
from cbi_pipeline.core.vocabulary import MODEL_FAMILIES, horizon_days
from cbi_pipeline.core.walkforward import WalkForwardSpec

ENV_PREFIX = "CBI_"
SURFACE = re.compile(r"[A-Za-z0-9_-]+")


class SettingsError(ValueError):
    """A setting has a value the pipeline cannot run with; the message names it and its
    variable."""


def setting(default: object, description: str, env: str | None = None) -> Any:
    """A field of ``Settings``: its default and its description, written here once. The Dagster
    resource ``PipelineSettings``, the ``CBI_*`` overrides and the CLI help all derive from it.
    ``env``: the variable that overrides it, when not ``CBI_<NAME>``."""
    metadata = {"description": description} | ({"env": env} if env else {})
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """What the pipeline reads and where it writes. Each field has a ``CBI_<FIELD>`` env override
    (``describe(name)`` gives its meaning and default). Values are checked on creation: a bad
    one is an error naming the setting and its variable, before anything reads or writes."""

    data_root: str = setting(
        "data", "Folder (or fsspec URL) that holds every output (the data-root layout)."
    )
    market_paths: tuple[str, ...] = setting(
        (), "Raw market parquet/CSV files or globs; empty = the built-in sample market."
    )
    signal_paths: tuple[str, ...] = setting(
        (), "Raw signal files or globs; ignored for the sample, which brings its own signals."
    )
    curve_paths: tuple[str, ...] = setting(
        (),
        "Raw futures-curve parquet/CSV files or globs (date, symbol, contract, expiry, close; "
        "volume, open_interest optional), validated and kept as raw/curve.parquet; with no "
        "market files, the front-month series come from the curve.",
    )
    config_path: str = setting(
        "",
        "Project configuration file (TOML: gates, families, hyperparameters, neural "
        "architecture, settings); empty = cbi.toml in the data root when there, else defaults.",
        env="CBI_CONFIG",
    )
    roll_days_before_notice: int = setting(
        5,
        "Curves: a position rolls to the next contract this many weekdays (at least 1) before "
        "the held contract's first notice day.",
    )
    target_symbol: str = setting("ZL", "The symbol to forecast.")
    surface: str = setting(
        "prod", "Export surface, as in exports/zl_training_{surface}_allhistory_{h}.parquet."
    )
    regimes_path: str = setting(
        "", "JSON regime calendar replacing the default one; empty = the default calendar."
    )
    sample_seed: int = setting(20000103, "Seed of the sample market generator.")
    sample_start: str = setting("2000-01-03", "First business day of the sample market.")
    sample_end: str = setting(
        "", "Last day of the sample market; empty = the last business day before today."
    )
    market_staleness_days: int = setting(
        7,
        "Most calendar days a market close is carried forward in the panel; a label whose "
        "window spans a longer hole in the target's dates is null.",
    )
    signal_staleness_days: int = setting(
        45, "Most calendar days a signal value is carried forward in the panel."
    )
    first_test_date: str = setting(
        "2010-01-04", "Walk-forward: the first test block starts on the first day on/after it."
    )
    refit_step_days: int = setting(
        252, "Walk-forward: trading days per test block, one refit each (252 = yearly)."
    )
    validation_rows: int = setting(
        252, "Walk-forward: early-stopping rows taken from the end of each fold's training rows."
    )
    min_train_rows: int = setting(504, "Walk-forward: fewest fitted rows the first fold may have.")
    max_features: int = setting(
        32,
        "Models: features kept per fold by |correlation| with the label on its fit rows; 0 = all.",
    )
    max_bin: int = setting(64, "Tree models: histogram bins per feature.")
    train_seed: int = setting(42, "Seed of every model fit.")
    fold_cache: int = setting(
        1,
        "Walk-forward: 1 reuses every fold (and final model) whose inputs are unchanged since "
        "cache/folds under the data root stored it; 0 refits them all (a full rebuild).",
    )
    cache_max_age_days: int = setting(
        7,
        "Correlation cache: a partition whose last data date is more than this many calendar "
        "days before the newest data date is stale and is rebuilt on demand.",
    )
    correlation_top_k: int = setting(
        3, "Correlation cache: candidates per block for cross-block correlations."
    )
    ewma_lambda: float = setting(
        0.94,
        "Intervals: decay of the EWMA volatility that scales the out-of-fold residuals "
        "(RiskMetrics 0.94).",
    )
    min_calibration_rows: int = setting(
        252,
        "Intervals: fewest residuals a fold's calibration uses; fewer of a family's own "
        "out-of-fold residuals are topped up with the random walk's history.",
    )
    coverage_tolerance: float = setting(
        0.03,
        "Gates: the candidate's 80% and 90% intervals must cover within this share of nominal "
        "(0.03 = 3 points).",
    )
    ensemble_shrinkage_periods: float = setting(
        20.0,
        "Ensemble: prior strength toward the random walk, in independent h-step periods of "
        "evidence.",
    )
    ensemble_departure_p: float = setting(
        0.05,
        "Ensemble: leaves the random walk only when its earlier proposals beat it out of sample "
        "with a one-sided Diebold-Mariano p-value below this (0.5 = any lower mean error).",
    )
    correlation_key_partners: str = setting(
        "",
        "Correlation cache: extra series (comma-separated) paired with the target and exported "
        "as rolling-correlation features.",
    )

    def __post_init__(self) -> None:
        problems = [
            f"{name} ({env_name(name)}) = {getattr(self, name)!r}: expected {rule}"
            for name, rule, ok in self._rules()
            if not ok(getattr(self, name))
        ]
        if problems:
            raise SettingsError("invalid setting(s): " + "; ".join(problems))

    @staticmethod
    def _rules() -> tuple[tuple[str, str, Callable[[Any], bool]], ...]:
        def at_least(n: float) -> Callable[[Any], bool]:
            return lambda v: math.isfinite(v) and v >= n

        def iso_date(v: str) -> bool:
            try:
                dt.date.fromisoformat(v)
            except ValueError:
                return False
            return True

        return (
            ("data_root", "a folder or URL (not empty)", lambda v: bool(str(v).strip())),
            ("target_symbol", "a symbol (not empty)", lambda v: bool(v.strip())),
            ("surface", "letters, digits, '_' or '-'", lambda v: SURFACE.fullmatch(v) is not None),
            ("sample_start", "an ISO date (YYYY-MM-DD)", iso_date),
            ("sample_end", "empty or an ISO date (YYYY-MM-DD)", lambda v: v == "" or iso_date(v)),
            ("first_test_date", "an ISO date (YYYY-MM-DD)", iso_date),
            (
                "market_staleness_days",
                "an integer >= 4 (it is also the longest hole in the target's dates a label may "
                "span, and a holiday weekend is 4 days)",
                at_least(4),
            ),
            ("signal_staleness_days", "an integer >= 0", at_least(0)),
            ("refit_step_days", "an integer >= 1", at_least(1)),
            ("validation_rows", "an integer >= 1", at_least(1)),
            ("min_train_rows", "an integer >= 1", at_least(1)),
            ("max_features", "an integer >= 0 (0 = all)", at_least(0)),
            ("max_bin", "an integer >= 2", at_least(2)),
            ("sample_seed", "an integer >= 0", at_least(0)),
            ("train_seed", "an integer >= 0", at_least(0)),
            ("fold_cache", "0 or 1", lambda v: v in (0, 1)),
            ("cache_max_age_days", "an integer >= 0", at_least(0)),
            ("correlation_top_k", "an integer >= 1", at_least(1)),
            ("roll_days_before_notice", "an integer >= 1", at_least(1)),
            ("ewma_lambda", "a number strictly between 0 and 1", lambda v: 0 < v < 1),
            ("min_calibration_rows", "an integer >= 0", at_least(0)),
            ("coverage_tolerance", "a number in [0, 1)", lambda v: 0 <= v < 1),
            ("ensemble_shrinkage_periods", "a finite number >= 0", at_least(0)),
            ("ensemble_departure_p", "a number in (0, 1]", lambda v: 0 < v <= 1),
        )

    @property
    def uses_sample(self) -> bool:
        return not self.market_paths and not self.curve_paths

    @property
    def front_rule(self) -> str:
        """How the target's front month is chosen (the futures_curve baseline forecasts it):
        ``roll`` when the front comes from the curve under the roll rule (curve files, no
        market file), else ``nearest``: a market file's front month (and the sample's) is the
        nearest contract, held to its last trade date, as the real 1995-2010 file is."""
        return ROLL if self.curve_paths and not self.market_paths else NEAREST

    def regimes(self) -> tuple[Regime, ...]:
        if not self.regimes_path:
            return DEFAULT_REGIMES
        path = Path(self.regimes_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: regime calendar file not found (regimes_path)")
        return regimes_from_json(path.read_text(encoding="utf-8"), str(path))

    def correlation_spec(self) -> CorrelationSpec:
        return CorrelationSpec(
            target_symbol=self.target_symbol,
            top_k=self.correlation_top_k,
            extra_key_partners=split_list(self.correlation_key_partners),
            regimes=self.regimes(),
        )

    def roll_spec(self) -> RollSpec:
        return RollSpec(days_before_notice=self.roll_days_before_notice)

    def panel_spec(self) -> PanelSpec:
        return PanelSpec(
            self.target_symbol,
            self.market_staleness_days,
            self.signal_staleness_days,
            self.roll_spec(),
        )

    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec(target_symbol=self.target_symbol)

    def export_spec(self) -> ExportSpec:
        return ExportSpec(
            self.target_symbol, self.surface, self.regimes(), self.market_staleness_days
        )

    def walk_forward_spec(self, horizon: str) -> WalkForwardSpec:
        try:
            first = dt.date.fromisoformat(self.first_test_date)
        except ValueError:
            raise ValueError(
                f"first_test_date {self.first_test_date!r} is not an ISO date (YYYY-MM-DD)"
            ) from None
        return WalkForwardSpec(
            horizon_days=horizon_days(horizon),
            first_test_date=first,
            refit_step=self.refit_step_days,
            validation_rows=self.validation_rows,
            min_train_rows=self.min_train_rows,
        )

    def tree_spec(self, family: str, hyper: Mapping[str, Any]) -> TreeSpec:
        return TreeSpec(
            family=family,
            hyper=dict(hyper),
            max_features=self.max_features,
            max_bin=self.max_bin,
            seed=self.train_seed,
        )

    def interval_spec(self) -> IntervalSpec:
        return IntervalSpec(
            ewma_lambda=self.ewma_lambda, min_calibration_rows=self.min_calibration_rows
        )

    def ensemble_spec(self) -> EnsembleSpec:
        return EnsembleSpec(
            shrinkage_periods=self.ensemble_shrinkage_periods,
            departure_p=self.ensemble_departure_p,
        )

    def project_config(self) -> ProjectConfig:
        """The configuration file in effect (``config_path``, else cbi.toml in the data root),
        validated; an empty ``ProjectConfig`` when there is none."""
        return load_config(
            find_config(self.config_path, self.data_root), tuple(f.name for f in fields(Settings))
        )

    def gate_spec(self, horizon: str) -> GateSpec:
        """The seed's thresholds for the horizon, with the configuration file's gates over them."""
        base = GateSpec.for_horizon(horizon, coverage_tolerance=self.coverage_tolerance)
        return replace(base, **self.project_config().gate_overrides(horizon))

    def model_params(self, family: str, horizon: str, system: SystemInfo) -> dict[str, Any]:
        """``get_config_for_model`` for this machine, with the configuration file's
        hyperparameters (and neural architecture) over it."""
        params = get_config_for_model(family, horizon, system)
        return params | self.project_config().hyperparameters_for(family, horizon)

    def enabled_families(self) -> tuple[str, ...]:
        """The model families the configuration file enables (all of them without one)."""
        return self.project_config().families or MODEL_FAMILIES

    def sample_dates(self) -> tuple[dt.date, dt.date | None]:
        end = dt.date.fromisoformat(self.sample_end) if self.sample_end else None
        return dt.date.fromisoformat(self.sample_start), end


def split_list(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.replace(os.pathsep, ",").split(",") if p.strip())


def env_name(name: str) -> str:
    """The environment variable that overrides a setting, e.g. ``CBI_DATA_ROOT`` (or the one its
    field names, e.g. ``CBI_CONFIG`` for ``config_path``)."""
    named = setting_field(name).metadata.get("env")
    return str(named) if named else ENV_PREFIX + name.upper()


def setting_fields() -> tuple[Field[Any], ...]:
    return fields(Settings)


def setting_field(name: str) -> Field[Any]:
    for f in fields(Settings):
        if f.name == name:
            return f
    raise KeyError(f"no setting named {name!r}")


def describe(name: str) -> str:
    """A setting's description with its default and env override (for CLI help and docs)."""
    f = setting_field(name)
    default = ", ".join(f.default) if isinstance(f.default, tuple) else f.default
    shown = f"{default!r}" if default != "" else "empty"
    return f"{f.metadata['description']} Default: {shown}; env {env_name(name)}."


SCALAR_TYPES: dict[object, type] = {"int": int, int: int, "float": float, float: float}


def setting_type(f: Field[Any]) -> type:
    """int, float or str: how a scalar setting's text (env, CLI) is parsed."""
    return SCALAR_TYPES.get(f.type, str)


def is_paths_setting(f: Field[Any]) -> bool:
    return f.name.endswith("_paths")


def settings_from_env(
    overrides: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then ``CBI_*`` variables, then explicit overrides (None values are ignored)."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = env.get(env_name(f.name))
        if raw is None or raw == "":
            continue
        if is_paths_setting(f):
            values[f.name] = split_list(raw)
        elif setting_type(f) is not str:
            kind = setting_type(f)
            try:
                values[f.name] = kind(raw)
            except ValueError:
                expected = "an integer" if kind is int else "a number"
                raise ValueError(f"{env_name(f.name)}={raw!r}: expected {expected}") from None
        else:
            values[f.name] = raw
    values.update(
        {
            k: (tuple(v) if isinstance(v, list) else v)
            for k, v in (overrides or {}).items()
            if v is not None
        }
    )
    base = file_settings(
        str(values.get("config_path", "")), str(values.get("data_root", Settings().data_root))
    )
    return replace(Settings(), **{**base, **values})


def file_settings(config_path: str, data_root: str) -> dict[str, Any]:
    """The ``[settings]`` of the configuration file, typed like the fields they set: the
    defaults that ``CBI_*`` variables and explicit overrides replace."""
    path = find_config(config_path, data_root)
    config = load_config(path, tuple(f.name for f in fields(Settings)))
    out: dict[str, Any] = {}
    for name, value in config.settings.items():
        key = f"{path}: settings.{name}"
        if name in ("config_path", "data_root") and not config_path:
            raise ConfigFileError(
                f"{key}: cannot be set by the cbi.toml found in the data root itself; set it "
                f"with {env_name(name)} (or put the file at CBI_CONFIG)"
            )
        f = setting_field(name)
        if is_paths_setting(f):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigFileError(f"{key}: {value!r}: expected a list of paths or globs")
            out[name] = tuple(value)
            continue
        kind = setting_type(f)
        ok = (
            isinstance(value, str)
            if kind is str
            else isinstance(value, int) and not isinstance(value, bool)
            if kind is int
            else isinstance(value, int | float) and not isinstance(value, bool)
        )
        if not ok:
            expected = {str: "a string", int: "an integer", float: "a number"}[kind]
            raise ConfigFileError(f"{key}: {value!r}: expected {expected}")
        out[name] = float(value) if kind is float else value
    return out
