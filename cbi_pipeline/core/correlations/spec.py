"""What the correlation cache computes (``CorrelationSpec``) and the series it correlates
(``CorrSeries``, each with its return transform).

"Returns" are daily log returns for market closes (``LOG_RETURN``) and daily first differences for
signals and spreads, which can be zero or negative (``DIFFERENCE``). Missing values are skipped
pairwise: a day counts for a pair when both series have a finite return that day, and a window
with fewer than ``CorrelationSpec.min_obs(window)`` such days, or in which either series is
constant, gives NaN in the arrays (null in the stored frames).

No numba here: building a spec, or reading a stored partition, does not import it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from cbi_pipeline.core.regimes import DEFAULT_REGIMES, Regime, validate_regimes

# A window whose centred sum of squares is at most this share of its raw sum of squares is
# treated as constant (correlation undefined): rounding alone leaves ~1e-14 there.
DEGENERATE_TOL = 1e-10
LOG_RETURN = "log_return"
DIFFERENCE = "difference"


@dataclass(frozen=True)
class CorrelationSpec:
    """What the correlation cache computes.

    target_symbol: the forecast target; key pairs and top-k candidates are taken against it.
    windows: rolling windows in trading days (rows of the target's calendar).
    min_obs_share: a window needs at least ``max(3, ceil(share * window))`` pairwise-complete days.
    key_partners: series paired with the target in every partition and exported as features;
        those absent from the data are skipped (the real 1995-2010 file has no palm oil).
    extra_key_partners: further key partners; each must exist in the data.
    top_k: candidates per block for the cross-block correlations.
    regimes: the regime calendar for the regime-specific matrices.
    regime_min_obs: pairwise-complete days a regime needs before its correlation is reported.
    history_days: trailing rows of every within-block series kept in each partition.
    block_overrides: series -> block, as in ``FeatureSpec``.
    """

    target_symbol: str = "ZL"
    windows: tuple[int, ...] = (90, 180, 365)
    min_obs_share: float = 2.0 / 3.0
    key_partners: tuple[str, ...] = ("VIX", "DXY", "FCPO", "spread_crush_margin")
    extra_key_partners: tuple[str, ...] = ()
    top_k: int = 3
    regimes: tuple[Regime, ...] = DEFAULT_REGIMES
    regime_min_obs: int = 60
    history_days: int = 252
    block_overrides: Mapping[str, str] = field(default_factory=dict)

    def min_obs(self, window: int) -> int:
        return max(3, math.ceil(round(self.min_obs_share * window, 9)))

    @property
    def max_window(self) -> int:
        return max(self.windows)

    @property
    def tail_rows(self) -> int:
        """Rows of returns a state keeps: the chunks of a later row reach back < 2 windows."""
        return 2 * self.max_window

    def validate(self) -> CorrelationSpec:
        if not self.windows or any(w < 3 for w in self.windows):
            raise ValueError(f"correlation windows must be >= 3 days, got {self.windows}")
        if len(set(self.windows)) != len(self.windows):
            raise ValueError(f"correlation windows must be distinct, got {self.windows}")
        if not 0.0 < self.min_obs_share <= 1.0:
            raise ValueError(f"min_obs_share must be in (0, 1], got {self.min_obs_share}")
        if self.top_k < 0 or self.history_days < 1 or self.regime_min_obs < 3:
            raise ValueError(
                f"need top_k >= 0, history_days >= 1 and regime_min_obs >= 3, got {self.top_k}, "
                f"{self.history_days}, {self.regime_min_obs}"
            )
        validate_regimes(self.regimes)
        return self


@dataclass(frozen=True)
class CorrSeries:
    """One series whose returns are correlated: its name, block, source and return transform."""

    name: str
    block: str
    source: str
    transform: str
