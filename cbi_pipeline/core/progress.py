"""Progress lines for long work, passed on in batches where they come fast.

A walk-forward over stored or closed-form folds reports a line per fold, hundreds in a second;
in a Dagster run every message is an event written to the run's event log (a few ms each), so
one cycle spent seconds storing them. ``LineBatch`` gathers the lines and passes them on as one
message (lines joined by newlines) once ``every`` seconds have passed since the last one, and at
the end: fast work reports once, long work still reports as it goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

Progress = Callable[[str], None]


class LineBatch:
    """Use as a context manager: ``add`` lines; they reach ``progress`` at most every ``every``
    seconds and when the block ends (also when it raises, so the lines before a failure show)."""

    def __init__(self, progress: Progress | None, every: float = 2.0) -> None:
        self.progress = progress
        self.every = every
        self.lines: list[str] = []
        self.since = time.perf_counter()

    def add(self, line: str) -> None:
        if self.progress is None:
            return
        self.lines.append(line)
        if time.perf_counter() - self.since >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.progress is not None and self.lines:
            self.progress("\n".join(self.lines))
        self.lines = []
        self.since = time.perf_counter()

    def __enter__(self) -> LineBatch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.flush()
