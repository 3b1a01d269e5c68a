"""The canary: columns built from the future are planted into a copy; the screen must name them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from cbi_pipeline.core.export import PRICE_COL
from cbi_pipeline.core.leakage.arrays import float_column
from cbi_pipeline.core.leakage.lags import lag_screen
from cbi_pipeline.core.leakage.screen import screen_features
from cbi_pipeline.core.leakage.spec import DEFAULT_LEAKAGE, MIN_OVERLAP, LeakageSpec
from cbi_pipeline.core.vocabulary import target_column

CANARY_PREFIX = "__canary_"


@dataclass(frozen=True)
class CanaryResult:
    planted: tuple[str, ...]
    expected: tuple[str, ...]
    caught: tuple[str, ...]
    note: str

    @property
    def passed(self) -> bool:
        return bool(self.expected) and set(self.expected) <= set(self.caught)


def plant_canaries(
    export: pl.DataFrame, horizon: str, spec: LeakageSpec = DEFAULT_LEAKAGE
) -> tuple[pl.DataFrame, dict[str, str]]:
    """A copy of the export with features built from the future, and what each one is.

    - ``__canary_future_price``: target_h * (1 + N(0, canary_noise)), the label with small noise;
    - ``__canary_future_return``: the future h-step log return plus noise of
      ``canary_return_noise`` of its standard deviation;
    - ``__canary_next_day_return``: the 1-day forward log return, log(p[t+1] / p[t]);
    - ``__canary_two_day_return``: the 2-day forward log return plus noise of one standard
      deviation of the daily return;
    - ``__canary_centred_average``: the price's 11-day moving average centred on t (five days
      of the future in it).
    """
    rng = np.random.default_rng(spec.seed)
    target = float_column(export, target_column(horizon))
    price = float_column(export, PRICE_COL)
    with np.errstate(invalid="ignore", divide="ignore"):
        ret = np.log(target) - np.log(price)
    sd = float(np.nanstd(ret)) if np.isfinite(ret).any() else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        logp = np.log(price)
    n = price.size
    forward = [np.full(n, np.nan) for _ in range(3)]
    for k in (1, 2):
        if n > k:
            forward[k][: n - k] = logp[k:] - logp[: n - k]
    daily = np.diff(logp) if n > 1 else np.array([])
    daily_sd = float(np.nanstd(daily)) if np.isfinite(daily).any() else 1.0
    centred = pl.Series(price).rolling_mean(11, center=True).to_numpy().astype(np.float64)
    planted = {
        f"{CANARY_PREFIX}future_price": (
            target * (1.0 + rng.normal(0.0, spec.canary_noise, target.size)),
            f"{target_column(horizon)} times (1 + N(0, {spec.canary_noise:g}))",
        ),
        f"{CANARY_PREFIX}future_return": (
            ret + rng.normal(0.0, spec.canary_return_noise * sd if sd > 0 else 1.0, ret.size),
            f"future log return plus noise of {spec.canary_return_noise:g} of its std",
        ),
        f"{CANARY_PREFIX}next_day_return": (forward[1], "the 1-day forward log return"),
        f"{CANARY_PREFIX}two_day_return": (
            forward[2] + rng.normal(0.0, daily_sd if daily_sd > 0 else 1.0, n),
            "the 2-day forward log return plus noise of one daily-return std",
        ),
        f"{CANARY_PREFIX}centred_average": (
            centred,
            "the price's 11-day moving average centred on the row (5 days ahead in it)",
        ),
    }
    clash = [n for n in planted if n in export.columns]
    if clash:
        raise ValueError(f"export already has column(s) {clash}; the canary needs those names")
    frame = export.with_columns(
        [pl.Series(n, v, dtype=pl.Float64).fill_nan(None) for n, (v, _) in planted.items()]
    )
    return frame, {n: what for n, (_, what) in planted.items()}


def run_canary(
    export: pl.DataFrame, horizon: str, spec: LeakageSpec = DEFAULT_LEAKAGE
) -> CanaryResult:
    """Plant the canaries into a copy and screen them (both screens); every applicable one must
    be caught."""
    frame, planted = plant_canaries(export, horizon, spec)
    result = screen_features(frame, horizon, list(planted), spec)
    # against the |z| limit of a screen of every column of the export and the canaries (no
    # laxer than the real screen, which tests the features only)
    lags = lag_screen(frame, horizon, list(planted), spec, limit_features=frame.width)
    named = {s.feature for s in result.suspects} | set(lags.names)
    caught = tuple(n for n in planted if n in named)
    expected = [f"{CANARY_PREFIX}future_price"]
    note = "the future-price canary must be caught by the near-identity rule"
    if result.labelled < MIN_OVERLAP:
        note = (
            f"only {result.labelled} labelled rows: the screen needs {MIN_OVERLAP} to measure "
            "anything, so it cannot catch the canary (or a leak)"
        )
    if result.correlation_rule_run:
        expected.append(f"{CANARY_PREFIX}future_return")
        note += "; the future-return canary by the future-return correlation rule"
    else:
        note += (
            "; the future-return canary is not expected to be caught because the correlation "
            f"rule did not run ({result.correlation_rule_note})"
        )
    lag_canaries = [
        f"{CANARY_PREFIX}{n}" for n in ("next_day_return", "two_day_return", "centred_average")
    ]
    if export.height >= spec.lag_canary_rows:
        expected += lag_canaries
        note += "; the 1-day, 2-day and centred-average canaries by the lag screen"
    else:
        note += (
            f"; the lag canaries are not expected to be caught: {export.height} rows, fewer "
            f"than lag_canary_rows ({spec.lag_canary_rows})"
        )
    return CanaryResult(tuple(planted), tuple(expected), caught, note)
