"""The correlation cache step: which partition is valid for the data, building one (extending an
earlier one where it can) and the correlation features the export joins. The partition files
themselves are in ``store.correlations``.

Validity and staleness:

- A partition is *valid* for a panel when it was built with the current settings from exactly the
  panel's rows on or before its as-of date (same row count, same hash of dates and levels).
- Its *age* is the number of calendar days from its last data date to a reference date, by default
  the newest date of the data (the panel's last date), not the wall clock: a historical data set
  does not go stale by itself, and a partition falls behind only when newer data arrives. A valid
  partition older than ``cache_max_age_days`` is *stale*.
- Readers take the freshest valid partition; when there is none, or it is stale, a partition for
  the data's last date is built on demand, extending the newest partition that can be extended
  (same settings, unchanged history) or else from scratch. The export needs a value for every
  row: the days after a fresh partition's last date are computed from its state in memory.
- A partition that cannot be read is logged and treated as absent (it is rebuilt).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from cbi_pipeline.core.correlations.build import build_from_data
from cbi_pipeline.core.correlations.spec import CorrelationSpec
from cbi_pipeline.core.correlations.state import (
    CorrelationCache,
    PanelData,
    extension_blocker,
    fingerprint,
    history_hash,
    panel_data,
)
from cbi_pipeline.core.features import FeatureDef
from cbi_pipeline.settings import Settings
from cbi_pipeline.store.correlations import (
    FRAME_FILES,
    PartitionInfo,
    list_partitions,
    read_partition,
    write_partition,
)
from cbi_pipeline.store.root import DataRoot, StorageError, read_parquet

log = logging.getLogger(__name__)


def rows_up_to(data: PanelData, day: dt.date) -> int:
    return int(np.searchsorted(data.dates, np.datetime64(day, "D"), side="right"))


def is_valid_for(info: PartitionInfo, data: PanelData, spec: CorrelationSpec) -> bool:
    """Built with the current settings from exactly the data's rows on or before its as-of date."""
    rows = rows_up_to(data, info.as_of)
    return (
        info.fingerprint == fingerprint(spec, data.series)
        and info.rows == rows
        and rows > 0
        and history_hash(data.dates, data.levels, rows) == info.history_hash
    )


@dataclass(frozen=True)
class PartitionBuild:
    info: PartitionInfo
    cache: CorrelationCache
    mode: str  # "full" or "incremental"
    base: dt.date | None
    reason: str
    seconds: float


def _find_base(
    root: DataRoot, data: PanelData, spec: CorrelationSpec, as_of: dt.date
) -> tuple[CorrelationCache | None, str]:
    """The newest partition on or before as_of that the data extends, and why (not)."""
    fp = fingerprint(spec, data.series)
    skipped = []
    for info in list_partitions(root):
        if info.as_of > as_of:
            continue
        if info.fingerprint != fp:
            skipped.append(f"{info.as_of}: other settings or series")
            continue
        if info.rows > data.dates.size or info.history_hash != history_hash(
            data.dates, data.levels, info.rows
        ):
            skipped.append(f"{info.as_of}: built from other data")
            continue
        try:
            base = read_partition(info)
        except StorageError as exc:
            log.warning("cannot extend correlation cache partition %s: %s", info.as_of, exc)
            skipped.append(f"{info.as_of}: unreadable")
            continue
        blocker = extension_blocker(data, spec, base)
        if blocker is None:
            return base, f"extends the partition of {info.as_of}"
        skipped.append(f"{info.as_of}: {blocker}")
    if not skipped:
        return None, "no earlier partition"
    return None, "no extendable earlier partition (" + "; ".join(skipped[:3]) + ")"


def build_partition(
    root: DataRoot,
    settings: Settings,
    as_of: dt.date,
    panel: pl.DataFrame | None = None,
    full: bool = False,
) -> PartitionBuild:
    """Build (or rebuild) the partition of ``as_of`` from the panel rows on or before it,
    extending the newest extendable earlier partition unless ``full``."""
    start = time.perf_counter()
    if panel is None:
        panel = read_parquet(root.market_panel, "market_panel")
    spec = settings.correlation_spec()
    data = panel_data(panel, spec, as_of)
    base, reason = (None, "full rebuild requested") if full else _find_base(root, data, spec, as_of)
    cache = build_from_data(data, spec, as_of, base)
    seconds = time.perf_counter() - start
    build = {
        "mode": "full" if base is None else "incremental",
        "base_as_of": base.as_of.isoformat() if base is not None else None,
        "reason": reason,
        "new_rows": cache.new_rows,
        "seconds": round(seconds, 4),
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    info = write_partition(root, cache, build)
    log.info("correlation cache %s: %s (%s)", as_of, build["mode"], reason)
    return PartitionBuild(
        info, cache, str(build["mode"]), base.as_of if base else None, reason, seconds
    )


@dataclass(frozen=True)
class CacheStatus:
    """The freshest valid partition for some data and how far it is behind."""

    partition: PartitionInfo | None
    reference: dt.date
    max_age_days: int

    @property
    def age_days(self) -> int | None:
        return None if self.partition is None else self.partition.age_days(self.reference)

    @property
    def stale(self) -> bool:
        """No valid partition, or the freshest is older than the limit."""
        return self.partition is None or self.partition.is_stale(self.reference, self.max_age_days)

    def describe(self) -> str:
        if self.partition is None:
            return f"no valid partition for the data up to {self.reference}"
        state = "stale" if self.stale else "fresh"
        return (
            f"partition {self.partition.as_of}: data to {self.partition.last_data_date}, "
            f"{self.age_days} days behind {self.reference} (limit {self.max_age_days}) - {state}"
        )


def cache_status(
    root: DataRoot,
    settings: Settings,
    panel: pl.DataFrame,
    reference: dt.date | None = None,
    data: PanelData | None = None,
) -> CacheStatus:
    """The freshest partition valid for ``panel``; reference defaults to the panel's last date."""
    last = panel["date"].max()
    assert isinstance(last, dt.date), "the panel's date column must hold dates"
    spec = settings.correlation_spec()
    if data is None:
        data = panel_data(panel, spec, last)
    for info in list_partitions(root):
        if is_valid_for(info, data, spec):
            return CacheStatus(info, reference or last, settings.cache_max_age_days)
    return CacheStatus(None, reference or last, settings.cache_max_age_days)


@dataclass(frozen=True)
class ExportCorrelations:
    """The correlation features an export joins, and where they came from."""

    frame: pl.DataFrame  # date + Float64 feature columns, one row per panel row
    catalog: list[FeatureDef]
    status: CacheStatus  # the partition used (after any rebuild)
    rebuilt: PartitionBuild | None  # set when a missing or stale cache was rebuilt
    extended_rows: int  # rows after a fresh partition's last date, computed from its state


def export_correlations(
    root: DataRoot,
    settings: Settings,
    panel: pl.DataFrame,
    reference: dt.date | None = None,
) -> ExportCorrelations:
    """The rolling-correlation features for every panel row, from the freshest valid partition.

    A missing or stale cache is rebuilt on demand (a partition for the panel's last date is
    written). A fresh partition that ends before the panel (at most ``cache_max_age_days`` behind)
    is used as it is, and the rows after its last date are computed from its stored state in
    memory, exactly as the next partition will compute them.
    """
    last = panel["date"].max()
    assert isinstance(last, dt.date), "the panel's date column must hold dates"
    spec = settings.correlation_spec()
    data = panel_data(panel, spec, last)
    status = cache_status(root, settings, panel, reference, data)
    rebuilt = None
    if status.stale:
        log.info("correlation cache: %s; rebuilding for %s", status.describe(), last)
        rebuilt = build_partition(root, settings, last, panel)
        status = CacheStatus(rebuilt.info, status.reference, status.max_age_days)
    assert status.partition is not None
    try:
        frame, catalog, extended = _features_of(status.partition, data, spec, last)
    except StorageError as exc:
        if rebuilt is not None:
            raise
        log.warning("correlation cache: %s; rebuilding for %s", exc, last)
        rebuilt = build_partition(root, settings, last, panel)
        status = CacheStatus(rebuilt.info, status.reference, status.max_age_days)
        frame, catalog, extended = _features_of(rebuilt.info, data, spec, last)
    return ExportCorrelations(frame, catalog, status, rebuilt, extended)


def _features_of(
    info: PartitionInfo, data: PanelData, spec: CorrelationSpec, last: dt.date
) -> tuple[pl.DataFrame, list[FeatureDef], int]:
    """A partition's feature frame (extended in memory to ``last`` when it ends earlier)."""
    extended = 0
    if info.rows < data.dates.size:
        cache = build_from_data(data, spec, last, read_partition(info))
        frame, catalog, extended = cache.features, cache.catalog, cache.new_rows
    else:
        frame = read_parquet(info.path / FRAME_FILES["features"], "correlation_cache")
        catalog = [
            FeatureDef(**{**d, "inputs": tuple(d["inputs"])}) for d in info.manifest["catalog"]
        ]
    missing = [d.name for d in catalog if d.name not in frame.columns]
    if missing or "date" not in frame.columns:
        raise StorageError(
            f"{info.path / FRAME_FILES['features']}: lacks columns {missing or ['date']} "
            "listed in its manifest"
        )
    frame = frame.select(
        pl.col("date").cast(pl.Date), *[pl.col(d.name).cast(pl.Float64) for d in catalog]
    )
    return frame, catalog, extended


def join_correlation_features(
    root: DataRoot,
    settings: Settings,
    panel: pl.DataFrame,
    features: pl.DataFrame,
    catalog: list[FeatureDef],
) -> tuple[pl.DataFrame, list[FeatureDef]]:
    """``features`` with the cache's correlation features joined by date, and the longer catalog."""
    corr = export_correlations(root, settings, panel)
    clash = set(features.columns) & {d.name for d in corr.catalog}
    if clash:
        raise ValueError(f"correlation feature names {sorted(clash)} clash with other features")
    joined = features.join(corr.frame, on="date", how="left", maintain_order="left")
    return joined, [*catalog, *corr.catalog]
