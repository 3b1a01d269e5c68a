"""Run the pipeline cycle through Dagster, one run per partition set, and report what it built.

``make demo`` and the nightly cycle use this: it materializes the asset graph in a persistent
Dagster instance (``<data_root>/dagster_home``) so the runs show in the web UI afterwards.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import polars as pl

from cbi_pipeline.core.export import export_filename, summarize_export
from cbi_pipeline.core.horizons import HORIZON_LABELS
from cbi_pipeline.settings import Settings
from cbi_pipeline.storage import DataRoot, read_parquet

log = logging.getLogger(__name__)

INSTANCE_YAML = """\
telemetry:
  enabled: false
"""


@dataclass(frozen=True)
class Stage:
    name: str
    assets: tuple[str, ...]
    partitioned: bool


STAGES: tuple[Stage, ...] = (
    Stage("data", ("raw_market", "market_panel"), partitioned=False),
    Stage("exports", ("training_export",), partitioned=True),
)


@dataclass
class CycleReport:
    stage_seconds: dict[str, float] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)


def ensure_instance(home: Path) -> dg.DagsterInstance:
    """A persistent instance under the data root (SQLite storage), created on first use."""
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML, encoding="utf-8")
    os.environ.setdefault("DAGSTER_HOME", str(home))
    return dg.DagsterInstance.from_config(str(home))


def run_cycle(
    settings: Settings,
    instance: dg.DagsterInstance,
    horizons: tuple[str, ...] = HORIZON_LABELS,
    on_run: Callable[[str, str | None, float], None] | None = None,
    log_level: str = "WARNING",
) -> CycleReport:
    """Materialize every stage in order; a failed run raises with Dagster's error."""
    from cbi_pipeline.definitions import ASSETS, build_resources

    resources = build_resources(settings)
    report = CycleReport()
    for stage in STAGES:
        start = time.perf_counter()
        for key in horizons if stage.partitioned else (None,):
            run_start = time.perf_counter()
            result = dg.materialize(
                ASSETS,
                selection=list(stage.assets),
                partition_key=key,
                instance=instance,
                resources=resources,
                tags={"cbi/stage": stage.name},
                run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            )
            if on_run is not None:
                on_run(stage.name, key, time.perf_counter() - run_start)
            report.run_ids.append(result.run_id)
            log.info("stage %s %s: run %s ok", stage.name, key or "", result.run_id)
        report.stage_seconds[stage.name] = round(time.perf_counter() - start, 2)
    return report


def export_table(settings: Settings, horizons: tuple[str, ...] = HORIZON_LABELS) -> pl.DataFrame:
    """One row per horizon describing the export on disk."""
    root = DataRoot(settings.data_root)
    rows = []
    for h in horizons:
        path = root.export(export_filename(settings.target_symbol, settings.surface, h))
        s = summarize_export(read_parquet(path, "training_export"), h)
        rows.append(
            {
                "horizon": h,
                "rows": s.rows,
                "first": s.first_date,
                "last": s.last_date,
                "features": s.features,
                "labelled": s.labelled_rows,
                "null_share": s.null_share,
                "file": str(path),
            }
        )
    return pl.DataFrame(rows)
