"""The correlation cache on disk: one folder per as-of date, ``exports/cache/{as_of}/``.

A partition folder holds the frames of ``core.correlations.state.CorrelationCache`` as parquet
(``key_pairs`` = the exported features, ``within_block_recent``, ``matrices``, ``top_k``,
``cross_block``, ``regimes``), its extension state as ``state.npz`` (plain arrays, loaded with
``allow_pickle=False``) and ``manifest.json`` (dates, settings fingerprint, data hash, series,
feature catalog, how it was built). The folder is written under a temporary name and renamed into
place, so a reader never sees half a partition. A partition whose manifest cannot be read is
logged and left out of the listing.

The partition of a data date is the date itself, or the Friday before a weekend
(``partition_key``). Reading a partition does not import numba.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cbi_pipeline.core.correlations.spec import CorrSeries
from cbi_pipeline.core.correlations.state import CorrelationCache, CorrelationState
from cbi_pipeline.core.features import FeatureDef
from cbi_pipeline.store.root import (
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


def latest_partition_key(root: DataRoot) -> str:
    """The as-of partition of the panel's last date (what the cycle materializes)."""
    last = read_parquet(root.market_panel, "market_panel")["date"].max()
    assert isinstance(last, dt.date), "the panel's date column must hold dates"
    return partition_key(last)
