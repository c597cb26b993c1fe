"""A circuit breaker for the origin: after repeated failures, stop asking and fail fast.

Closed: every request may go. After ``failures`` transient failures in a row it opens: origin
requests fail at once with 503 and ``Retry-After`` (cache hits do not need the origin and keep
being served). After ``open_s`` it is half-open: one request goes as a probe while the others
still fail fast; a success closes it, a failure opens it again. One breaker per worker process.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable

from edge.http.errors import Unavailable
from edge.telemetry import metrics


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class CircuitBreaker:
    def __init__(
        self, failures: int, open_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = failures
        self._open_s = open_s
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.failures_in_a_row = 0
        self._opened_at = 0.0
        self._probing = False
        metrics.BREAKER_STATE.set(self.state)

    @property
    def troubled(self) -> bool:
        """Anything but a clean record: prefetch, which can wait, stops here first."""
        return self.state is not BreakerState.CLOSED or self.failures_in_a_row > 0

    def check(self) -> None:
        """Raise :class:`Unavailable` if a request that needs the origin would be refused now
        (without taking the half-open probe, which the fetch itself takes)."""
        if self.state is BreakerState.CLOSED:
            return
        due = self.state is BreakerState.OPEN and self._clock() - self._opened_at >= self._open_s
        if due or (self.state is BreakerState.HALF_OPEN and not self._probing):
            return
        raise self._refusal()

    def _refusal(self) -> Unavailable:
        return Unavailable(
            "the origin is failing; this node is not asking it for a moment",
            code="origin_circuit_open",
            retry_after_s=self.retry_after_s(),
        )

    def admit(self) -> bool:
        """May a request go to the origin now? True for the one half-open probe too, which
        must then report back. Raises :class:`Unavailable` (503) when it may not."""
        if self.state is BreakerState.CLOSED:
            return False
        if self.state is BreakerState.OPEN and self._clock() - self._opened_at >= self._open_s:
            self._move(BreakerState.HALF_OPEN)
        if self.state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        raise self._refusal()

    def retry_after_s(self) -> int:
        left = self._open_s - (self._clock() - self._opened_at)
        return max(1, math.ceil(left))

    def succeeded(self, probe: bool = False) -> None:
        if probe:
            self._probing = False
        self.failures_in_a_row = 0
        if self.state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED)

    def failed(self, probe: bool = False) -> None:
        if probe:
            self._probing = False
        self.failures_in_a_row += 1
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED and self.failures_in_a_row >= self._threshold
        ):
            self._opened_at = self._clock()
            self._move(BreakerState.OPEN)

    def released(self, probe: bool) -> None:
        """The probe ended without an answer about the origin (its reader left, a 404)."""
        if probe:
            self._probing = False

    def _move(self, state: BreakerState) -> None:
        self.state = state
        metrics.BREAKER_STATE.set(state)
        metrics.BREAKER_TRANSITIONS.labels(state.label).inc()
