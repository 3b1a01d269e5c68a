"""The correlation cache on disk: one folder per as-of date, ``exports/cache/{as_of}/``.

A partition folder holds the frames of ``core.correlations.CorrelationCache`` as parquet
(``key_pairs`` = the exported features, ``within_block_recent``, ``matrices``, ``top_k``,
``cross_block``, ``regimes``), its extension state as ``state.npz`` (plain arrays, loaded with
``allow_pickle=False``) and ``manifest.json`` (dates, settings fingerprint, data hash, series,
feature catalog, how it was built). The folder is written under a temporary name and renamed into
place, so a reader never sees half a partition.

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
import io
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cbi_pipeline.core.correlations import (
    CorrelationCache,
    CorrelationSpec,
    CorrelationState,
    CorrSeries,
    PanelData,
    build_from_data,
    extension_blocker,
    fingerprint,
    history_hash,
    panel_data,
)
from cbi_pipeline.core.features import FeatureDef
from cbi_pipeline.settings import Settings
from cbi_pipeline.storage import (
    DataRoot,
    StorageError,
    is_local,
    read_json,
    read_parquet,
    write_bytes,
    write_json,
    write_parquet,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STATE = "state.npz"
FRAME_FILES: dict[str, str] = {
    "features": "key_pairs.parquet",
    "recent": "within_block_recent.parquet",
    "matrices": "matrices.parquet",
    "candidates": "top_k.parquet",
    "cross_block": "cross_block.parquet",
    "regime_matrices": "regimes.parquet",
}


def partition_key(day: dt.date) -> str:
    """The as-of partition of a data date: the date itself, or the Friday before a weekend."""
    return (day - dt.timedelta(days=max(day.weekday() - 4, 0))).isoformat()


@dataclass(frozen=True)
class PartitionInfo:
    """A partition on disk, described by its manifest."""

    as_of: dt.date
    path: Path
    last_data_date: dt.date
    rows: int
    fingerprint: str
    history_hash: str
    manifest: dict[str, Any]

    def age_days(self, reference: dt.date) -> int:
        """Calendar days from the partition's last data date to ``reference``."""
        return (reference - self.last_data_date).days

    def is_stale(self, reference: dt.date, max_age_days: int) -> bool:
        return self.age_days(reference) > max_age_days


def _info(path: Path) -> PartitionInfo:
    m = read_json(path / MANIFEST, "correlation_cache")
    try:
        if m["format"] != FORMAT_VERSION:
            raise StorageError(
                f"{path / MANIFEST}: format {m['format']}, expected {FORMAT_VERSION}"
            )
        return PartitionInfo(
            as_of=dt.date.fromisoformat(m["as_of"]),
            path=path,
            last_data_date=dt.date.fromisoformat(m["last_data_date"]),
            rows=int(m["rows"]),
            fingerprint=str(m["fingerprint"]),
            history_hash=str(m["history_hash"]),
            manifest=m,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StorageError(f"{path / MANIFEST}: malformed manifest ({exc!r})") from exc


def list_partitions(root: DataRoot) -> list[PartitionInfo]:
    """Readable partitions, newest as-of first; unreadable ones are logged and skipped."""
    folder = root.correlation_cache
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        if path.name.startswith(".") or not path.is_dir():
            continue
        try:
            dt.date.fromisoformat(path.name)
            found.append(_info(path))
        except ValueError:
            continue
        except StorageError as exc:
            log.warning("skipping correlation cache partition %s: %s", path, exc)
    return sorted(found, key=lambda i: i.as_of, reverse=True)


def _write_folder(final: Path, write: Callable[[Path], None]) -> None:
    """Write a folder under a temporary name, fsync its files, then rename it into place.

    On an object store (no renames) the manifest is what makes a partition visible: it is
    removed first and ``write`` puts it last, so a reader never takes half a partition."""
    if not is_local(final):
        (final / MANIFEST).unlink(missing_ok=True)
        write(final)
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.tmp"
    old = final.parent / f".{final.name}.{uuid.uuid4().hex}.old"
    tmp.mkdir()
    try:
        write(tmp)
        for f in tmp.iterdir():
            with open(f, "rb+") as handle:
                os.fsync(handle.fileno())
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def write_partition(
    root: DataRoot, cache: CorrelationCache, build: dict[str, Any]
) -> PartitionInfo:
    """Store one partition atomically; ``build`` (mode, base, timings) goes into the manifest."""
    st = cache.state
    manifest = {
        "format": FORMAT_VERSION,
        "as_of": cache.as_of.isoformat(),
        "last_data_date": st.last_date.isoformat(),
        "rows": st.n_rows,
        "fingerprint": st.fingerprint,
        "history_hash": st.history_hash,
        "series": [asdict(s) for s in cache.series],
        "catalog": [asdict(d) for d in cache.catalog],
        "files": {**FRAME_FILES, "state": STATE},
        "build": build,
    }

    def write(tmp: Path) -> None:  # the manifest last (see _write_folder)
        for attr, name in FRAME_FILES.items():
            write_parquet(getattr(cache, attr), tmp / name)
        state = io.BytesIO()
        np.savez(
            state,
            tail_returns=st.tail_returns,
            last_levels=st.last_levels,
            regime_moments=st.regime_moments,
            target_moments=st.target_moments,
        )
        write_bytes(state.getvalue(), tmp / STATE)
        write_json(manifest, tmp / MANIFEST)

    path = root.correlation_partition(cache.as_of.isoformat())
    _write_folder(path, write)
    return _info(path)


def read_partition(info: PartitionInfo) -> CorrelationCache:
    """Load a partition; a missing or unreadable file raises StorageError naming it."""
    m = info.manifest
    frames = {
        attr: read_parquet(info.path / name, "correlation_cache")
        for attr, name in FRAME_FILES.items()
    }
    path = info.path / STATE
    if not path.exists():
        raise StorageError(f"{path}: not found; materialize correlation_cache first")
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as z:
            arrays = {k: np.array(z[k]) for k in z.files}
    except Exception as exc:  # zipfile, ValueError (pickled content), OSError
        raise StorageError(f"{path}: unreadable state ({type(exc).__name__}: {exc})") from exc
    try:
        state = CorrelationState(
            n_rows=info.rows,
            last_date=info.last_data_date,
            tail_returns=arrays["tail_returns"],
            last_levels=arrays["last_levels"],
            regime_moments=arrays["regime_moments"],
            target_moments=arrays["target_moments"],
            history_hash=info.history_hash,
            fingerprint=info.fingerprint,
        )
        series = tuple(CorrSeries(**s) for s in m["series"])
        catalog = [FeatureDef(**{**d, "inputs": tuple(d["inputs"])}) for d in m["catalog"]]
    except (KeyError, TypeError) as exc:
        raise StorageError(f"{info.path}: state or manifest incomplete ({exc!r})") from exc
    return CorrelationCache(
        as_of=info.as_of,
        series=series,
        state=state,
        new_rows=int(m.get("build", {}).get("new_rows", 0)),
        catalog=catalog,
        **frames,
    )


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


def latest_partition_key(root: DataRoot) -> str:
    """The as-of partition of the panel's last date (what the cycle materializes)."""
    last = read_parquet(root.market_panel, "market_panel")["date"].max()
    assert isinstance(last, dt.date), "the panel's date column must hold dates"
    return partition_key(last)
