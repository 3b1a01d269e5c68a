"""Scan a data root the way a reader would: every file where readers look must parse completely,
every model must match the sha256 its manifest recorded, and temp files must be hidden."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

PNG_END = b"IEND\xaeB`\x82"


@dataclass
class ScanReport:
    checked: dict[str, int] = field(default_factory=dict)  # suffix -> files that parsed
    problems: list[str] = field(default_factory=list)
    hidden_temps: list[str] = field(default_factory=list)  # leftovers under dot-names


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _check(path: Path) -> None:
    suffix = path.suffix
    if suffix == ".parquet":
        pl.read_parquet(path)
    elif suffix == ".json":
        json.loads(path.read_text(encoding="utf-8"))
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                np.asarray(z[key])
    elif suffix == ".txt" and path.name == "model.txt":
        import lightgbm as lgb

        lgb.Booster(model_file=str(path))
    elif suffix == ".ubj":
        import xgboost as xgb

        xgb.Booster().load_model(bytearray(path.read_bytes()))
    elif suffix == ".pt":
        import torch

        torch.load(path, map_location="cpu", weights_only=True)
    elif suffix == ".png":
        data = path.read_bytes()
        if not (data.startswith(b"\x89PNG") and data.endswith(PNG_END)):
            raise ValueError("not a complete PNG")
    elif suffix == ".db":
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            (status,) = db.execute("PRAGMA integrity_check").fetchone()
        if status != "ok":
            raise ValueError(f"sqlite integrity_check: {status}")


def scan(root: Path) -> ScanReport:
    report = ScanReport()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if _hidden(rel):
            report.hidden_temps.append(str(rel))
            continue
        if path.suffix in (".tmp", ".old", ".partial"):
            report.problems.append(f"{rel}: a temp file under a name readers see")
            continue
        try:
            _check(path)
        except Exception as exc:
            report.problems.append(f"{rel}: unreadable ({type(exc).__name__}: {exc})")
            continue
        report.checked[path.suffix] = report.checked.get(path.suffix, 0) + 1
        if path.name == "manifest.json" and rel.parts[0] == "models":
            _check_manifest(path, rel, report)
    return report


def _check_manifest(path: Path, rel: Path, report: ScanReport) -> None:
    manifest = json.loads(path.read_text(encoding="utf-8"))
    model_file, sha = manifest.get("model_file"), manifest.get("model_sha256")
    if not model_file or not sha:
        return
    model = path.parent / model_file
    if not model.exists():
        report.problems.append(f"{rel}: names {model_file}, which is missing")
    elif hashlib.sha256(model.read_bytes()).hexdigest() != sha:
        report.problems.append(f"{rel}: {model_file} does not match its model_sha256")
