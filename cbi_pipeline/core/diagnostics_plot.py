"""The diagnostics figure: missing data by block and year, and h-step returns by regime."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from cbi_pipeline.core.export import PRICE_COL
from cbi_pipeline.core.vocabulary import target_column


def diagnostics_png(payload: Mapping[str, Any], export: pl.DataFrame, dpi: int = 80) -> bytes:
    """PNG bytes of a two-panel figure (Agg backend, no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    horizon = payload["horizon"]
    fig = Figure(figsize=(12, 4.2))
    FigureCanvasAgg(fig)
    ax_miss, ax_ret = fig.subplots(1, 2, width_ratios=(3, 2))
    fig.subplots_adjust(left=0.11, right=0.98, bottom=0.22, top=0.92, wspace=0.25)

    by_year = payload["missing_data"]["by_year"]
    if by_year:
        blocks = sorted({r["block"] for r in by_year})
        years = sorted({r["year"] for r in by_year})
        grid = np.full((len(blocks), len(years)), np.nan)
        for r in by_year:
            grid[blocks.index(r["block"]), years.index(r["year"])] = r["missing_share"]
        im = ax_miss.imshow(grid, aspect="auto", cmap="Reds", vmin=0.0, vmax=1.0)
        ax_miss.set_yticks(range(len(blocks)), blocks)
        step = max(1, -(-len(years) // 8))
        ax_miss.set_xticks(range(0, len(years), step), [str(y) for y in years[::step]])
        fig.colorbar(im, ax=ax_miss, label="share missing")
    ax_miss.set_title("missing feature values by block and year")

    target = target_column(horizon)
    ret = export.select(
        "market_regime",
        (pl.col(target).cast(pl.Float64) / pl.col(PRICE_COL).cast(pl.Float64)).log().alias("r"),
    ).drop_nulls()
    regimes = [r["regime"] for r in payload["regime_statistics"] if r["regime"] != "all"]
    data = [ret.filter(pl.col("market_regime") == r)["r"].to_numpy() for r in regimes]
    keep = [(r, d) for r, d in zip(regimes, data, strict=True) if d.size]
    if keep:
        ax_ret.boxplot([d for _, d in keep], showfliers=False)
        ax_ret.set_xticks(range(1, len(keep) + 1), [r for r, _ in keep], rotation=30, ha="right")
    ax_ret.axhline(0.0, color="grey", linewidth=0.8)
    ax_ret.set_title(f"{payload['horizon_days']}-day log returns by regime ({horizon})")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
