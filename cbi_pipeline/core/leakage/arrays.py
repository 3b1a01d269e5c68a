"""Numeric helpers the leakage checks share: float columns, tolerant equality, shifts."""

from __future__ import annotations

import numpy as np
import polars as pl


def float_column(frame: pl.DataFrame, col: str) -> np.ndarray:
    return frame[col].cast(pl.Float64).fill_nan(None).to_numpy().astype(np.float64)


def close_mask(a: np.ndarray, b: np.ndarray, rel_tol: float) -> np.ndarray:
    return np.abs(a - b) <= rel_tol * np.maximum(np.abs(a), np.abs(b)) + 1e-12


def shift_ahead(x: np.ndarray, k: int) -> np.ndarray:
    """x[t + k] at position t (NaN past the end; k < 0 looks back)."""
    out = np.full_like(x, np.nan)
    if k == 0:
        return x.copy()
    if abs(k) >= x.size:
        return out
    if k > 0:
        out[:-k] = x[k:]
    else:
        out[-k:] = x[:k]
    return out
