"""Forecast horizons: label -> trading days ahead."""

from __future__ import annotations

HORIZONS: dict[str, int] = {"1w": 5, "1m": 21, "3m": 63, "6m": 126, "12m": 252}
HORIZON_LABELS: tuple[str, ...] = tuple(HORIZONS)


def horizon_days(label: str) -> int:
    """Trading days ahead for a horizon label such as ``"1m"``."""
    try:
        return HORIZONS[label]
    except KeyError:
        raise ValueError(
            f"unknown horizon {label!r}: expected one of {', '.join(HORIZON_LABELS)}"
        ) from None


def target_column(label: str) -> str:
    """Name of the export's label column for a horizon, e.g. ``target_1m``."""
    horizon_days(label)
    return f"target_{label}"
