"""The leakage report: alignment, truncation, screen and canary results together."""

from __future__ import annotations

from dataclasses import dataclass

from cbi_pipeline.core.leakage.alignment import AlignmentResult
from cbi_pipeline.core.leakage.canary import CanaryResult
from cbi_pipeline.core.leakage.lags import LagScreen
from cbi_pipeline.core.leakage.screen import ScreenResult
from cbi_pipeline.core.leakage.truncation import TruncationResult


@dataclass(frozen=True)
class LeakageReport:
    alignment: AlignmentResult
    truncation: TruncationResult
    screen: ScreenResult
    lags: LagScreen
    canary: CanaryResult

    @property
    def leak_passed(self) -> bool:
        return (
            not self.screen.suspects
            and not self.lags.flagged
            and not self.truncation.failed
            and self.canary.passed
        )
