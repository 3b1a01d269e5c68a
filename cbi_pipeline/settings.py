"""Pipeline settings in one place: defaults, their meaning, and the CBI_* environment overrides."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cbi_pipeline.core.export import ExportSpec
from cbi_pipeline.core.features import FeatureSpec
from cbi_pipeline.core.panel import PanelSpec
from cbi_pipeline.core.regimes import DEFAULT_REGIMES, Regime, regimes_from_json

if TYPE_CHECKING:
    from cbi_pipeline.core.correlations import CorrelationSpec

ENV_PREFIX = "CBI_"


@dataclass(frozen=True)
class Settings:
    """What the pipeline reads and where it writes. Each field has a ``CBI_<FIELD>`` env override.

    data_root: folder (or fsspec URL) that holds every output (DESIGN §2 layout).
    market_paths: raw market files or globs (parquet/CSV); empty means the built-in sample market.
    signal_paths: raw signal files or globs; ignored for the sample, which brings its own signals.
    target_symbol: the symbol to forecast.
    surface: the export surface in ``zl_training_{surface}_allhistory_{h}.parquet``.
    regimes_path: JSON regime calendar replacing the default one (DESIGN §2).
    sample_seed: seed of the sample generator.
    sample_start: first business day of the sample market.
    sample_end: last day of the sample market; empty means the last business day before today.
    market_staleness_days / signal_staleness_days: how long a value is carried forward.
    first_test_date: walk-forward: the first test block starts on the first day on/after it.
    refit_step_days: walk-forward: trading days per test block, one refit each (252 = yearly).
    validation_rows: walk-forward: early-stopping rows from the end of each fold's training rows.
    min_train_rows: walk-forward: fewest fitted rows the first fold may have.
    max_features: tree models: features kept per fold by |correlation| on its fit rows; 0 = all.
    max_bin: tree models: histogram bins per feature.
    train_seed: seed of every model fit.
    cache_max_age_days: a correlation cache partition whose last data date is more than this many
        calendar days before the newest data date is stale and is rebuilt on demand.
    correlation_top_k: correlation cache: candidates per block for cross-block correlations.
    correlation_key_partners: extra series (comma-separated) paired with the target in the
        correlation cache and exported as rolling-correlation features.
    """

    data_root: str = "data"
    market_paths: tuple[str, ...] = ()
    signal_paths: tuple[str, ...] = ()
    target_symbol: str = "ZL"
    surface: str = "prod"
    regimes_path: str = ""
    sample_seed: int = 20000103
    sample_start: str = "2000-01-03"
    sample_end: str = ""
    market_staleness_days: int = 7
    signal_staleness_days: int = 45
    first_test_date: str = "2010-01-04"
    refit_step_days: int = 252
    validation_rows: int = 252
    min_train_rows: int = 504
    max_features: int = 32
    max_bin: int = 64
    train_seed: int = 42
    cache_max_age_days: int = 7
    correlation_top_k: int = 3
    correlation_key_partners: str = ""

    @property
    def uses_sample(self) -> bool:
        return not self.market_paths

    def regimes(self) -> tuple[Regime, ...]:
        if not self.regimes_path:
            return DEFAULT_REGIMES
        path = Path(self.regimes_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: regime calendar file not found (regimes_path)")
        return regimes_from_json(path.read_text(encoding="utf-8"), str(path))

    def correlation_spec(self) -> CorrelationSpec:
        from cbi_pipeline.core.correlations import CorrelationSpec  # imports numba: only on use

        return CorrelationSpec(
            target_symbol=self.target_symbol,
            top_k=self.correlation_top_k,
            extra_key_partners=_split(self.correlation_key_partners),
            regimes=self.regimes(),
        )

    def panel_spec(self) -> PanelSpec:
        return PanelSpec(self.target_symbol, self.market_staleness_days, self.signal_staleness_days)

    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec(target_symbol=self.target_symbol)

    def export_spec(self) -> ExportSpec:
        return ExportSpec(self.target_symbol, self.surface, self.regimes())

    def sample_dates(self) -> tuple[dt.date, dt.date | None]:
        end = dt.date.fromisoformat(self.sample_end) if self.sample_end else None
        return dt.date.fromisoformat(self.sample_start), end


def _split(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.replace(os.pathsep, ",").split(",") if p.strip())


def settings_from_env(
    overrides: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then ``CBI_*`` variables, then explicit overrides (None values are ignored)."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = env.get(ENV_PREFIX + f.name.upper())
        if raw is None or raw == "":
            continue
        if f.name.endswith("_paths"):
            values[f.name] = _split(raw)
        elif f.type in ("int", int):
            try:
                values[f.name] = int(raw)
            except ValueError:
                raise ValueError(
                    f"{ENV_PREFIX}{f.name.upper()}={raw!r}: expected an integer"
                ) from None
        else:
            values[f.name] = raw
    values.update(
        {
            k: (tuple(v) if isinstance(v, list) else v)
            for k, v in (overrides or {}).items()
            if v is not None
        }
    )
    return replace(Settings(), **values)  # type: ignore[arg-type]
