"""Dagster resources: pipeline settings and the detected hardware."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from cbi_pipeline.core.hardware import SystemInfo, detect_system, get_config_for_model
from cbi_pipeline.settings import Settings
from cbi_pipeline.storage import DataRoot


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
    sample_end: str = Field(default="", description="Last day of the sample; empty = yesterday.")
    market_staleness_days: int = Field(default=7, description="Max age of a carried market close.")
    signal_staleness_days: int = Field(default=45, description="Max age of a carried signal.")

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
