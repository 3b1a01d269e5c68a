"""The feature-importance chart: the top features' shares of a final model's total gain."""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping, Sequence
from typing import Any

TOP = 15


def importance_png(
    importance: Sequence[Mapping[str, Any]], title: str, top: int = TOP, dpi: int = 80
) -> bytes:
    """PNG bytes of horizontal bars, largest share on top (Agg backend, no pyplot state).
    ``importance``: a manifest's ``feature_importance`` rows (feature, gain, share), sorted.
    The asset metadata and MLflow both show the chart: drawn once (0.3 s) for the same rows."""
    rows = [(str(r["feature"]), float(r["share"])) for r in importance[:top]]
    if not rows:
        raise ValueError(f"{title}: no feature importance to draw")
    return _draw(tuple(rows), title, dpi)


@functools.lru_cache(maxsize=8)
def _draw(rows: tuple[tuple[str, float], ...], title: str, dpi: int) -> bytes:
    # matplotlib is imported on use: drawing is the only step that needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.32 * len(rows) + 1.2), facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = [name for name, _ in reversed(rows)]
    shares = [100 * share for _, share in reversed(rows)]
    ax.barh(names, shares, color="#1f77b4")
    for y, share in enumerate(shares):
        ax.annotate(
            f"{share:.1f}%",
            (share, y),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )
    ax.set_xlabel("share of the model's total gain (%)")
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()
