"""Leakage detection for a training export: alignment, truncation, a future-information screen
and a canary that proves the screen can see.

- alignment: ``target_{h}`` at row t equals ``price`` at row t+h (rows are the target's trading
  days), for every row; the last h rows carry no label.
- truncation: features recomputed from the raw data cut at t equal the stored features at t, on
  a sample of dates spread over the regimes.
- screen: a feature that explains the h-step future return far better than the past one, or
  that tracks the future price more closely than today's, or equals a future price, is named.
- lags: every feature (and its one-day change) against the target's one-day return (and its
  absolute surprise) k days ahead, for every k in 1..h, on all rows and rolling windows: a leak
  of part of the future (one day of a five-day return, a centred average) is named with its lag.
- canary: columns built from the future are planted into a copy; the screens must name them.

Modules: ``spec`` (``LeakageSpec``, ``DEFAULT_LEAKAGE``, ``MIN_OVERLAP``), ``alignment``,
``screen``, ``lags``, ``truncation``, ``canary``, ``report`` (``LeakageReport``) and ``arrays``
(shared numeric helpers).
"""
