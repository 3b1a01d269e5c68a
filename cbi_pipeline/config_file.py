"""The project configuration file (TOML): gates, enabled families, hyperparameters, the neural
architecture and any setting, validated before anything runs.

Where it is found: the path in ``CBI_CONFIG`` (``Settings.config_path``), else ``cbi.toml`` in
the data root, else none (every default). What overrides it: the ``CBI_*`` variables, then the
CLI flags and the Dagster launchpad (they set ``Settings`` fields, and ``[settings]`` only
supplies the defaults they replace).

Layout (every section and key optional)::

    [settings]                 # any Settings field, by name (see `cbi config`)
    first_test_date = "2010-01-04"
    refit_step_days = 252

    families = ["lightgbm", "xgboost", "lstm", "gru"]   # enabled model families

    [gates.default]            # every horizon, below its own table
    max_mape_drift = 0.2
    [gates.1m]
    mape_max = 4.0             # MAPE (%) at most; false = no absolute bar
    sharpe_min = 1.0
    mape_max_vs_random_walk = 1.0   # MAPE at most this multiple of the random walk's
    max_dm_p = 0.10            # the skill gate also needs Diebold-Mariano p below this
    min_skill = 0.0
    max_mape_drift = 0.2

    [hyperparameters.lightgbm]        # every horizon
    learning_rate = 0.05
    [hyperparameters.lightgbm.1m]     # one horizon, over the above
    num_leaves = 15

    [neural]                   # LSTM and GRU; [neural.lstm] / [neural.gru] for one family
    num_layers = 2
    hidden_size = 64
    dropout = 0.1

Every error names the file and the key (``cbi.toml: gates.1m.mape_maxx: unknown key; expected
one of ...``) and is raised when the settings are read: before any step reads or writes.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cbi_pipeline.core.vocabulary import HORIZON_LABELS, MODEL_FAMILIES, NEURAL_FAMILIES

CONFIG_FILE_NAME = "cbi.toml"
SECTIONS = ("settings", "families", "gates", "hyperparameters", "neural")
GATE_KEYS: dict[str, str] = {
    "mape_max": "a number > 0, or false for no absolute bar",
    "sharpe_min": "a number",
    "mape_max_vs_random_walk": "a number > 0 (a multiple of the random walk's MAPE)",
    "max_dm_p": "a number in (0, 1]",
    "min_skill": "a number",
    "max_mape_drift": "a number >= 0",
}
NEURAL_HYPERPARAMETERS = (
    "batch_size",
    "sequence_length",
    "hidden_size",
    "num_layers",
    "dropout",
    "learning_rate",
    "max_epochs",
    "patience",
)
# The hyperparameters each family's training honours (the defaults of get_config_for_model and
# the library parameters documented for tuning); anything else is a typo until proven otherwise.
HYPERPARAMETER_KEYS: dict[str, tuple[str, ...]] = {
    "lightgbm": (
        "num_leaves",
        "max_depth",
        "learning_rate",
        "n_estimators",
        "early_stopping_rounds",
        "min_data_in_leaf",
        "min_child_samples",
        "min_sum_hessian_in_leaf",
        "feature_fraction",
        "bagging_fraction",
        "bagging_freq",
        "lambda_l1",
        "lambda_l2",
        "min_gain_to_split",
        "extra_trees",
        "num_threads",
    ),
    "xgboost": (
        "max_depth",
        "learning_rate",
        "n_estimators",
        "early_stopping_rounds",
        "min_child_weight",
        "subsample",
        "colsample_bytree",
        "reg_lambda",
        "reg_alpha",
        "gamma",
        "tree_method",
        "n_jobs",
    ),
    "lstm": NEURAL_HYPERPARAMETERS,
    "gru": NEURAL_HYPERPARAMETERS,
}
NEURAL_KEYS = ("num_layers", "hidden_size", "dropout")


class ConfigFileError(ValueError):
    """The configuration file cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class ProjectConfig:
    """The validated file (``path`` None: no file, every default)."""

    path: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    families: tuple[str, ...] | None = None
    gates: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    hyperparameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    neural: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def gate_overrides(self, horizon: str) -> dict[str, Any]:
        """``[gates.default]`` then ``[gates.<h>]``; ``mape_max = false`` becomes None."""
        merged = {**self.gates.get("default", {}), **self.gates.get(horizon, {})}
        if merged.get("mape_max") is False:
            merged["mape_max"] = None
        return merged

    def hyperparameters_for(self, family: str, horizon: str) -> dict[str, Any]:
        """``[neural]`` and ``[neural.<family>]`` (neural families), then
        ``[hyperparameters.<family>]``, then ``[hyperparameters.<family>.<h>]``."""
        out: dict[str, Any] = {}
        if family in NEURAL_FAMILIES:
            out |= self.neural.get("*", {})
            out |= self.neural.get(family, {})
        table = self.hyperparameters.get(family, {})
        out |= {k: v for k, v in table.items() if not isinstance(v, dict)}
        out |= table.get(horizon, {})
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "settings": dict(self.settings),
            "families": None if self.families is None else list(self.families),
            "gates": {k: dict(v) for k, v in self.gates.items()},
            "hyperparameters": {k: dict(v) for k, v in self.hyperparameters.items()},
            "neural": {k: dict(v) for k, v in self.neural.items()},
        }


def _fail(path: str, key: str, problem: str) -> ConfigFileError:
    return ConfigFileError(f"{path}: {key}: {problem}")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_gate(path: str, key: str, name: str, value: object) -> None:
    rules = {
        "mape_max": lambda v: v is False or (_number(v) and v > 0),
        "sharpe_min": _number,
        "mape_max_vs_random_walk": lambda v: _number(v) and v > 0,
        "max_dm_p": lambda v: _number(v) and 0 < v <= 1,
        "min_skill": _number,
        "max_mape_drift": lambda v: _number(v) and v >= 0,
    }
    if name == "coverage_tolerance":
        raise _fail(path, key, "a setting, not a gate key: put it under [settings]")
    if name not in rules:
        raise _fail(path, key, f"unknown key; expected one of {', '.join(GATE_KEYS)}")
    if not rules[name](value):
        raise _fail(path, key, f"{value!r} is not {GATE_KEYS[name]}")


def _table(path: str, key: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, key, f"expected a table ([{key}]), got {type(value).__name__}")
    return value


def _gates(path: str, raw: object) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for scope, body in _table(path, "gates", raw).items():
        if scope not in ("default", *HORIZON_LABELS):
            raise _fail(
                path,
                f"gates.{scope}",
                f"unknown horizon; expected default or one of {', '.join(HORIZON_LABELS)}",
            )
        table = _table(path, f"gates.{scope}", body)
        for name, value in table.items():
            _check_gate(path, f"gates.{scope}.{name}", name, value)
        out[scope] = dict(table)
    return out


def _check_hyper(path: str, key: str, family: str, name: str, value: object) -> None:
    allowed = HYPERPARAMETER_KEYS[family]
    if name not in allowed:
        raise _fail(
            path, key, f"unknown {family} hyperparameter; expected one of {', '.join(allowed)}"
        )
    if isinstance(value, dict | list) or (isinstance(value, float) and not math.isfinite(value)):
        raise _fail(path, key, f"{value!r}: expected a number, a string or a boolean")


def _hyperparameters(path: str, raw: object) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for family, body in _table(path, "hyperparameters", raw).items():
        if family not in MODEL_FAMILIES:
            raise _fail(
                path,
                f"hyperparameters.{family}",
                f"unknown model family; expected one of {', '.join(MODEL_FAMILIES)}",
            )
        table = _table(path, f"hyperparameters.{family}", body)
        for name, value in table.items():
            key = f"hyperparameters.{family}.{name}"
            if isinstance(value, dict):
                if name not in HORIZON_LABELS:
                    raise _fail(
                        path,
                        key,
                        f"a table here must be a horizon ({', '.join(HORIZON_LABELS)}); "
                        f"or {name!r} is a misspelt hyperparameter",
                    )
                for inner, v in value.items():
                    _check_hyper(path, f"{key}.{inner}", family, inner, v)
            else:
                _check_hyper(path, key, family, name, value)
        out[family] = dict(table)
    return out


def _neural(path: str, raw: object) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"*": {}}
    rules = {
        "num_layers": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8,
        "hidden_size": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096,
        "dropout": lambda v: _number(v) and 0 <= v < 1,
    }
    expected = {
        "num_layers": "an integer from 1 to 8",
        "hidden_size": "an integer from 1 to 4096",
        "dropout": "a number in [0, 1)",
    }

    def check(scope: str, table: Mapping[str, Any]) -> dict[str, Any]:
        for name, value in table.items():
            key = f"neural.{name}" if scope == "*" else f"neural.{scope}.{name}"
            if name not in rules:
                raise _fail(path, key, f"unknown key; expected one of {', '.join(NEURAL_KEYS)}")
            if not rules[name](value):
                raise _fail(path, key, f"{value!r} is not {expected[name]}")
        return dict(table)

    top = _table(path, "neural", raw)
    out["*"] = check("*", {k: v for k, v in top.items() if not isinstance(v, dict)})
    for name, value in top.items():
        if isinstance(value, dict):
            if name not in NEURAL_FAMILIES:
                raise _fail(path, f"neural.{name}", f"expected one of {', '.join(NEURAL_FAMILIES)}")
            out[name] = check(name, value)
    return out


def _families(path: str, raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(f, str) for f in raw):
        raise _fail(path, "families", f"{raw!r}: expected a list of family names")
    unknown = [f for f in raw if f not in MODEL_FAMILIES]
    if unknown:
        raise _fail(
            path, "families", f"unknown families {unknown}; expected some of {MODEL_FAMILIES}"
        )
    return tuple(raw)


def parse_config(text: str, path: str, setting_names: tuple[str, ...]) -> ProjectConfig:
    """Validate the TOML text of ``path``; ``setting_names``: the keys ``[settings]`` may hold."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML ({exc})") from exc
    unknown = [k for k in raw if k not in SECTIONS]
    if unknown:
        raise _fail(
            path, unknown[0], f"unknown section or key; expected one of {', '.join(SECTIONS)}"
        )
    settings = _table(path, "settings", raw.get("settings", {}))
    for name in settings:
        if name not in setting_names:
            raise _fail(path, f"settings.{name}", "unknown setting; `cbi config` lists them")
    return ProjectConfig(
        path=path,
        settings=dict(settings),
        families=_families(path, raw["families"]) if "families" in raw else None,
        gates=_gates(path, raw.get("gates", {})),
        hyperparameters=_hyperparameters(path, raw.get("hyperparameters", {})),
        neural=_neural(path, raw.get("neural", {})),
    )


def find_config(config_path: str, data_root: str) -> Path | None:
    """``config_path`` when given (it must exist), else ``cbi.toml`` in a local data root."""
    if config_path:
        path = Path(config_path)
        if not path.is_file():
            raise ConfigFileError(f"{path}: configuration file not found (CBI_CONFIG)")
        return path
    if "://" in data_root:
        return None
    beside = Path(data_root) / CONFIG_FILE_NAME
    return beside if beside.is_file() else None


def load_config(path: Path | None, setting_names: tuple[str, ...]) -> ProjectConfig:
    """The validated file; read and parsed once per version of it (its size and modification
    time), since every gate, hyperparameter and family lookup asks for it."""
    if path is None:
        return ProjectConfig()
    try:
        stat = path.stat()
    except OSError as exc:
        raise ConfigFileError(f"{path}: unreadable configuration file ({exc})") from exc
    return _load(str(path), stat.st_mtime_ns, stat.st_size, setting_names)


@functools.lru_cache(maxsize=32)
def _load(path: str, mtime_ns: int, size: int, setting_names: tuple[str, ...]) -> ProjectConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path}: unreadable configuration file ({exc})") from exc
    return parse_config(text, path, setting_names)
