"""Random streams of the sample market: one seeded generator per purpose, AR(1) noise."""

from __future__ import annotations

import numpy as np


def rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def ar1(innovations: np.ndarray, phi: float | np.ndarray) -> np.ndarray:
    """AR(1) with unit stationary variance driven by standard-normal innovations (rows = time);
    an array ``phi`` gives each column its own coefficient."""
    out = np.empty_like(innovations)
    scale = np.sqrt(1.0 - np.square(phi))
    out[0] = innovations[0]
    for t in range(1, innovations.shape[0]):
        out[t] = phi * out[t - 1] + scale * innovations[t]
    return out
