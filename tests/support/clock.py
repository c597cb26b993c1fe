"""A clock for tests that move time themselves (injected where the code takes a clock)."""

from __future__ import annotations


class ManualClock:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
