"""Hardware detection and per-family hyperparameters (DESIGN §4, the seed's "M4 config")."""

from __future__ import annotations

import functools
import math
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from cbi_pipeline.core.vocabulary import MODEL_FAMILIES, NEURAL_FAMILIES, horizon_days

DEVICES = ("cpu", "cuda", "mps")


@dataclass(frozen=True)
class SystemInfo:
    """What the machine offers to training."""

    cores: int
    logical_cpus: int
    ram_gb: float
    device: str
    platform: str
    mixed_precision: bool


def _cgroup_cpu_limit() -> float | None:
    """CPU quota from cgroup v2 (``cpu.max``) or v1 (``cfs_quota_us``), if any."""
    v2 = Path("/sys/fs/cgroup/cpu.max")
    if v2.exists():
        quota, _, period = v2.read_text().strip().partition(" ")
        if quota != "max" and period:
            return int(quota) / int(period)
        return None
    q, p = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    if q.exists() and p.exists():
        quota_us = int(q.read_text())
        if quota_us > 0:
            return quota_us / int(p.read_text())
    return None


def _cgroup_memory_limit() -> int | None:
    for path in (
        Path("/sys/fs/cgroup/memory.max"),
        Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    ):
        if path.exists():
            text = path.read_text().strip()
            if text != "max" and int(text) < 1 << 60:
                return int(text)
    return None


def _apple_performance_cores() -> int | None:
    try:
        out = subprocess.run(
            ["sysctl", "-n", "hw.perflevel0.physicalcpu"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return int(text) if text.isdigit() else None


def detect_cores() -> int:
    """Cores training may use: performance cores on Apple silicon; affinity and cgroup aware on Linux."""
    if platform.system() == "Darwin":
        perf = _apple_performance_cores()
        if perf:
            return perf
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = psutil.cpu_count(logical=True) or 1
    quota = _cgroup_cpu_limit()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def detect_ram_gb() -> float:
    total = psutil.virtual_memory().total
    limit = _cgroup_memory_limit()
    if limit is not None:
        total = min(total, limit)
    return round(total / 2**30, 1)


@functools.cache
def detect_device() -> str:
    """``cuda`` or ``mps`` when torch is installed and sees one, else ``cpu``. Imports torch lazily.
    Asked once per process: the accelerators do not come and go, and asking costs 0.4 s."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def detect_system(
    cores: int | None = None, ram_gb: float | None = None, device: str | None = None
) -> SystemInfo:
    """Detect the machine; any argument given overrides detection."""
    if device is not None and device not in DEVICES:
        raise ValueError(f"device {device!r} unknown; expected one of {DEVICES}")
    if cores is not None and cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    if ram_gb is not None and ram_gb <= 0:
        raise ValueError(f"ram_gb must be > 0, got {ram_gb}")
    dev = device or detect_device()
    return SystemInfo(
        cores=cores or detect_cores(),
        logical_cpus=psutil.cpu_count(logical=True) or 1,
        ram_gb=ram_gb or detect_ram_gb(),
        device=dev,
        platform=f"{platform.system()} {platform.machine()}",
        mixed_precision=dev in ("cuda", "mps"),
    )


def neural_batch_and_sequence(ram_gb: float) -> tuple[int, int]:
    """Batch size and sequence length by RAM: 128/30 up to 32 GB, 256/60 to 48 GB, 512/90 above."""
    if ram_gb >= 48:
        return 512, 90
    if ram_gb >= 32:
        return 256, 60
    return 128, 30


def get_config_for_model(
    family: str, horizon: str, system: SystemInfo | None = None
) -> dict[str, Any]:
    """Hyperparameters for a model family at a horizon on ``system`` (default: this machine,
    ``detect_system()``), as the guide calls it: ``get_config_for_model("lightgbm",
    horizon="1m")``."""
    h = horizon_days(horizon)
    if system is None:
        system = detect_system()
    if family == "lightgbm":
        return {
            "num_leaves": 31,
            "max_depth": 6,
            "learning_rate": 0.05,
            "n_estimators": 1500,
            "early_stopping_rounds": 100,
            "num_threads": system.cores,
            "horizon_days": h,
        }
    if family == "xgboost":
        return {
            "max_depth": 8,
            "learning_rate": 0.03,
            "n_estimators": 1500,
            "early_stopping_rounds": 100,
            "tree_method": "hist",
            "n_jobs": system.cores,
            "horizon_days": h,
        }
    if family in NEURAL_FAMILIES:
        batch, seq = neural_batch_and_sequence(system.ram_gb)
        return {
            "batch_size": batch,
            "sequence_length": seq,
            "hidden_size": 32,
            "num_layers": 1,
            "dropout": 0.0,
            "learning_rate": 1e-3,
            "max_epochs": 40,
            "patience": 3,
            "device": system.device,
            "mixed_precision": system.mixed_precision,
            # One intra-op thread: a batch-128 recurrent step is too small to split, and extra
            # threads spin (benchmarks/neural.py, 2 cores: 2 threads took x1.3 (LSTM) and x4
            # (GRU) the time of one over the 1m walk-forward).
            "num_threads": 1,
            "horizon_days": h,
        }
    raise ValueError(f"unknown model family {family!r}; expected one of {MODEL_FAMILIES}")


def system_as_dict(system: SystemInfo) -> dict[str, Any]:
    return asdict(system)
