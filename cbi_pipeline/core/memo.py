"""Values a process keeps for the next step that needs the same: the cycle runs its steps one
after another in one process, and every family or horizon of it reads the same export, features
and scores. Keyed by digests of what the value is computed from, so a changed input is a new
key; a few recent keys are kept (least recently used goes first), so memory stays bounded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class Kept(Generic[V]):
    """The values of the last ``size`` keys used, each computed once (thread-safe; the
    computation runs outside the lock, so two threads may compute the same key once each)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"Kept: size must be >= 1, got {size}")
        self.size = size
        self._values: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = compute()
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return value

    def values(self) -> list[V]:
        with self._lock:
            return list(self._values.values())

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
