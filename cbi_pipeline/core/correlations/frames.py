"""The frames of one partition, from the kernel's arrays: the exported key-pair features, every
pair's recent series and as-of value, the top-k candidates of each block by |corr with the
target|, the cross-block correlations between them and one matrix per regime.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl

from cbi_pipeline.core.blocks import BLOCKS
from cbi_pipeline.core.correlations.kernel import N, comoment_corr, rolling_corr
from cbi_pipeline.core.correlations.pairs import PairSet, feature_name
from cbi_pipeline.core.correlations.spec import CorrelationSpec
from cbi_pipeline.core.correlations.state import CorrelationState


def to_date(value: np.datetime64) -> dt.date:
    return dt.date.fromisoformat(str(value.astype("datetime64[D]")))


def _date_series(dates: np.ndarray) -> pl.Series:
    return pl.Series("date", dates.astype("datetime64[D]")).cast(pl.Date)


def feature_frame(
    rolled: np.ndarray,
    pairs: PairSet,
    spec: CorrelationSpec,
    new_dates: np.ndarray,
    prior: pl.DataFrame | None,
) -> pl.DataFrame:
    cols = {}
    for partner, row in zip(pairs.key_partners, pairs.key_pairs, strict=True):
        for wi, w in enumerate(spec.windows):
            name = feature_name(spec.target_symbol, partner, w)
            cols[name] = pl.Series(name, rolled[wi, row], nan_to_null=True)
    fresh = pl.DataFrame([_date_series(new_dates), *cols.values()])
    if prior is None:
        return fresh
    kept = prior.filter(pl.col("date") < to_date(new_dates[0])).select(fresh.columns)
    return pl.concat([kept, fresh], how="vertical")


def _pair_labels(
    pairs: PairSet, names: list[str], blocks: list[str]
) -> tuple[list[str], list[str], list[str], list[bool]]:
    key_rows = set(pairs.key_pairs)
    block, a, b, key = [], [], [], []
    for k, (i, j) in enumerate(pairs.index.tolist()):
        block.append(blocks[i] if blocks[i] == blocks[j] else f"{blocks[i]} x {blocks[j]}")
        a.append(names[i])
        b.append(names[j])
        key.append(k in key_rows)
    return block, a, b, key


def recent_frame(
    rolled: np.ndarray,
    pairs: PairSet,
    names: list[str],
    blocks: list[str],
    spec: CorrelationSpec,
    new_dates: np.ndarray,
    prior: pl.DataFrame | None,
) -> pl.DataFrame:
    """Every pair's rolling series over the last ``history_days`` rows, long format ordered by
    date, window and pair (so a later partition appends without sorting)."""
    keep = min(spec.history_days, new_dates.size)
    block, a, b, _key = _pair_labels(pairs, names, blocks)
    nw, npairs = len(spec.windows), len(a)
    values = rolled[:, :, rolled.shape[2] - keep :].transpose(2, 0, 1).reshape(-1)
    labels = pl.DataFrame({"block": block, "a": a, "b": b})
    fresh = pl.concat(
        [
            labels.select(pl.all().gather(np.tile(np.arange(npairs), nw * keep))),
            pl.DataFrame(
                [
                    pl.Series("date", np.repeat(new_dates[new_dates.size - keep :], nw * npairs)),
                    pl.Series(
                        "window", np.tile(np.repeat(np.array(spec.windows), npairs), keep)
                    ).cast(pl.Int32),
                    pl.Series("corr", values, nan_to_null=True),
                ]
            ).with_columns(pl.col("date").cast(pl.Date)),
        ],
        how="horizontal",
    ).select("date", "window", "block", "a", "b", "corr")
    if prior is None:
        return fresh
    first_new = fresh["date"][0]
    both = pl.concat([prior.filter(pl.col("date") < first_new), fresh])
    days = both["date"].unique(maintain_order=True)
    return both.filter(pl.col("date") >= days[max(days.len() - spec.history_days, 0)])


def asof_frame(
    rolled: np.ndarray,
    pairs: PairSet,
    names: list[str],
    blocks: list[str],
    spec: CorrelationSpec,
    tail: np.ndarray,
) -> pl.DataFrame:
    """Every pair's correlation at the as-of date with its count of pairwise-complete days."""
    block, a, b, key = _pair_labels(pairs, names, blocks)
    valid = np.isfinite(tail)
    frames = []
    for wi, w in enumerate(spec.windows):
        last = valid[:, -w:]
        n_obs = (last[pairs.index[:, 0]] & last[pairs.index[:, 1]]).sum(axis=1)
        frames.append(
            pl.DataFrame(
                {
                    "window": pl.Series([w] * len(a), dtype=pl.Int32),
                    "block": block,
                    "a": a,
                    "b": b,
                    "key": key,
                    "corr": pl.Series(rolled[wi, :, -1].astype(np.float64), nan_to_null=True),
                    "n_obs": n_obs.astype(np.int32),
                }
            )
        )
    return pl.concat(frames)


def candidates(
    target_acc: np.ndarray, names: list[str], blocks: list[str], spec: CorrelationSpec, t_idx: int
) -> pl.DataFrame:
    """Top-k series of each block by |corr with the target| over the history up to as_of."""
    corr = comoment_corr(target_acc, spec.min_obs(spec.max_window))
    rows = []
    for block in BLOCKS:
        members = [
            i for i, b in enumerate(blocks) if b == block and i != t_idx and np.isfinite(corr[i])
        ]
        members.sort(key=lambda i: (-abs(corr[i]), names[i]))
        for rank, i in enumerate(members[: spec.top_k], start=1):
            rows.append(
                {
                    "block": block,
                    "rank": rank,
                    "series": names[i],
                    "corr_with_target": float(corr[i]),
                    "n_obs": int(target_acc[i, N]),
                }
            )
    schema = {
        "block": pl.String,
        "rank": pl.Int32,
        "series": pl.String,
        "corr_with_target": pl.Float64,
        "n_obs": pl.Int32,
    }
    return pl.DataFrame(rows, schema=schema)


def cross_block(
    candidates: pl.DataFrame, names: list[str], spec: CorrelationSpec, state: CorrelationState
) -> pl.DataFrame:
    """As-of rolling correlations between top-k candidates of different blocks."""
    pos = {n: i for i, n in enumerate(names)}
    cand = list(zip(candidates["series"].to_list(), candidates["block"].to_list(), strict=True))
    rows = [
        (sa, ba, sb, bb) for k, (sa, ba) in enumerate(cand) for sb, bb in cand[k + 1 :] if ba != bb
    ]
    schema = {
        "window": pl.Int32,
        "block_a": pl.String,
        "a": pl.String,
        "block_b": pl.String,
        "b": pl.String,
        "corr": pl.Float64,
        "n_obs": pl.Int32,
    }
    if not rows:
        return pl.DataFrame(schema=schema)
    idx = np.array([(pos[sa], pos[sb]) for sa, _, sb, _ in rows], dtype=np.int64)
    tail = state.tail_returns
    width = tail.shape[1]
    origin = state.n_rows - width
    windows = list(spec.windows)
    at = rolling_corr(tail, idx, windows, [spec.min_obs(w) for w in windows], origin, width - 1)
    valid = np.isfinite(tail)
    out = []
    for wi, w in enumerate(windows):
        last = valid[:, -w:]
        n_obs = (last[idx[:, 0]] & last[idx[:, 1]]).sum(axis=1)
        for k, (sa, ba, sb, bb) in enumerate(rows):
            value = float(at[wi, k, 0])
            out.append((w, ba, sa, bb, sb, value if math.isfinite(value) else None, int(n_obs[k])))
    return pl.DataFrame(out, schema=schema, orient="row")


def regime_frame(
    acc: np.ndarray,
    pairs: PairSet,
    names: list[str],
    blocks: list[str],
    spec: CorrelationSpec,
) -> pl.DataFrame:
    """One within-block (and key-pair) matrix per regime with data up to as_of."""
    block, a, b, key = _pair_labels(pairs, names, blocks)
    frames = []
    for g, regime in enumerate(spec.regimes):
        counts = acc[g, :, N]
        if not counts.any():
            continue
        frames.append(
            pl.DataFrame(
                {
                    "regime": [regime.name] * len(a),
                    "block": block,
                    "a": a,
                    "b": b,
                    "key": key,
                    "corr": pl.Series(comoment_corr(acc[g], spec.regime_min_obs), nan_to_null=True),
                    "n_obs": counts.astype(np.int32),
                }
            )
        )
    schema = {
        "regime": pl.String,
        "block": pl.String,
        "a": pl.String,
        "b": pl.String,
        "key": pl.Boolean,
        "corr": pl.Float64,
        "n_obs": pl.Int32,
    }
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)
