"""The thresholds every leakage check shares: ``LeakageSpec`` and its defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_OVERLAP = 30


@dataclass(frozen=True)
class LeakageSpec:
    """Thresholds of the leakage screen, the truncation sample and the canary.

    Calibrated on honest features: the default ones on the sample market (230) and the real
    1995-2010 file (140), and on random-walk markets of 320-1500 rows. A feature's chance
    correlation with the future return grows as its number of non-overlapping h-step windows w
    (rows where it and the label exist, divided by h) shrinks: honest maxima were 0.97 at
    w <= 5, 0.73 at w in (8, 12], 0.69 at (12, 16], 0.67 at (20, 30], 0.50 on the real file at
    12m (w ~ 15) and 0.15-0.49 on the sample. A future target plus 0.5% noise reaches 0.85-0.96.
    Measured reach on both files: target_h * (1 + noise) is caught at every horizon for noise up
    to 2% (5% from 1m, 10% from 3m on the sample); the future log return plus noise of 0.5 of
    its std is caught at every horizon except 12m on the real file, plus 1 std at none.

    future_corr, future_z: a feature is suspect when, for x = the feature, its h-step change or
        its residual on today's price, |corr(x, future h-step log return)| >= max(future_corr,
        future_z / sqrt(w)) ...
    future_margin: ... and exceeds |corr(x, past h-step log return)| by at least this much.
    min_windows: that rule applies to a feature only when w >= min_windows.
    identity_corr: |corr(feature, target_h)| (or with the future log return) at or above which a
        feature is a near-copy of the label ...
    identity_ratio: ... when 1 - |corr(f, target)| < identity_ratio * (1 - |corr(f, price)|),
        i.e. it tracks the future price much more closely than today's price.
    equal_share: share of rows on which a feature equals the price k rows ahead (1 <= k <= h)
        that names it as a shifted future price.
    truncation_dates: how many dates the truncation test recomputes features for.
    canary_noise: relative noise of the planted future-price canary (0.005 = 0.5%).
    canary_return_noise: noise of the future-return canary, in standard deviations of the return.
    lag_alpha: family-wise false-alarm rate of the lag screen (``lags``): its |z| limit is the
        Bonferroni bound for this over every test it makes.
    lag_min_corr: ... and the |correlation| it must reach (0.1: explaining 1% of the variance of a
        one-day return, more than an honest feature of a futures price does; the sample's planted
        palm-soy mean reversion, a real lead of ZL, reaches 0.077 at z 5.6 on 7,000 rows). It is
        the screen's detection limit.
    lag_window_rows: rows of the lag screen's rolling windows (756 = three years), besides the
        whole history.
    lag_canary_rows: the lag canaries (a 1-day and a noisy 2-day forward return, a centred moving
        average) are expected to be caught from this many rows on.
    max_gap_days: the export's staleness limit: the alignment check expects a null label where
        the label's window spans a hole in the dates longer than this (``labels_spanning_gaps``).
    seed: seed of the canary noise and of nothing else.
    rel_tol: relative tolerance of value comparisons (alignment, truncation, equality).
    """

    future_corr: float = 0.75
    future_z: float = 3.5
    future_margin: float = 0.3
    min_windows: float = 14.0
    identity_corr: float = 0.98
    identity_ratio: float = 0.5
    equal_share: float = 0.9
    truncation_dates: int = 8
    canary_noise: float = 0.005
    canary_return_noise: float = 0.25
    lag_alpha: float = 0.01
    lag_min_corr: float = 0.1
    lag_window_rows: int = 756
    lag_canary_rows: int = 500
    max_gap_days: int = 7
    seed: int = 20240101
    rel_tol: float = 1e-9

    def future_threshold(self, windows: float) -> float:
        """The |corr| with the future return a feature with ``windows`` windows must reach."""
        return max(self.future_corr, self.future_z / math.sqrt(max(windows, 1e-9)))


DEFAULT_LEAKAGE = LeakageSpec()
