"""Dagster resources: pipeline settings, the detected hardware and MLflow tracking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr, create_model

from cbi_pipeline.core.hardware import SystemInfo, detect_system, get_config_for_model
from cbi_pipeline.core.vocabulary import TAG_DAGSTER_PARTITION, TAG_DAGSTER_RUN
from cbi_pipeline.settings import Settings, is_paths_setting, setting_fields, setting_type
from cbi_pipeline.store.root import DataRoot
from cbi_pipeline.store.tracking import DEFAULT_UI_URL, Tracker


def _settings_config_fields() -> dict[str, Any]:
    """One config field per ``Settings`` field, with its default and description from there
    (lists stand for the tuples, as Dagster config has no tuples)."""
    out: dict[str, Any] = {}
    for f in setting_fields():
        description = f.metadata["description"]
        if is_paths_setting(f):
            out[f.name] = (
                list[str],
                Field(default_factory=lambda f=f: list(f.default), description=description),
            )
        else:
            out[f.name] = (setting_type(f), Field(default=f.default, description=description))
    return out


if TYPE_CHECKING:
    _SettingsConfig = dg.ConfigurableResource
else:
    _SettingsConfig = create_model(
        "SettingsConfig", __base__=dg.ConfigurableResource, **_settings_config_fields()
    )


class PipelineSettings(_SettingsConfig):
    """Where data comes from and where outputs go: every field of
    ``cbi_pipeline.settings.Settings``, with the same defaults and descriptions."""

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineSettings:
        values: dict[str, Any] = dict(settings.__dict__)
        for f in setting_fields():
            if is_paths_setting(f):
                values[f.name] = list(values[f.name])
        return cls(**values)

    def settings(self) -> Settings:
        values = self.model_dump()
        for f in setting_fields():
            if is_paths_setting(f):
                values[f.name] = tuple(values[f.name])
        return Settings(**values)

    def root(self) -> DataRoot:
        return DataRoot(self.settings().data_root)


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

    def run_tags(self, context: dg.AssetExecutionContext) -> dict[str, str]:
        """MLflow tags that link a run back to the Dagster run (and partition) that logged it."""
        tags = {TAG_DAGSTER_RUN: context.run.run_id}
        if context.has_partition_key:
            tags[TAG_DAGSTER_PARTITION] = context.partition_key
        return tags

    def tracker(self, data_root: str) -> Tracker:
        return Tracker.for_data_root(data_root, self.tracking_uri, self.ui_url)
