"""The circuit breaker's states, on an injected clock."""

from __future__ import annotations

import pytest

from edge.http.errors import Unavailable
from edge.upstream.breaker import BreakerState, CircuitBreaker
from tests.support.clock import ManualClock


def _state(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state  # read through a call: mypy would narrow the attribute across calls


def test_it_opens_after_failures_in_a_row_and_a_success_resets_the_count() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failures=3, open_s=2.0, clock=clock)
    breaker.failed()
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    breaker.failed()
    assert _state(breaker) is BreakerState.CLOSED
    assert breaker.troubled  # prefetch already holds back
    breaker.failed()
    assert _state(breaker) is BreakerState.OPEN
    with pytest.raises(Unavailable) as refused:
        breaker.admit()
    assert refused.value.code == "origin_circuit_open"
    assert refused.value.headers["Retry-After"] == "2"


def test_half_open_lets_one_probe_through_and_closes_on_its_success() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failures=1, open_s=2.0, clock=clock)
    breaker.failed()
    clock.advance(2.0)
    breaker.check()  # due for a probe: a request may go on to take it
    assert breaker.admit() is True  # this one is the probe
    assert _state(breaker) is BreakerState.HALF_OPEN
    with pytest.raises(Unavailable):
        breaker.admit()  # everyone else still fails fast
    with pytest.raises(Unavailable):
        breaker.check()
    breaker.succeeded(probe=True)
    assert _state(breaker) is BreakerState.CLOSED
    assert not breaker.troubled
    assert breaker.admit() is False


def test_a_failed_probe_opens_it_again_for_another_period() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failures=1, open_s=2.0, clock=clock)
    breaker.failed()
    clock.advance(2.5)
    assert breaker.admit() is True
    breaker.failed(probe=True)
    assert _state(breaker) is BreakerState.OPEN
    clock.advance(1.0)
    with pytest.raises(Unavailable):
        breaker.admit()
    clock.advance(1.0)
    assert breaker.admit() is True


def test_a_probe_that_ends_without_an_answer_frees_the_slot() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failures=1, open_s=1.0, clock=clock)
    breaker.failed()
    clock.advance(1.0)
    assert breaker.admit() is True
    breaker.released(probe=True)  # its reader left before the origin answered
    assert breaker.admit() is True
