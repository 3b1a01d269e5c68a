"""Fingerprints for caches: digests of arrays, JSON-able values and the code that computes them.

A cache key must cover everything the cached result depends on, the code included: a key that
leaves out the code would hand back results of an older implementation after an upgrade. The
code's part is the source text of the modules named (``source_fingerprint``) and the versions of
the libraries that compute (``library_versions``), so editing a model module, or upgrading
LightGBM, invalidates exactly the entries that module or library produced.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

DIGEST_BYTES = 16


def digest(*parts: bytes | str) -> str:
    """Hex blake2b of the parts, each length-prefixed (so ``("ab", "c") != ("a", "bc")``)."""
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for part in parts:
        raw = part.encode("utf-8") if isinstance(part, str) else bytes(part)
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
    return h.hexdigest()


def json_digest(value: Any) -> str:
    """The digest of a JSON-able value in canonical form (sorted keys, no whitespace)."""
    return digest(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))


def row_digests(*columns: np.ndarray) -> np.ndarray:
    """One digest per row over the given arrays (same first dimension), as ``(rows, 16)`` uint8.

    Each row's digest covers its bytes in every array (dtype and width included), so two rows
    hash alike only when every value, NaNs and signed zeros included, is bit-identical.
    """
    if not columns:
        raise ValueError("row_digests needs at least one array")
    n = int(columns[0].shape[0])
    parts = []
    for c in columns:
        a = np.ascontiguousarray(c)
        if a.shape[0] != n:
            raise ValueError(f"row_digests: arrays of {a.shape[0]} and {n} rows")
        parts.append((a.dtype.str, a.reshape(n, -1).view(np.uint8).reshape(n, -1)))
    out = np.empty((n, DIGEST_BYTES), dtype=np.uint8)
    header = "|".join(f"{dtype}:{block.shape[1]}" for dtype, block in parts).encode()
    for i in range(n):
        h = hashlib.blake2b(header, digest_size=DIGEST_BYTES)
        for _, block in parts:
            h.update(block[i].tobytes())
        out[i] = np.frombuffer(h.digest(), dtype=np.uint8)
    return out


def frame_digest(frame: pl.DataFrame | None) -> str:
    """The digest of a frame's schema and contents, row by row (polars' row hashes, which do not
    depend on how the frame is chunked; a key that stores it must pin the polars version)."""
    if frame is None:
        return digest("no frame")
    hashes = [frame.hash_rows(seed=seed).to_numpy().tobytes() for seed in (0, 1)]  # 128 bits
    return digest(repr(frame.schema), str(frame.height), *hashes)


def rows_digest(digests: np.ndarray, rows: np.ndarray) -> str:
    """The digest of the given rows' digests in order (which rows, and what is in them)."""
    return digest(np.ascontiguousarray(digests[np.asarray(rows, dtype=np.int64)]).tobytes())


@functools.cache
def source_fingerprint(modules: tuple[str, ...]) -> str:
    """The digest of the source text of the named modules (a package counts all its ``.py``
    files), e.g. ``("cbi_pipeline.core.models.trees",)``. Raises for a module with no source."""
    parts: list[bytes | str] = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"source_fingerprint: no source for module {name!r}")
        origin = Path(spec.origin)
        files: Iterable[Path] = (
            sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        )
        for path in files:
            parts += [f"{name}:{path.name}", path.read_bytes()]
    return digest(*parts)


@functools.cache
def library_versions(distributions: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the named distributions ('absent' for one not installed)."""
    out = {}
    for name in distributions:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def code_fingerprint(modules: tuple[str, ...], distributions: tuple[str, ...]) -> str:
    """Source of ``modules`` plus the versions of ``distributions``: the code part of a key."""
    return json_digest(
        {"source": source_fingerprint(modules), "libraries": library_versions(distributions)}
    )
