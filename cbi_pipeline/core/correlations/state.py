"""The cache of one as-of date (``CorrelationCache``), the state that extends it
(``CorrelationState``), the panel rows it is built from as arrays (``PanelData``) and whether an
earlier cache can be extended over new data (``extension_blocker``).

Incremental updates: ``CorrelationState`` keeps the last ``2 * max(windows)`` rows of returns (what
the chunks of any later row can reach back to), the last transformed level of each series (for the
next return), the regime and target co-moments (Welford, updated day by day in date order) and a
hash of the levels the state was built from. Extending a state over new rows replays exactly the
arithmetic of a full build, so an incremental result is bitwise equal to a full rebuild.

No numba here: reading a stored partition does not import it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import polars as pl

from cbi_pipeline.core.correlations.pairs import correlation_series, series_levels
from cbi_pipeline.core.correlations.spec import DEGENERATE_TOL, CorrelationSpec, CorrSeries
from cbi_pipeline.core.features import FeatureDef


@dataclass(frozen=True)
class CorrelationState:
    """What a later as-of date needs to extend this one (stored as npz without pickle + JSON)."""

    n_rows: int
    last_date: dt.date
    tail_returns: np.ndarray  # (series, min(n_rows, spec.tail_rows)) float64
    last_levels: np.ndarray  # (series,) transformed level (log price or level) of the last row
    regime_moments: np.ndarray  # (regimes, pairs, 6) Welford co-moments per regime and pair
    target_moments: np.ndarray  # (series, 6) co-moments of each series with the target
    history_hash: str
    fingerprint: str


@dataclass(frozen=True)
class CorrelationCache:
    """One as-of partition: the frames it stores and the state that extends it."""

    as_of: dt.date
    series: tuple[CorrSeries, ...]
    features: pl.DataFrame  # date + one Float32 column per key partner and window, every row
    recent: pl.DataFrame  # long: window, block, a, b, date, corr for the last history_days rows
    matrices: pl.DataFrame  # as-of value of every pair: window, block, a, b, key, corr, n_obs
    candidates: pl.DataFrame  # top-k of each block by |corr with the target| up to as_of
    cross_block: pl.DataFrame  # as-of correlations between candidates of different blocks
    regime_matrices: pl.DataFrame  # regime, block, a, b, key, corr, n_obs
    state: CorrelationState
    new_rows: int
    catalog: list[FeatureDef]

    @property
    def last_date(self) -> dt.date:
        return self.state.last_date


def fingerprint(spec: CorrelationSpec, series: Sequence[CorrSeries]) -> str:
    """Hash of everything besides the data that the stored numbers depend on."""
    skip = ("regimes", "block_overrides")
    payload = {
        "spec": {f.name: getattr(spec, f.name) for f in fields(spec) if f.name not in skip},
        "min_obs": [spec.min_obs(w) for w in spec.windows],
        "regimes": [[r.name, str(r.start), str(r.end)] for r in spec.regimes],
        "block_overrides": sorted(spec.block_overrides.items()),
        "series": [[s.name, s.block, s.source, s.transform] for s in series],
        "tol": DEGENERATE_TOL,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def history_hash(dates: np.ndarray, levels: np.ndarray, rows: int) -> str:
    """Hash of the first ``rows`` dates and levels (the data a state was built from)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(dates[:rows].astype("datetime64[D]").astype("<i8")).tobytes())
    h.update(np.ascontiguousarray(levels[:, :rows], dtype="<f8").tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class PanelData:
    """The panel rows on or before as_of, as arrays."""

    series: tuple[CorrSeries, ...]
    dates: np.ndarray  # datetime64[D], increasing
    levels: np.ndarray  # (series, rows) float64


def panel_data(panel: pl.DataFrame, spec: CorrelationSpec, as_of: dt.date) -> PanelData:
    spec.validate()
    if "date" not in panel.columns:
        raise ValueError("the panel has no 'date' column")
    cut = panel.filter(pl.col("date") <= as_of).sort("date")
    if cut.height == 0:
        first = panel["date"].min() if panel.height else None
        raise ValueError(f"the panel has no rows on or before as_of {as_of} (first date {first!s})")
    if cut["date"].n_unique() != cut.height:
        raise ValueError("the panel has duplicate dates")
    series = correlation_series(cut.columns, spec)
    dates = cut["date"].to_numpy().astype("datetime64[D]")
    return PanelData(series, dates, series_levels(cut, series, spec))


def extension_blocker(data: PanelData, spec: CorrelationSpec, base: CorrelationCache) -> str | None:
    """Why ``base`` cannot be extended over ``data`` (None when it can)."""
    st = base.state
    if st.fingerprint != fingerprint(spec, data.series):
        return "its settings or series differ from the current ones"
    if st.n_rows > data.dates.size:
        return f"it holds {st.n_rows} rows, more than the data up to as_of ({data.dates.size})"
    if data.dates[st.n_rows - 1] != np.datetime64(st.last_date, "D"):
        return f"the data's row {st.n_rows} is not its last date {st.last_date}"
    if history_hash(data.dates, data.levels, st.n_rows) != st.history_hash:
        return f"the data up to {st.last_date} changed since it was built"
    return None
