"""How the edge asks the origin: deadlines, bounded jittered retries, and the circuit breaker.

Only idempotent GETs pass through here, so a transient failure (timeout, unreachable, 5xx, a
body cut short) is simply asked again, after a backoff drawn uniformly from
``[0, retry_backoff_s * 2**n]`` (full jitter, so a crowd of edges does not retry in step). A
stream that fails mid-body resumes from the first byte it does not have yet: the object is
immutable and every piece is checked against its ``Content-Range``, so the bytes join exactly.

The deadline bounds the time without progress: until the first byte, retries and backoff
included, and then between bytes. Every failure counts against the breaker; while it is open
nothing is asked and :class:`~edge.http.errors.Unavailable` (503) is raised at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import TypeVar

from edge.http.errors import EncoreError, OriginTimeout
from edge.telemetry import metrics
from edge.upstream.breaker import CircuitBreaker
from edge.upstream.bucket import Origin

T = TypeVar("T")

MAX_BACKOFF_S = 2.0


class OriginGuard:
    def __init__(
        self,
        origin: Origin,
        breaker: CircuitBreaker,
        *,
        retries: int,
        backoff_s: float,
        deadline_s: float,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.origin = origin
        self.breaker = breaker
        self._retries = retries
        self._backoff_s = backoff_s
        self.deadline_s = deadline_s
        self._jitter = jitter

    async def get_small(self, key: str, limit: int) -> bytes:
        """A whole small object (a manifest), with retries."""
        return await self._call(lambda: self.origin.get_small(key, limit))

    async def _call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        tries = 0
        try:
            async with asyncio.timeout(self.deadline_s):
                while True:
                    probe = self.breaker.admit()
                    try:
                        result = await attempt()
                    except EncoreError as exc:
                        await self._after_failure(exc, probe, tries)
                        tries += 1
                        continue
                    except BaseException:
                        self.breaker.released(probe)
                        raise
                    self.breaker.succeeded(probe)
                    return result
        except TimeoutError:
            raise self._deadline_passed() from None

    async def stream(
        self, key: str, start: int, end: int, total: int
    ) -> AsyncGenerator[bytes, None]:
        """Bytes ``start..end`` of ``key`` (``total`` long), exactly, resuming after failures."""
        position, tries = start, 0
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.deadline_s) as deadline:
                while position <= end:
                    probe, answered = self.breaker.admit(), False
                    try:
                        async with aclosing(
                            self.origin.stream_range(key, position, end, total)
                        ) as chunks:
                            async for chunk in chunks:
                                if not answered:
                                    self.breaker.succeeded(probe)  # the origin answers
                                    probe, answered = False, True
                                position += len(chunk)
                                deadline.reschedule(loop.time() + self.deadline_s)
                                yield chunk
                    except EncoreError as exc:
                        await self._after_failure(exc, probe, tries)
                        tries += 1
                    except BaseException:
                        self.breaker.released(probe)
                        raise
        except TimeoutError:
            raise self._deadline_passed() from None

    async def _after_failure(self, exc: EncoreError, probe: bool, tries: int) -> None:
        """Re-raise ``exc`` unless another try is due; then wait out a jittered backoff."""
        if not exc.retryable:
            self.breaker.succeeded(probe)  # the origin answered (a 404, a mismatch): it is up
            raise exc
        self.breaker.failed(probe)
        if tries >= self._retries:
            raise exc
        metrics.ORIGIN_RETRIES.labels(exc.code).inc()
        ceiling = min(self._backoff_s * 2**tries, MAX_BACKOFF_S)
        await asyncio.sleep(self._jitter(0, ceiling))

    def _deadline_passed(self) -> OriginTimeout:
        self.breaker.failed()
        return OriginTimeout(f"the origin made no progress within {self.deadline_s:g} s")
