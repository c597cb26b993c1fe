"""Single flight per slice, with read-while-write.

A missing slice is fetched once per worker, however many requests want it. The first request
starts a :class:`Run`: one origin range GET for a stretch of adjacent missing slices, running in
a task of its own, so the client that started it can leave without cancelling what others wait
for. Each slice of the run is a :class:`SliceFill`, a buffer of the slice's final length that
the run writes into in order. Every request, the one that started it included, reads a fill
while it is being written: it gets each chunk the moment it lands. Nobody polls, and nobody
waits for the whole slice. A reader either has the fill write to its client itself
(:meth:`SliceFill.push`: one pass over a crowd per chunk, no task woken per reader) or waits
on a future that the next write completes (:meth:`SliceFill.read`).

A slice is committed to the tiers only when it is complete and exactly as long as announced
(the origin stream guarantees the length). A failed run fails its remaining fills: every reader
gets the error. A run that nobody reads any more (its clients left) stops at the next slice
boundary; prefetch runs always finish.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol

from cachetools import TTLCache

from edge.http.errors import EncoreError, NotFound, OriginTimeout, OriginUnavailable, Unavailable
from edge.http.writer import MAX_WRITE_BYTES
from edge.telemetry import metrics
from edge.upstream.guard import OriginGuard

log = logging.getLogger(__name__)

MAX_MISSING_OBJECTS = 100_000
FIRST_BYTES = 1024  # what a pushed reader gets first when a large chunk lands (see write())

SliceKey = tuple[str, int]  # (immutable object key, slice index)


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An immutable origin object: its key never names other bytes."""

    key: str
    size: int


class FillKind(enum.Enum):
    DEMAND = "demand"  # a client asked for it
    PREFETCH = "prefetch"  # look-ahead, next-track hint or warm


class WaitOutcome(enum.Enum):
    """How a request's wait on a slice another request is fetching ended (a metric label)."""

    DONE = "done"  # it read its bytes as they arrived
    ERROR = "error"  # the fetch failed; the waiter got the error
    TIMEOUT = "timeout"  # no byte arrived within the wait bound
    FULL = "full"  # too many waiters on that slice already; refused with 503
    GONE = "gone"  # the waiter's client went away first


class ClientGone(Exception):
    """The client left while a fill was writing to it; nothing more can be sent."""


class Client(Protocol):
    """A reader's connection, which a fill can write to itself (``edge.http.writer``)."""

    def send_now(self, data: memoryview) -> bool:
        """Write ``data`` at once, synchronously; False when the client has gone."""
        ...

    @property
    def congested(self) -> bool:
        """Too much already waits to be sent: write no more without flow control."""
        ...


@dataclass(slots=True)
class Pushed:
    """How far a push got: at its stop when complete; short of it when the client went away,
    the fill failed (``error``) or the client got congested (the rest is the reader's to read,
    with flow control)."""

    position: int
    gone: bool = False
    error: EncoreError | None = None


class _Push:
    """A reader that the fill writes to itself (see :meth:`SliceFill.push`)."""

    __slots__ = (
        "client",
        "congested",
        "done",
        "expired",
        "fresh",
        "gone",
        "position",
        "stop",
        "timer",
    )

    def __init__(self, client: Client, start: int, stop: int) -> None:
        self.client = client
        self.position = start
        self.stop = stop
        self.fresh = True  # nothing written to it yet
        self.gone = False  # the client went away
        self.congested = False  # handed back to the reader for flow control
        self.expired = False  # no byte arrived within the wait bound
        self.done: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def advance(self, view: memoryview, filled: int) -> bool:
        """Write what has arrived and this reader still needs; True once the fill is to write
        no more to it (all written, the client gone or congested)."""
        if self.gone or self.congested:
            return True
        available = min(filled, self.stop)
        # One write at most MAX_WRITE_BYTES (a late joiner may find a whole slice waiting): a
        # connection never queues more than that at once; the rest is the reader's to write.
        end = min(available, self.position + MAX_WRITE_BYTES)
        if end > self.position:
            try:
                written = self.client.send_now(view[self.position : end])
            except Exception:  # one reader's failure must not fail the fill for the others
                log.exception("writing fetched bytes to a client failed")
                written = False
            if not written:
                self.gone = True
                return True
            self.position = end
            self.fresh = False
            if self.position < self.stop and (end < available or self.client.congested):
                self.congested = True
                return True
        return self.position >= self.stop

    def finish(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


class SliceFill:
    """One slice being fetched: its buffer, how much of it has arrived, and who waits."""

    __slots__ = (
        "_pushes",
        "_waiting",
        "buffer",
        "error",
        "filled",
        "index",
        "prefetched",
        "readers",
        "run",
        "used",
    )

    def __init__(self, run: Run, index: int, length: int, prefetched: bool) -> None:
        self.run = run
        self.index = index
        self.prefetched = prefetched  # fetched ahead of demand: kept even if nobody reads it
        # Allocated at its final length and never resized, so readers may hold views of it.
        self.buffer = bytearray(length)
        self.filled = 0
        self.error: EncoreError | None = None
        self.readers = 0
        self.used = False  # a request read this prefetched slice
        self._waiting: list[asyncio.Future[None]] = []
        self._pushes: list[_Push] = []

    @property
    def complete(self) -> bool:
        return self.filled == len(self.buffer)

    def write(self, data: memoryview) -> None:
        end = self.filled + len(data)
        self.buffer[self.filled : end] = data
        self.filled = end
        if self._pushes:
            view = memoryview(self.buffer)
            pushes, self._pushes = self._pushes, []
            if len(data) > FIRST_BYTES:
                # A crowd's time to first byte is this pass: every reader that has nothing yet
                # gets a few bytes first, so none waits behind the others' large writes.
                for push in pushes:
                    if push.fresh:
                        push.advance(view, min(end, push.position + FIRST_BYTES))
            for push in pushes:
                if push.advance(view, end):
                    push.finish()
                else:
                    self._pushes.append(push)
        self._wake()

    def fail(self, error: EncoreError) -> None:
        self.error = error
        pushes, self._pushes = self._pushes, []
        for push in pushes:
            push.finish()
        self._wake()

    async def push(self, client: Client, start: int, stop: int, wait_s: float) -> Pushed:
        """Have the fill itself write ``buffer[start:stop]`` to ``client``, each chunk the moment
        it lands. A crowd's readers then get the origin's first bytes in one pass over them,
        with no task to wake per reader and chunk: that pass is what a crowd's TTFB is made of.
        A congested client is handed back (``Pushed`` short of ``stop``, no error) so the
        reader goes on with flow control. The error is the fill's, or ``fill_wait_timeout``
        when the fill makes no progress for ``wait_s``."""
        push = _Push(client, start, stop)
        if not push.advance(memoryview(self.buffer), self.filled) and self.error is None:
            loop = asyncio.get_running_loop()
            push.done = loop.create_future()
            push.timer = loop.call_later(wait_s, self._check_progress, push, wait_s, self.filled)
            self._pushes.append(push)
            try:
                await push.done
            finally:
                push.timer.cancel()
                if push in self._pushes:  # the caller was cancelled
                    self._pushes.remove(push)
        pushed = Pushed(push.position, gone=push.gone)
        if push.position < push.stop and not push.gone and not push.congested:
            # One error object, many readers: no traceback piles up on it.
            pushed.error = _wait_timeout(wait_s) if push.expired else self.error
            assert pushed.error is not None  # the only other ways a push ends early
        return pushed

    def _check_progress(self, push: _Push, wait_s: float, seen: int) -> None:
        """The push's wait bound: it expires when the fill gets no byte for ``wait_s`` (bytes
        before the reader's own range count: they are the way to it)."""
        if push.done is None or push.done.done():
            return
        if self.filled == seen:
            push.expired = True
            self._pushes.remove(push)
            push.finish()
            return
        loop = asyncio.get_running_loop()
        push.timer = loop.call_later(wait_s, self._check_progress, push, wait_s, self.filled)

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)

    async def read(self, start: int, stop: int, wait_s: float) -> AsyncGenerator[memoryview, None]:
        """Yield ``buffer[start:stop]`` as it arrives; raise the fill's error if it fails."""
        view = memoryview(self.buffer)
        position = start
        while position < stop:
            if self.filled > position:
                end = min(self.filled, stop)
                yield view[position:end]
                position = end
                continue
            if self.error is not None:
                raise self.error.with_traceback(None)  # one error object, many readers
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            self._waiting.append(waiter)
            # A plain timer that fails the waiter: lighter than asyncio.timeout(), which
            # cancels and un-cancels the task, and every reader of a crowd waits here per chunk.
            timer = loop.call_later(wait_s, _wait_expired, waiter, wait_s)
            try:
                await waiter
            finally:
                timer.cancel()


def _wait_expired(waiter: asyncio.Future[None], wait_s: float) -> None:
    if not waiter.done():
        waiter.set_exception(_wait_timeout(wait_s))


def _wait_timeout(wait_s: float) -> OriginTimeout:
    return OriginTimeout(
        f"no origin bytes for this slice within {wait_s:g} s", code="fill_wait_timeout"
    )


class Run:
    """One origin GET in flight for the adjacent slices ``fills``."""

    __slots__ = ("fills", "interest", "obj", "task")

    def __init__(self, obj: StoredObject) -> None:
        self.obj = obj
        self.fills: list[SliceFill] = []
        self.interest = 0  # requests reading (or about to read) this run's slices
        self.task: asyncio.Task[None] | None = None

    def wants(self, fill: SliceFill) -> bool:
        """Should the fetch go on to fill ``fill``?"""
        return fill.prefetched or self.interest > 0


Commit = Callable[[SliceFill, bytes], None]


class FillBoard:
    """The slices this worker is fetching now, and the runs that fetch them."""

    def __init__(
        self,
        guard: OriginGuard,
        slice_bytes: int,
        commit: Commit,
        negative_ttl_s: float = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._guard = guard
        self._slice_bytes = slice_bytes
        self._commit = commit
        self._fills: dict[SliceKey, SliceFill] = {}
        self._runs: set[Run] = set()
        # Objects the origin said it does not have (a manifest naming a deleted object): asked
        # again only after the negative TTL.
        self._negative_ttl_s = negative_ttl_s
        self._missing: TTLCache[str, bool] = TTLCache(
            maxsize=MAX_MISSING_OBJECTS, ttl=max(negative_ttl_s, 0.001), timer=clock
        )

    def __len__(self) -> int:
        return len(self._fills)

    def get(self, key: SliceKey) -> SliceFill | None:
        return self._fills.get(key)

    def start(
        self, obj: StoredObject, first: int, last: int, kind: FillKind, ahead_from: int = -1
    ) -> Run:
        """Fetch slices ``first..last`` of ``obj``, none of which may be in flight already.
        Slices from ``ahead_from`` on are look-ahead riding on a demand fetch: prefetched."""
        if obj.key in self._missing:
            raise _object_not_found()
        run = Run(obj)
        size = self._slice_bytes
        for index in range(first, last + 1):
            prefetched = kind is FillKind.PREFETCH or 0 <= ahead_from <= index
            fill = SliceFill(run, index, min(size, obj.size - index * size), prefetched)
            run.fills.append(fill)
            self._fills[(obj.key, index)] = fill
        ahead = sum(fill.prefetched for fill in run.fills)
        if ahead:
            metrics.ORIGIN_FILLS.labels(FillKind.PREFETCH.value).inc(ahead)
        if len(run.fills) > ahead:
            metrics.ORIGIN_FILLS.labels(FillKind.DEMAND.value).inc(len(run.fills) - ahead)
        self._runs.add(run)
        run.task = self._launch(run)
        run.task.add_done_callback(lambda _: self._ended(run))
        return run

    def _launch(self, run: Run) -> asyncio.Task[None]:
        """The run's task, started eagerly: the origin request goes out within this call,
        before the requests queued behind the caller are handled."""
        loop = asyncio.get_running_loop()
        return asyncio.Task(self._fetch(run), loop=loop, eager_start=True)

    def _ended(self, run: Run) -> None:
        self._runs.discard(run)

    async def _fetch(self, run: Run) -> None:
        obj, fills = run.obj, run.fills
        first = fills[0].index
        start = first * self._slice_bytes
        end = start + sum(len(fill.buffer) for fill in fills) - 1
        done = 0  # fills completed
        error: EncoreError | None = None
        try:
            async with aclosing(self._guard.stream(obj.key, start, end, obj.size)) as chunks:
                async for chunk in chunks:
                    view, offset = memoryview(chunk), 0
                    while offset < len(view):
                        fill = fills[done]
                        take = min(len(view) - offset, len(fill.buffer) - fill.filled)
                        fill.write(view[offset : offset + take])
                        offset += take
                        if fill.complete:
                            self._finish(fill)
                            done += 1
                            if done < len(fills) and not run.wants(fills[done]):
                                return  # everyone who wanted the rest left: stop here
        except EncoreError as exc:
            error = exc
            if isinstance(exc, NotFound):
                # A manifest names an object the bucket lacks: the operator's to fix. Logged
                # once per negative TTL, as the object is then remembered as missing.
                log.warning("the origin lacks %s, which a manifest names", obj.key)
                if self._negative_ttl_s > 0:
                    self._missing[obj.key] = True
        except asyncio.CancelledError:
            error = Unavailable("the edge is shutting down", code="shutting_down", retry_after_s=1)
            raise
        except Exception:  # a bug must not leave readers waiting forever
            log.exception("slice fetch for %s failed", obj.key)
            error = OriginUnavailable("internal error fetching from the origin")
        finally:
            for fill in fills[done:]:
                self._fills.pop((obj.key, fill.index), None)
                fill.fail(
                    error or OriginUnavailable("the fetch was abandoned", code="fill_abandoned")
                )

    def _finish(self, fill: SliceFill) -> None:
        """Commit a complete slice, then take it off the board (no gap between the two)."""
        self._commit(fill, bytes(fill.buffer))
        self._fills.pop((fill.run.obj.key, fill.index), None)

    def known_missing(self, key: str) -> bool:
        return key in self._missing

    async def drain(self) -> None:
        """Cancel every run (at shutdown); their readers get 503 ``shutting_down``."""
        tasks = [run.task for run in self._runs if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _object_not_found() -> NotFound:
    """The client sees the code, never the bucket key (which is logged when first missed)."""
    return NotFound("this rendition's audio is missing at the origin", code="origin_not_found")
