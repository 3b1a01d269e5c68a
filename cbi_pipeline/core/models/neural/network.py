"""The network and its inputs: scaling, sequence windows, the recurrent module, precision.

See the package docstring for how features and the label are scaled and windowed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from cbi_pipeline.core.models.neural.spec import NeuralTrainingError

_PREDICT_CHUNK = 4096


# --- precision ---------------------------------------------------------------------------------


def autocast_dtype(device: str, mixed_precision: bool) -> torch.dtype | None:
    """bf16 on CUDA cards that support it, else fp16 on cuda/mps; None (fp32) on the CPU."""
    if not mixed_precision or device == "cpu":
        return None
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


# --- scaling and sequences ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Scaler:
    """Per-feature mean/std (float32), the clip, and the label's mean/std, from one set of rows."""

    mean: np.ndarray
    std: np.ndarray
    clip: float
    target_mean: float
    target_std: float

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Standardise, clip to ±clip, missing -> 0 (float32)."""
        Z = (np.asarray(X, dtype=np.float32) - self.mean) / self.std
        np.clip(Z, -self.clip, self.clip, out=Z)
        return np.nan_to_num(Z, nan=0.0).astype(np.float32, copy=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "clip": self.clip,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Scaler:
        return cls(
            np.asarray(payload["mean"], dtype=np.float32),
            np.asarray(payload["std"], dtype=np.float32),
            float(payload["clip"]),
            float(payload["target_mean"]),
            float(payload["target_std"]),
        )


def fit_scaler(X: np.ndarray, y: np.ndarray, clip: float, center_target: bool = False) -> Scaler:
    """Scaler statistics from exactly the rows given (NaN-aware; flat or empty columns get std 1).

    The label is divided by its root mean square about 0 (``center_target=False``: a zero output
    means no change) or standardised about its mean (``center_target=True``: zero = the mean).
    """
    X = np.asarray(X, dtype=np.float64)
    finite = np.isfinite(X)
    count = finite.sum(axis=0)
    x0 = np.where(finite, X, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, x0.sum(axis=0) / count, 0.0)
        var = np.where(finite, (X - mean) ** 2, 0.0).sum(axis=0) / count
    std = np.sqrt(var)
    std = np.where((count > 1) & np.isfinite(std) & (std > 1e-12 * (1 + np.abs(mean))), std, 1.0)
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0 or not np.isfinite(y).all():
        raise NeuralTrainingError(
            f"the label must be finite on every scaled row; got {int((~np.isfinite(y)).sum())} "
            f"non-finite of {y.size}"
        )
    y_mean = float(y.mean()) if center_target else 0.0
    y_std = float(np.sqrt(np.mean((y - y_mean) ** 2)))
    return Scaler(
        mean.astype(np.float32),
        std.astype(np.float32),
        float(clip),
        y_mean,
        y_std if y_std > 0 else 1.0,
    )


def sequence_windows(Z: np.ndarray, rows: np.ndarray, length: int) -> np.ndarray:
    """``(len(rows), length, features)``: row ``t``'s window is ``Z[t - length + 1 : t + 1]``.

    Rows before the first one are zeros (missing after scaling). Built with a strided view and
    one gather; no row after ``t`` is ever read.
    """
    Z = np.asarray(Z, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= Z.shape[0]):
        raise NeuralTrainingError(f"window rows outside 0..{Z.shape[0] - 1}")
    padded = np.concatenate([np.zeros((length - 1, Z.shape[1]), np.float32), Z])
    view = sliding_window_view(padded, length, axis=0)  # (rows, features, length)
    return np.ascontiguousarray(view[rows].transpose(0, 2, 1))


# --- the network -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Architecture:
    family: str
    input_size: int
    hidden_size: int
    num_layers: int
    dropout: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
        }


class SequenceRegressor(nn.Module):
    """LSTM or GRU over the window, a linear head (zero at initialisation) on the last step."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        rnn = nn.LSTM if arch.family == "lstm" else nn.GRU
        self.rnn = rnn(
            arch.input_size,
            arch.hidden_size,
            num_layers=arch.num_layers,
            batch_first=True,
            dropout=arch.dropout if arch.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(arch.dropout)
        self.head = nn.Linear(arch.hidden_size, 1)
        # A zero head starts every fresh network at the scaled label's centre (see fit_scaler).
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(self.dropout(out[:, -1, :])).squeeze(-1)


# --- running the network -----------------------------------------------------------------------


def autocast(device: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)


def _dtype_of(precision: str) -> torch.dtype | None:
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def predict_scaled(
    module: nn.Module, windows: np.ndarray | torch.Tensor, device: str, precision: str
) -> np.ndarray:
    """The network's outputs (scaled label units) for windows, in chunks, in eval mode."""
    module.eval()
    dtype = _dtype_of(precision)
    x_all = torch.from_numpy(windows) if isinstance(windows, np.ndarray) else windows
    out = []
    with torch.no_grad():
        for start in range(0, x_all.shape[0], _PREDICT_CHUNK):
            x = x_all[start : start + _PREDICT_CHUNK].to(device)
            with autocast(device, dtype):
                out.append(module(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)
