"""Where the fold cache lives: ``cache/folds/{h}/{family}/`` under the data root.

Per fold (and the final model): ``fold_{k}.json`` (the entry: key, parts, model meta, facts,
predictions, checksum) and ``fold_{k}.bin`` (the model file's bytes), each written atomically,
the bytes first, so an entry never names bytes that are not there yet; ``rows.parquet`` holds the
last run's row digests, from which a refit names the dates that changed. Nothing read here is
trusted: ``core.foldcache.entry_problem`` checks every entry before use, and an unreadable one is
reported as a reason to refit, never raised.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cbi_pipeline.core.fingerprint import DIGEST_BYTES
from cbi_pipeline.core.foldcache import KINDS, RowPrints
from cbi_pipeline.core.vocabulary import ETS, MODEL_FAMILIES
from cbi_pipeline.store.models import MANIFEST_FILE
from cbi_pipeline.store.root import (
    DataRoot,
    StorageError,
    read_json,
    read_parquet,
    write_bytes,
    write_json,
    write_parquet,
)

ROWS_FILE = "rows.parquet"


def fold_cache_dir(root: DataRoot, horizon: str, family: str) -> Path:
    return root.path("cache", "folds", horizon, family)


class FileFoldStore:
    """One family's entries for one horizon (``core.foldcache.FoldStore``)."""

    def __init__(self, root: DataRoot, horizon: str, family: str) -> None:
        self.dir = fold_cache_dir(root, horizon, family)

    def _paths(self, name: str) -> tuple[Path, Path]:
        stem = name.replace(" ", "_")
        return self.dir / f"{stem}.json", self.dir / f"{stem}.bin"

    def load(self, name: str) -> tuple[Any, bytes | None, str]:
        entry, blob = self._paths(name)
        if not entry.exists():
            return None, None, "no cached entry"
        try:
            raw = json.loads(entry.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, None, f"cached entry {entry.name} unreadable ({type(exc).__name__})"
        return raw, blob.read_bytes() if blob.exists() else None, ""

    def save(self, name: str, entry: Mapping[str, Any], blob: bytes) -> None:
        entry_path, blob_path = self._paths(name)
        write_bytes(blob, blob_path)
        write_json(dict(entry), entry_path)

    def previous_prints(self) -> RowPrints | None:
        path = self.dir / ROWS_FILE
        if not path.exists():
            return None
        try:
            frame = read_parquet(path, "the fold cache")
            arrays = {
                k: np.frombuffer(b"".join(frame[k].to_list()), dtype=np.uint8).reshape(
                    frame.height, DIGEST_BYTES
                )
                for k in KINDS
            }
            dates = frame["date"].to_numpy().astype("datetime64[D]")
        except (StorageError, KeyError, ValueError, TypeError, pl.exceptions.PolarsError):
            return None  # only used to name changed dates in refit reasons
        return RowPrints(dates, arrays["features"], arrays["labels"], arrays["prices"])

    def save_prints(self, prints: RowPrints) -> None:
        frame = pl.DataFrame(
            {
                "date": np.asarray(prints.dates, dtype="datetime64[D]"),
                **{k: [bytes(r) for r in prints.of_kind(k)] for k in KINDS},
            },
            schema={"date": pl.Date, **dict.fromkeys(KINDS, pl.Binary)},
        )
        write_parquet(frame, self.dir / ROWS_FILE)


def fold_cache_line(cache: Mapping[str, Any]) -> str:
    """``17 reused, 1 predicted, 0 refit; final refit (its rows changed ...)``."""
    final = cache.get("final")
    text = (
        f"{cache['reused_folds']} reused, {cache['predicted_folds']} predicted with the kept "
        f"model, {cache['refit_folds']} refit"
    )
    if cache["refit"]:
        reasons = sorted(set(cache["refit"].values()))
        text += f" ({'; '.join(reasons[:2])}{'; ...' if len(reasons) > 2 else ''})"
    if final:
        text += f"; final model {final['status']} ({final['reason']})"
    return text


def fold_cache_table(root: DataRoot, horizons: Sequence[str]) -> pl.DataFrame:
    """Per horizon and cached family, what the last training did with each fold: reused (model
    and predictions kept), predicted (model kept, changed test rows predicted with it) or refit,
    the refit reasons and the final model's status."""
    rows = []
    for h in horizons:
        for family in (*MODEL_FAMILIES, ETS):
            path = root.model_dir(h, family) / MANIFEST_FILE
            if not path.exists():
                continue
            cache = read_json(path, f"{family}[{h}]").get("fold_cache")
            if cache:
                rows.append({"horizon": h, "family": family, "fold_cache": fold_cache_line(cache)})
    return pl.DataFrame(
        rows, schema={"horizon": pl.String, "family": pl.String, "fold_cache": pl.String}
    )
