"""The data root: fixed layout (DESIGN §2) and atomic writes.

Every file is written to a temporary name in its destination folder and renamed into place, so
a crash or a failed validation never leaves a half-written file where a reader looks.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl


class StorageError(RuntimeError):
    """A stored file is missing or unreadable; the message names the file."""


class DataRoot:
    """Paths under the data root (default ``data/``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    @property
    def raw_market(self) -> Path:
        return self.path("raw", "market.parquet")

    @property
    def raw_signals(self) -> Path:
        return self.path("raw", "signals.parquet")

    @property
    def market_panel(self) -> Path:
        return self.path("exports", "market_panel.parquet")

    @property
    def feature_catalog(self) -> Path:
        return self.path("exports", "feature_catalog.json")

    def export(self, filename: str) -> Path:
        return self.path("exports", filename)

    @property
    def dagster_home(self) -> Path:
        return self.path("dagster_home")


def _atomic(path: Path, write: Callable[[Path], object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_parquet(frame: pl.DataFrame, path: Path) -> Path:
    return _atomic(path, lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=True))


def write_json(payload: Any, path: Path) -> Path:
    text = json.dumps(payload, indent=2, sort_keys=False, default=str)
    return _atomic(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))


def read_parquet(path: Path, what: str) -> pl.DataFrame:
    """Read a parquet the pipeline wrote; a missing or corrupt file names itself and its producer."""
    if not path.exists():
        raise StorageError(f"{path}: not found; materialize {what} first")
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for corrupt files
        raise StorageError(f"{path}: unreadable parquet ({type(exc).__name__}: {exc})") from exc


def read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise StorageError(f"{path}: not found; materialize {what} first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StorageError(f"{path}: unreadable JSON ({exc})") from exc
