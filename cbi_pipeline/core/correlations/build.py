"""The cache of one as-of date from the panel rows on or before it: built from scratch, or by
extending an earlier partition's state over the new rows (bitwise equal to a full rebuild); and
the exported correlation features straight from a panel (``key_pair_features``).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from cbi_pipeline.core.correlations import frames
from cbi_pipeline.core.correlations.kernel import (
    rolling_corr,
    threads,
    transform_levels,
    update_comoments,
)
from cbi_pipeline.core.correlations.pairs import (
    correlation_catalog,
    pair_set,
    regime_index,
    returns_from_levels,
)
from cbi_pipeline.core.correlations.spec import CorrelationSpec
from cbi_pipeline.core.correlations.state import (
    CorrelationCache,
    CorrelationState,
    PanelData,
    extension_blocker,
    fingerprint,
    history_hash,
    panel_data,
)
from cbi_pipeline.core.features import FeatureDef


def build_correlation_cache(
    panel: pl.DataFrame,
    spec: CorrelationSpec,
    as_of: dt.date,
    base: CorrelationCache | None = None,
) -> CorrelationCache:
    """The cache for ``as_of`` from the panel rows on or before it.

    With ``base`` (an earlier partition for which ``extension_blocker`` is None) only the rows
    after the base's last date are computed; the result equals a full build bitwise.
    """
    return build_from_data(panel_data(panel, spec, as_of), spec, as_of, base)


def build_from_data(
    data: PanelData, spec: CorrelationSpec, as_of: dt.date, base: CorrelationCache | None = None
) -> CorrelationCache:
    series, dates, levels = data.series, data.dates, data.levels
    n, p = dates.size, len(series)
    names = [s.name for s in series]
    blocks = [s.block for s in series]
    pairs = pair_set(series, spec)
    windows = np.array(spec.windows, dtype=np.int64)
    min_obs = np.array([spec.min_obs(w) for w in spec.windows], dtype=np.int64)
    t_idx = names.index(spec.target_symbol)
    groups = regime_index(dates, spec.regimes)

    if base is not None:
        blocker = extension_blocker(data, spec, base)
        if blocker:
            raise ValueError(f"cannot extend the partition of {base.as_of}: {blocker}")
        n0 = base.state.n_rows
        tail = base.state.tail_returns
        new_levels = transform_levels(levels[:, n0:], series)
        rets = np.concatenate([tail, returns_from_levels(new_levels, base.state.last_levels)], 1)
        origin = n0 - tail.shape[1]
        regime_acc = base.state.regime_moments.copy()
        target_acc = base.state.target_moments.copy()
        last_levels = new_levels[:, -1] if n > n0 else base.state.last_levels
    else:
        n0 = 0
        all_levels = transform_levels(levels, series)
        rets = returns_from_levels(all_levels)
        origin = 0
        regime_acc = np.zeros((len(spec.regimes), pairs.index.shape[0], 6))
        target_acc = np.zeros((p, 6))
        last_levels = all_levels[:, -1]

    local0 = n0 - origin  # column of the first new row in rets
    # The last known row is recomputed (bitwise identically) so that a partition without new rows
    # still has its as-of values.
    start = max(local0 - 1, 0)
    rolled = rolling_corr(rets, pairs.index, windows, min_obs, origin=origin, start=start)
    first_row = origin + start  # the history row of rolled[..., 0]

    row_groups = np.zeros(rets.shape[1], dtype=np.int64)
    row_groups[local0:] = groups[n0:]
    with np.errstate(divide="ignore"):
        recip = 1.0 / np.arange(n + 1, dtype=np.float64)  # a count never exceeds the rows
    ia, ib = pairs.index[:, 0].copy(), pairs.index[:, 1].copy()
    with threads((rets.shape[1] - local0) * (ia.size + p)):
        update_comoments(rets, ia, ib, row_groups, local0, regime_acc, recip)
        update_comoments(
            rets,
            np.arange(p, dtype=np.int64),
            np.full(p, t_idx, dtype=np.int64),
            np.zeros_like(row_groups),
            local0,
            target_acc[None],
            recip,
        )

    tail_len = min(n, spec.tail_rows)
    state = CorrelationState(
        n_rows=n,
        last_date=frames.to_date(dates[-1]),
        tail_returns=np.ascontiguousarray(rets[:, rets.shape[1] - tail_len :]),
        last_levels=np.ascontiguousarray(last_levels, dtype=np.float64),
        regime_moments=regime_acc,
        target_moments=target_acc,
        history_hash=history_hash(dates, levels, n),
        fingerprint=fingerprint(spec, series),
    )
    new_dates = dates[first_row:]
    prior_features = base.features if base is not None else None
    prior_recent = base.recent if base is not None else None
    candidates = frames.candidates(target_acc, names, blocks, spec, t_idx)
    return CorrelationCache(
        as_of=as_of,
        series=series,
        features=frames.feature_frame(rolled, pairs, spec, new_dates, prior_features),
        recent=frames.recent_frame(rolled, pairs, names, blocks, spec, new_dates, prior_recent),
        matrices=frames.asof_frame(rolled, pairs, names, blocks, spec, state.tail_returns),
        candidates=candidates,
        cross_block=frames.cross_block(candidates, names, spec, state),
        regime_matrices=frames.regime_frame(regime_acc, pairs, names, blocks, spec),
        state=state,
        new_rows=n - n0,
        catalog=correlation_catalog(spec, pairs.key_partners, series),
    )


def key_pair_features(
    panel: pl.DataFrame,
    spec: CorrelationSpec = CorrelationSpec(),  # noqa: B008 (frozen: a safe shared default)
) -> tuple[pl.DataFrame, list[FeatureDef]]:
    """The exported correlation features computed straight from a panel (a full build up to its
    last date): what the export takes from the cache, for truncation tests and diagnostics."""
    last = panel["date"].max()
    if not isinstance(last, dt.date):
        raise ValueError(f"the panel's date column must hold dates, got {last!r}")
    cache = build_correlation_cache(panel, spec, last)
    return cache.features, cache.catalog
