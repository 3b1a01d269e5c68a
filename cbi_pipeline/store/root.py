"""The data root: fixed layout (DESIGN §2) and atomic writes.

Every file is written to a temporary name in its destination folder and renamed into place, so
a crash or a failed validation never leaves a half-written file where a reader looks.

The data root may also be an fsspec URL (``s3://bucket/prefix``, ``gs://...``; credentials and
endpoint as the fsspec backend reads them, e.g. ``AWS_*`` variables for s3fs): its paths are
``upath.UPath`` objects with the same methods, and a write is one object PUT, which an object
store applies atomically (readers see the old object or the new one, never part of one).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import polars as pl


class StorageError(RuntimeError):
    """A stored file is missing or unreadable; the message names the file."""


def is_url(root: str | os.PathLike[str]) -> bool:
    """An fsspec URL other than a local ``file://`` one."""
    text = str(root)
    return "://" in text and not text.startswith("file://")


def as_path(root: str | os.PathLike[str]) -> Path:
    """A local ``Path``, or for a URL a ``UPath`` (typed as Path: it has the methods used here)."""
    if not is_url(root):
        return Path(str(root).removeprefix("file://"))
    from upath import UPath

    return cast(Path, UPath(str(root)))


def is_local(path: Path) -> bool:
    """On this machine's file system (object-store paths are UPaths, not pathlib Paths)."""
    return isinstance(path, Path)


class DataRoot:
    """Paths under the data root (default ``data/``): a folder or an fsspec URL."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = as_path(root)

    @property
    def remote(self) -> bool:
        return not is_local(self.root)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    @property
    def raw_market(self) -> Path:
        return self.path("raw", "market.parquet")

    @property
    def raw_signals(self) -> Path:
        return self.path("raw", "signals.parquet")

    @property
    def raw_curve(self) -> Path:
        return self.path("raw", "curve.parquet")

    @property
    def market_panel(self) -> Path:
        return self.path("exports", "market_panel.parquet")

    @property
    def feature_catalog(self) -> Path:
        return self.path("exports", "feature_catalog.json")

    def export(self, filename: str) -> Path:
        return self.path("exports", filename)

    @property
    def correlation_cache(self) -> Path:
        return self.path("exports", "cache")

    def correlation_partition(self, as_of: str) -> Path:
        return self.path("exports", "cache", as_of)

    def truncation_cache(self, key: str) -> Path:
        """The feature rows the truncation test recomputed from the raw data, for one key."""
        return self.path("cache", "truncation", f"{key}.parquet")

    def diagnostics(self, horizon: str) -> Path:
        return self.path("diagnostics", f"{horizon}.json")

    def diagnostics_plot(self, horizon: str) -> Path:
        return self.path("diagnostics", f"{horizon}.png")

    def predictions(self, horizon: str, family: str) -> Path:
        return self.path("predictions", horizon, f"{family}.parquet")

    def model_dir(self, horizon: str, family: str) -> Path:
        return self.path("models", horizon, family)

    @property
    def mlflow_dir(self) -> Path:
        return self.path("mlflow")

    def evaluation(self, horizon: str) -> Path:
        return self.path("evaluations", f"{horizon}.json")

    def evaluation_plot(self, horizon: str) -> Path:
        """The evaluation chart: predictions against actuals, MAPE and skill by regime."""
        return self.path("evaluations", f"{horizon}.png")

    def tuned_params(self, horizon: str, family: str) -> Path:
        """The parameters ``cbi tune`` chose for a family, which training then uses."""
        return self.path("tuning", horizon, f"{family}.json")

    def champion_pointer(self, horizon: str) -> Path:
        return self.path("models", horizon, "champion.json")

    def forecast(self, horizon: str) -> Path:
        return self.path("forecasts", f"{horizon}.parquet")

    def forecast_plot(self, horizon: str) -> Path:
        return self.path("forecasts", f"{horizon}.png")

    @property
    def forecast_log(self) -> Path:
        """Every forecast issued, one row per horizon and origin date (to score them later)."""
        return self.path("forecasts", "log.parquet")

    @property
    def dagster_home(self) -> Path:
        return self.path("dagster_home")

    @property
    def swap_journal(self) -> Path:
        """The renames of a ``Batch`` being committed (present only while it commits, or after
        a crash during its commit, until ``finish_swap`` completes it)."""
        return self.path(".pending-swap.json")

    def batch(self) -> Batch:
        return Batch(self)

    def finish_swap(self) -> list[Path]:
        """Complete a commit that a crash interrupted: every staged file the journal lists that
        is still waiting is renamed into place, then the journal goes. Returns the files moved
        (none when there is no journal). Writers of batched files call it before they start."""
        journal = self.swap_journal
        if not journal.exists():
            return []
        try:
            journal_payload = json.loads(journal.read_text(encoding="utf-8"))
            renames = journal_payload["renames"]
            removals = journal_payload.get("removals", [])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise StorageError(
                f"{journal}: unreadable swap journal ({exc}); the files it named may be out of "
                "step: rebuild them (cbi export) after removing it"
            ) from exc
        moved = []
        for tmp, final in renames:
            staged, target = self.path(tmp), self.path(final)
            if staged.exists():
                os.replace(staged, target)
                moved.append(target)
        for gone in removals:
            self.path(gone).unlink(missing_ok=True)
        journal.unlink()
        return moved


def _atomic(path: Path, write: Callable[[Path], object], render: Callable[[], bytes]) -> Path:
    """Local: write a hidden temp file, fsync, rename into place. Object store: one PUT of the
    rendered bytes (atomic per object; a killed upload leaves nothing readers can see)."""
    if not is_local(path):
        path.write_bytes(render())
        return path
    tmp = _temporary(path)
    try:
        _write_synced(tmp, write)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _temporary(path: Path) -> Path:
    """A hidden temporary name beside ``path`` (same folder, so the rename stays atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def _write_synced(tmp: Path, write: Callable[[Path], object]) -> None:
    write(tmp)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())


def _parquet(frame: pl.DataFrame) -> tuple[Callable[[Path], object], Callable[[], bytes]]:
    def render() -> bytes:
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd", statistics=True)
        return buffer.getvalue()

    return lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=True), render


def _json(payload: Any) -> tuple[Callable[[Path], object], Callable[[], bytes]]:
    text = json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n"
    return lambda tmp: tmp.write_text(text, encoding="utf-8"), lambda: text.encode("utf-8")


def write_parquet(frame: pl.DataFrame, path: Path) -> Path:
    return _atomic(path, *_parquet(frame))


def write_bytes(data: bytes, path: Path) -> Path:
    return _atomic(path, lambda tmp: tmp.write_bytes(data), lambda: data)


def write_json(payload: Any, path: Path) -> Path:
    return _atomic(path, *_json(payload))


class Batch:
    """Files replaced together or not at all: write all, then swap.

    Local root: ``parquet`` and ``json`` write each file in full to a hidden temporary name in
    its destination folder (fsynced) and replace nothing. ``commit`` writes the list of renames
    to the root's swap journal, renames every file into place and removes the journal; a crash
    during those renames leaves the journal, and ``DataRoot.finish_swap`` completes them before
    the next writer starts. ``remove`` stages the removal of an earlier file, done after the
    renames (and by ``finish_swap`` after a crash). Leaving the ``with`` block by an exception
    removes the temporary files: every earlier file stays as it was.

    Object-store root: the rendered files are kept in memory and PUT one after another on
    commit; each PUT is atomic, the set is not (a store has no multi-object rename).
    """

    def __init__(self, root: DataRoot) -> None:
        self._root = root
        self._staged: list[tuple[Path, Path]] = []
        self._rendered: list[tuple[bytes, Path]] = []
        self._removals: list[Path] = []

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def _stage(
        self, path: Path, write: Callable[[Path], object], render: Callable[[], bytes]
    ) -> Path:
        if not is_local(path):
            self._rendered.append((render(), path))
            return path
        tmp = _temporary(path)
        self._staged.append((tmp, path))
        _write_synced(tmp, write)
        return path

    def parquet(self, frame: pl.DataFrame, path: Path) -> Path:
        return self._stage(path, *_parquet(frame))

    def json(self, payload: Any, path: Path) -> Path:
        return self._stage(path, *_json(payload))

    def remove(self, path: Path) -> None:
        """Remove ``path`` (if it exists) with the commit: an output of an earlier run that the
        new set of files no longer has (a curve the new inputs lack), which would else be read
        as if it belonged to them."""
        self._removals.append(path)

    def commit(self) -> None:
        for data, path in self._rendered:
            path.write_bytes(data)
        self._rendered = []
        if not self._staged and not self._removals:
            return
        if not is_local(self._root.root):
            for path in self._removals:
                path.unlink(missing_ok=True)
            self._removals = []
            return
        root = self._root.root
        renames = [[str(t.relative_to(root)), str(p.relative_to(root))] for t, p in self._staged]
        removals = [str(p.relative_to(root)) for p in self._removals]
        write_json({"renames": renames, "removals": removals}, self._root.swap_journal)
        for tmp, path in self._staged:
            os.replace(tmp, path)
        for path in self._removals:
            path.unlink(missing_ok=True)
        self._staged, self._removals = [], []
        self._root.swap_journal.unlink()

    def abort(self) -> None:
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged, self._rendered, self._removals = [], [], []


def read_parquet(path: Path, what: str) -> pl.DataFrame:
    """Read a parquet the pipeline wrote; a missing or corrupt file names itself and its producer."""
    if not path.exists():
        raise StorageError(f"{path}: not found; materialize {what} first")
    try:
        return pl.read_parquet(path if is_local(path) else io.BytesIO(path.read_bytes()))
    except Exception as exc:  # polars raises several types for corrupt files
        raise StorageError(f"{path}: unreadable parquet ({type(exc).__name__}: {exc})") from exc


def read_bytes(path: Path, what: str, sha256: str | None = None) -> bytes:
    """Read a file the pipeline wrote (a model file); missing, or with ``sha256`` not the bytes its
    manifest recorded (truncated, replaced), raises StorageError naming the file."""
    if not path.exists():
        raise StorageError(f"{path}: not found; materialize {what} first")
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise StorageError(
            f"{path}: {len(data)} bytes that do not match the sha256 its manifest recorded "
            "(truncated or replaced); materialize it again"
        )
    return data


def read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise StorageError(f"{path}: not found; materialize {what} first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StorageError(f"{path}: unreadable JSON ({exc})") from exc
