"""Dagster resources: pipeline settings, the detected hardware and MLflow tracking."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from cbi_pipeline.core.hardware import SystemInfo, detect_system, get_config_for_model
from cbi_pipeline.settings import Settings
from cbi_pipeline.storage import DataRoot
from cbi_pipeline.tracking import DEFAULT_UI_URL, Tracker


class PipelineSettings(dg.ConfigurableResource):
    """Where data comes from and where outputs go (see ``cbi_pipeline.settings.Settings``)."""

    data_root: str = Field(default="data", description="Folder holding every output.")
    market_paths: list[str] = Field(
        default_factory=list,
        description="Raw market parquet/CSV files or globs; empty = the built-in sample market.",
    )
    signal_paths: list[str] = Field(default_factory=list, description="Raw signal files or globs.")
    target_symbol: str = Field(default="ZL", description="Symbol to forecast.")
    surface: str = Field(default="prod", description="Export surface name.")
    regimes_path: str = Field(default="", description="JSON regime calendar; empty = default.")
    sample_seed: int = Field(default=20000103, description="Seed of the sample market.")
    sample_start: str = Field(default="2000-01-03", description="First day of the sample.")
    sample_end: str = Field(
        default="",
        description="Last day of the sample; empty = the last business day before today.",
    )
    market_staleness_days: int = Field(default=7, description="Max age of a carried market close.")
    signal_staleness_days: int = Field(default=45, description="Max age of a carried signal.")
    first_test_date: str = Field(
        default="2010-01-04", description="Walk-forward: first test block starts on/after it."
    )
    refit_step_days: int = Field(default=252, description="Walk-forward: trading days per refit.")
    validation_rows: int = Field(default=252, description="Walk-forward: early-stopping rows.")
    min_train_rows: int = Field(default=504, description="Walk-forward: fewest fit rows in a fold.")
    max_features: int = Field(default=32, description="Trees: features kept per fold; 0 = all.")
    max_bin: int = Field(default=64, description="Trees: histogram bins per feature.")
    train_seed: int = Field(default=42, description="Seed of every model fit.")
    cache_max_age_days: int = Field(
        default=7, description="Correlation cache: days behind the newest data before stale."
    )
    correlation_top_k: int = Field(
        default=3, description="Correlation cache: cross-block candidates per block."
    )
    correlation_key_partners: str = Field(
        default="", description="Correlation cache: extra target partners, comma-separated."
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineSettings:
        values: dict[str, Any] = dict(settings.__dict__)
        values["market_paths"] = list(settings.market_paths)
        values["signal_paths"] = list(settings.signal_paths)
        return cls(**values)

    def settings(self) -> Settings:
        values = self.model_dump()
        values["market_paths"] = tuple(values["market_paths"])
        values["signal_paths"] = tuple(values["signal_paths"])
        return Settings(**values)

    def root(self) -> DataRoot:
        return DataRoot(self.data_root)


class HardwareResource(dg.ConfigurableResource):
    """Detected cores, RAM and device, and the per-family hyperparameters for them (DESIGN §4)."""

    cores: int | None = Field(default=None, description="Override detected cores.")
    ram_gb: float | None = Field(default=None, description="Override detected RAM (GB).")
    device: str | None = Field(default=None, description="Override device: cpu, cuda or mps.")
    _system: SystemInfo = PrivateAttr()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._system = detect_system(self.cores, self.ram_gb, self.device)

    @property
    def system(self) -> SystemInfo:
        return self._system

    def get_config_for_model(self, family: str, horizon: str) -> dict[str, Any]:
        return get_config_for_model(family, horizon, self._system)


class MlflowTracking(dg.ConfigurableResource):
    """MLflow tracking of the training assets (a small resource over mlflow itself)."""

    tracking_uri: str = Field(
        default="",
        description="Tracking URI; empty = $MLFLOW_TRACKING_URI, else "
        "sqlite:///<data_root>/mlflow/mlflow.db with artifacts in <data_root>/mlflow/artifacts.",
    )
    ui_url: str = Field(default=DEFAULT_UI_URL, description="Base URL of `mlflow ui` for links.")

    def tracker(self, data_root: str) -> Tracker:
        return Tracker.for_data_root(data_root, self.tracking_uri, self.ui_url)
