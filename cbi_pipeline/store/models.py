"""Model files under the data root: a horizon's export read for training, each family's outputs
(out-of-fold predictions, native model file, ``manifest.json``), stored neural models, and the
champion pointer with its immutable snapshot.

The current champion of a horizon lives in ``models/{h}/champion.json``, a pointer to an immutable
copy of the promoted model under ``models/{h}/champions/<stamp>-<family>/``: training a new model
never touches it, and switching champions is one atomic JSON write.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from cbi_pipeline.core.export import export_filename
from cbi_pipeline.core.memo import Kept
from cbi_pipeline.core.models.neural.spec import CONFIG_FILE, WEIGHTS_FILE
from cbi_pipeline.core.vocabulary import target_column
from cbi_pipeline.core.walkforward import (
    TrainingData,
    WalkForwardResult,
    WalkForwardSpec,
    spec_as_dict,
    training_data,
)
from cbi_pipeline.settings import Settings
from cbi_pipeline.store.root import (
    DataRoot,
    StorageError,
    is_local,
    read_json,
    write_bytes,
    write_json,
    write_parquet,
)
from cbi_pipeline.store.tracking import TrackedRun

if TYPE_CHECKING:
    from cbi_pipeline.core.models.neural.files import NeuralModel

MANIFEST_FILE = "manifest.json"


@functools.cache
def code_version() -> dict[str, str]:
    """The package version and the git commit of the checkout ('unknown' where there is none)."""
    try:
        package = metadata.version("cbi_pipeline")
    except metadata.PackageNotFoundError:
        package = "unknown"
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        sha = out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        sha = "unknown"
    return {"package": package, "git_sha": sha}


@dataclass(frozen=True, eq=False)
class LoadedExport:
    path: Path
    sha256: str
    frame: pl.DataFrame
    data: TrainingData


# The last exports read, by path, horizon and the sha256 of their bytes: every family of a
# horizon trains on the same export, one step after another (read and validated once). Their
# arrays are read-only, so a step that tried to change them would fail instead of changing the
# next step's data.
_LOADED: Kept[LoadedExport] = Kept(2)


def load_export(root: DataRoot, settings: Settings, horizon: str) -> LoadedExport:
    """Read the horizon's export once, hash its bytes, validate it into arrays."""
    path = root.export(export_filename(settings.target_symbol, settings.surface, horizon))
    if not path.exists():
        raise StorageError(f"{path}: not found; materialize training_export[{horizon}] first")
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()

    def read() -> LoadedExport:
        try:
            frame = pl.read_parquet(io.BytesIO(raw))
        except Exception as exc:  # polars raises several types for corrupt files
            raise StorageError(f"{path}: unreadable parquet ({type(exc).__name__}: {exc})") from exc
        data = training_data(frame, horizon, str(path))
        for value in vars(data).values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False
        return LoadedExport(path, sha, frame, data)

    return _LOADED.get((str(path), horizon, sha), read)


@dataclass(frozen=True, eq=False)
class FamilyOutput:
    """What one family's training wrote, and where it is tracked."""

    horizon: str
    family: str
    result: WalkForwardResult
    manifest: dict[str, Any]
    predictions_path: Path
    model_dir: Path
    model_path: Path | None
    tracked: TrackedRun | None = None

    @property
    def val_mape(self) -> float:
        return float(self.manifest["val_mape"])

    @property
    def random_walk_mape(self) -> float:
        return float(self.manifest["random_walk_mape"])

    @property
    def trees(self) -> list[int]:
        return [int(f["trees"]) for f in self.manifest["folds"] if "trees" in f]

    @property
    def epochs(self) -> list[int]:
        return [int(f["epochs"]) for f in self.manifest["folds"] if "epochs" in f]

    @property
    def seconds(self) -> float:
        return float(self.manifest["seconds"])


def build_manifest(
    loaded: LoadedExport,
    settings: Settings,
    spec: WalkForwardSpec,
    result: WalkForwardResult,
    seconds: float,
    *,
    model_file: str | None,
    model_bytes: bytes | None,
    features: list[str],
    parameters: Mapping[str, Any],
    final: Mapping[str, Any],
    feature_selection: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything needed to reproduce and audit one family's training (the models/ layout)."""
    data, frame = loaded.data, loaded.frame
    return {
        "family": result.family,
        "horizon": data.horizon,
        "horizon_days": data.horizon_days,
        "target_symbol": settings.target_symbol,
        "label": f"log({target_column(data.horizon)} / price)",
        "model_file": model_file,
        "model_sha256": hashlib.sha256(model_bytes).hexdigest()
        if model_bytes is not None
        else None,
        "features": features,
        "feature_selection": dict(feature_selection),
        "parameters": dict(parameters),
        "walk_forward": spec_as_dict(spec),
        "project_config": settings.project_config().path,
        "data": {
            "export": str(loaded.path),
            "export_sha256": loaded.sha256,
            "rows": data.rows,
            "labelled_rows": int(data.labelled.sum()),
            "first_date": str(data.dates[0]),
            "last_date": str(data.dates[-1]),
            "as_of": str(frame["as_of"].max()) if "as_of" in frame.columns else None,
        },
        "code_version": code_version(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "val_mape": result.val_mape,
        "random_walk_mape": result.random_walk_mape,
        "folds": [f.as_dict() for f in result.folds],
        "final": dict(final),
    }


def write_family(
    root: DataRoot,
    horizon: str,
    result: WalkForwardResult,
    manifest: dict[str, Any],
    model_bytes: bytes | None,
) -> FamilyOutput:
    """Predictions, then the model file, then the manifest that names it, each atomically."""
    family = result.family
    predictions_path = write_parquet(result.predictions, root.predictions(horizon, family))
    model_dir = root.model_dir(horizon, family)
    model_path = None
    if model_bytes is not None:
        model_path = write_bytes(model_bytes, model_dir / str(manifest["model_file"]))
    write_json(manifest, model_dir / MANIFEST_FILE)
    return FamilyOutput(horizon, family, result, manifest, predictions_path, model_dir, model_path)


def load_neural_model(model_dir: Path) -> NeuralModel:
    """Rebuild the stored final model of ``models/{h}/{family}/`` (weights read weights_only)."""
    # imports torch: only when a model is loaded
    from cbi_pipeline.core.models.neural.files import model_from_files

    config_path = model_dir / CONFIG_FILE
    config = read_json(config_path, "lstm_model / gru_model")
    if not isinstance(config, dict):
        raise StorageError(f"{config_path}: expected a JSON object")
    weights_path = model_dir / str(config.get("weights_file", WEIGHTS_FILE))
    if not weights_path.exists():
        raise StorageError(f"{weights_path}: not found (named by {config_path})")
    return model_from_files(
        config, weights_path.read_bytes(), f"{weights_path} (config {config_path})"
    )


# --- the champion pointer ---------------------------------------------------------------------


def current_champion(root: DataRoot, horizon: str) -> dict[str, Any] | None:
    path = root.champion_pointer(horizon)
    if not path.exists():
        return None
    pointer = read_json(path, "champion")
    relative = PurePosixPath(str(pointer.get("model_dir", "")))
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise StorageError(
            f"{path}: model_dir {str(relative)!r} must be a path inside the data root "
            "(relative, without '..')"
        )
    model_dir = root.path(*relative.parts)
    if is_local(model_dir) and not model_dir.resolve().is_relative_to(root.root.resolve()):
        raise StorageError(f"{path}: model_dir {str(relative)!r} leads outside the data root")
    if not model_dir.is_dir():
        raise StorageError(f"{path}: points to {model_dir}, which does not exist")
    return dict(pointer)


def snapshot_model(root: DataRoot, horizon: str, family: str) -> Path:
    """Copy a family's model folder to an immutable champions/<stamp>-<family>/ folder."""
    src = root.model_dir(horizon, family)
    if not (src / MANIFEST_FILE).exists():
        raise StorageError(f"{src / MANIFEST_FILE}: not found; cannot promote {family}")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    dest = root.path("models", horizon, "champions", f"{stamp}-{family}-{uuid.uuid4().hex[:6]}")
    if root.remote:  # a new, unique prefix that only champion.json (written after) points to
        for child in src.iterdir():
            if child.is_file():
                write_bytes(child.read_bytes(), dest / child.name)
        return dest
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copytree(src, tmp)
    tmp.rename(dest)
    return dest


def write_champion(root: DataRoot, horizon: str, pointer: Mapping[str, Any]) -> Path:
    return write_json(dict(pointer), root.champion_pointer(horizon))
