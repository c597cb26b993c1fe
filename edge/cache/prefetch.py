"""Prefetch: fetching slices before anyone asks, on a budget of its own.

Four sources feed it: sequential look-ahead (a read of slices a..b of a rendition queues
b+1..b+k), the next-track hint (``X-Encore-Next``, and CMCD's ``nor``), CMCD's next-range hint
(``nrr``, ``edge.cache.player_hints``) and warming (``POST /admin/warm``). Jobs
wait in a bounded queue and ``cache.prefetch_concurrency`` workers run them, so prefetch never
holds more than that many origin fetches, and a demand fetch never waits behind it: demand
starts its own fetch, or joins the prefetch already fetching that slice and reads it as it
arrives. Under origin trouble (any recent failure, or the breaker not closed) prefetch is the
first thing to stop: new jobs are dropped and queued ones skipped.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable

from edge.cache.fills import StoredObject
from edge.cache.store import SliceStore
from edge.http.errors import Unavailable
from edge.telemetry import metrics

log = logging.getLogger(__name__)

QUEUE_JOBS = 1024

Job = Callable[[], Awaitable[object]]


class PrefetchReason(enum.Enum):
    SEQUENTIAL = "sequential"
    NEXT_TRACK = "next_track"
    NEXT_RANGE = "next_range"
    WARM = "warm"


class Prefetcher:
    def __init__(self, store: SliceStore, concurrency: int) -> None:
        self._store = store
        self._concurrency = concurrency
        self._queue: asyncio.Queue[Job] = asyncio.Queue(QUEUE_JOBS)
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._concurrency)]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    @property
    def slice_bytes(self) -> int:
        return self._store.slice_bytes

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def paused(self) -> bool:
        return self._store.guard.breaker.troubled

    async def idle(self) -> None:
        """Wait until every job queued so far, and any queued while waiting, has run (a drain
        hook: tests check what prefetch did, not what it did by some time)."""
        await self._queue.join()

    def submit(self, job: Job) -> bool:
        """Queue ``job`` if prefetch runs and there is room; never blocks."""
        if self.paused:
            metrics.PREFETCH_SKIPPED.labels("origin_trouble").inc()
            return False
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            metrics.PREFETCH_SKIPPED.labels("queue_full").inc()
            return False
        return True

    async def submit_and_wait(self, job: Job) -> None:
        """Queue ``job`` (waiting for room) and wait until a worker has run it; its error, if
        any, is raised here."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def tracked() -> None:
            try:
                await job()
            except Exception as exc:  # handed to the submitter
                if not done.done():
                    done.set_exception(exc)
            finally:
                if not done.done():
                    done.set_result(None)

        await self._queue.put(tracked)
        await done

    def after_read(self, obj: StoredObject, last_index: int, count: int) -> bool:
        """Sequential look-ahead: slices ``last_index+1 .. last_index+count`` of ``obj``.
        True if memory holds them all already (nothing was queued)."""
        first = last_index + 1
        slice_bytes = self._store.slice_bytes
        if count <= 0 or first * slice_bytes >= obj.size:
            return True
        memory = self._store.memory
        key = obj.key
        for index in range(first, min(first + count, -(-obj.size // slice_bytes))):
            if (key, index) not in memory:
                break
        else:
            return True  # the usual case on hot content: nothing to queue
        self.submit(lambda: self.fetch(obj, first, first + count - 1, PrefetchReason.SEQUENTIAL))
        return False

    def missing(self, key: str, indexes: range) -> list[int]:
        """The slices of ``indexes`` (of the object ``key``) that memory does not hold."""
        memory = self._store.memory
        return [index for index in indexes if (key, index) not in memory]

    async def fetch(self, obj: StoredObject, first: int, last: int, reason: PrefetchReason) -> int:
        """Fetch what is missing of slices ``first..last`` and wait for it; how many slices
        this fetched (the others were cached or already in flight). Unavailable
        (``origin_trouble``) while prefetch is paused: nothing was fetched, and a warm must
        not report the slices as cached."""
        if self.paused:
            metrics.PREFETCH_SKIPPED.labels("origin_trouble").inc()
            raise Unavailable(
                "the origin is in trouble: prefetch and warming wait until it recovers",
                code="origin_trouble",
                retry_after_s=1,
            )
        runs = await self._store.prefetch(obj, first, last)
        fetched = sum(len(run.fills) for run in runs)
        if fetched:
            metrics.PREFETCH_ISSUED.labels(reason.value).inc(fetched)
        tasks = [run.task for run in runs if run.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)  # the runs log their own failures
        return fetched

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await job()  # fetch() itself skips the slices while the origin is in trouble
            except asyncio.CancelledError:
                raise
            except Exception:  # a prefetch failure never reaches a client; keep working
                log.debug("prefetch job failed", exc_info=True)
            finally:
                self._queue.task_done()
