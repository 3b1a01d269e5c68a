"""Which series and pairs are correlated: the series of a panel (closes, signals and the base
spreads of the feature plan) ordered by block, their levels and returns, the pair set (every
within-block pair, then the target's key pairs), the exported feature names and their catalog,
and the regime of each date.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from cbi_pipeline.core.blocks import BLOCKS, CORRELATIONS, SPREADS, block_of
from cbi_pipeline.core.correlations.spec import (
    DIFFERENCE,
    LOG_RETURN,
    CorrelationSpec,
    CorrSeries,
)
from cbi_pipeline.core.features import FeatureDef, FeatureSpec, feature_plan
from cbi_pipeline.core.panel import close_column
from cbi_pipeline.core.regimes import Regime


def _spread_plan(columns: Sequence[str], target: str) -> dict[str, pl.Expr]:
    """Base spread levels of the feature plan (not their z-scores or changes), name -> expr."""
    return dict(_spread_plan_cached(tuple(columns), target))


@functools.lru_cache(maxsize=16)
def _spread_plan_cached(columns: tuple[str, ...], target: str) -> tuple[tuple[str, pl.Expr], ...]:
    entries = [
        (d, e) for d, e in feature_plan(list(columns), FeatureSpec(target)) if d.block == SPREADS
    ]
    names = {d.name: d for d, _ in entries}
    base = []
    for d, expr in entries:
        derived = any(
            d.name.startswith(other + "_") and names[other].inputs == d.inputs
            for other in names
            if other != d.name
        )
        if not derived:
            base.append((d.name, expr))
    return tuple(base)


def correlation_series(columns: Sequence[str], spec: CorrelationSpec) -> tuple[CorrSeries, ...]:
    """The series of a panel with these columns, ordered by block, the target first in its block."""
    cols = list(columns)
    target = spec.target_symbol
    if close_column(target) not in cols:
        raise ValueError(f"panel has no {close_column(target)!r} column for target {target!r}")
    own = {f"{target}_{f}" for f in ("open", "high", "low", "volume")}
    found: list[CorrSeries] = []
    for c in cols:
        if c == "date" or c in own:
            continue
        if c.endswith("_close"):
            sym = c.removesuffix("_close")
            found.append(CorrSeries(sym, block_of(sym, spec.block_overrides), c, LOG_RETURN))
        else:
            found.append(CorrSeries(c, block_of(c, spec.block_overrides), c, DIFFERENCE))
    for name in _spread_plan(cols, target):
        found.append(CorrSeries(name, SPREADS, name, DIFFERENCE))
    names = [s.name for s in found]
    if len(set(names)) != len(names):
        raise ValueError(f"correlation series names collide: {sorted(names)}")
    return tuple(sorted(found, key=lambda s: (BLOCKS.index(s.block), s.name != target, s.name)))


def series_levels(
    panel: pl.DataFrame, series: Sequence[CorrSeries], spec: CorrelationSpec
) -> np.ndarray:
    """Levels (series x rows, float64, NaN = missing) of each series on the panel's rows."""
    wanted = {s.name for s in series if s.block == SPREADS and s.source not in panel.columns}
    spreads = _spread_plan(panel.columns, spec.target_symbol) if wanted else {}
    exprs = [
        (
            spreads[s.name]
            if s.name in spreads and s.source not in panel.columns
            else pl.col(s.source)
        )
        .cast(pl.Float64)
        .alias(f"s{i}")
        for i, s in enumerate(series)
    ]
    frame = panel.select(exprs)
    return np.ascontiguousarray(frame.to_numpy(order="c").T).astype(np.float64, copy=False)


def returns_from_levels(transformed: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """Day-over-day differences of transformed levels; ``previous`` is the row before the first."""
    out = np.empty_like(transformed)
    first = np.full(transformed.shape[0], np.nan) if previous is None else previous
    if transformed.shape[1]:
        out[:, 0] = transformed[:, 0] - first
        out[:, 1:] = transformed[:, 1:] - transformed[:, :-1]
    return out


def feature_name(target: str, partner: str, window: int) -> str:
    return f"corr_{target.lower()}_{partner.removeprefix('spread_').lower()}_{window}d"


@dataclass(frozen=True)
class PairSet:
    """Pairs of series indices: every within-block pair, then the key pairs not already in it."""

    index: np.ndarray  # (P, 2) int64
    within: np.ndarray  # (P,) bool
    key_partners: tuple[str, ...]  # the key partners present, in spec order
    key_pairs: tuple[int, ...]  # pair row of each present key partner


def pair_set(series: Sequence[CorrSeries], spec: CorrelationSpec) -> PairSet:
    names = [s.name for s in series]
    pos = {n: i for i, n in enumerate(names)}
    missing_extra = [p for p in spec.extra_key_partners if p not in pos]
    if missing_extra:
        raise ValueError(
            f"configured key partners {missing_extra} are not in the data; available series: "
            f"{names}"
        )
    rows: list[tuple[int, int]] = []
    for block in BLOCKS:
        members = [i for i, s in enumerate(series) if s.block == block]
        rows += [(a, b) for k, a in enumerate(members) for b in members[k + 1 :]]
    within = [True] * len(rows)
    where = {pair: k for k, pair in enumerate(rows)}
    t = pos[spec.target_symbol]
    partners, key_rows = [], []
    for partner in dict.fromkeys((*spec.key_partners, *spec.extra_key_partners)):
        if partner not in pos or partner == spec.target_symbol:
            continue
        pair = (min(t, pos[partner]), max(t, pos[partner]))
        if pair not in where:
            where[pair] = len(rows)
            rows.append(pair)
            within.append(False)
        partners.append(partner)
        key_rows.append(where[pair])
    return PairSet(
        np.array(rows, dtype=np.int64).reshape(-1, 2),
        np.array(within, dtype=np.bool_),
        tuple(partners),
        tuple(key_rows),
    )


def regime_index(dates: np.ndarray, regimes: tuple[Regime, ...]) -> np.ndarray:
    """Index of the regime of each date (``datetime64[D]`` array); every date has one."""
    starts = np.array(
        [np.datetime64(r.start) if r.start else np.datetime64("0001-01-01") for r in regimes],
        dtype="datetime64[D]",
    )
    idx = np.searchsorted(starts, dates, side="right") - 1
    first = regimes[0].start
    if (idx < 0).any():
        raise ValueError(f"dates before the first regime's start {first}")
    return idx.astype(np.int64)


def correlation_catalog(
    spec: CorrelationSpec, partners: Sequence[str], series: Sequence[CorrSeries]
) -> list[FeatureDef]:
    """Catalog entries of the exported rolling-correlation features (block Correlations)."""
    by_name = {s.name: s for s in series}
    target = by_name[spec.target_symbol]
    out = []
    for partner in partners:
        s = by_name[partner]
        what = "daily log return" if s.transform == LOG_RETURN else "daily change"
        for w in spec.windows:
            out.append(
                FeatureDef(
                    feature_name(spec.target_symbol, partner, w),
                    CORRELATIONS,
                    f"{w}-day rolling correlation of {target.name} daily log returns with the "
                    f"{what} of {partner} (pairwise-complete days, at least {spec.min_obs(w)}; "
                    "from correlation_cache)",
                    (target.source, s.source),
                )
            )
    return out
