"""Objects as fixed-size slices: memory tier, then disk tier, then the origin, one fetch per
missing slice (:mod:`edge.cache.fills`).

A response is served in two steps. :meth:`SliceStore.plan` looks every needed slice up once,
pins the ones memory holds and notes the ones on disk, so ``X-Cache`` and ``X-Cache-Tier``
can be sent truthfully before the body. :meth:`SliceStore.read` then streams a byte range:
pinned slices from memory, disk slices read (and verified) in a worker thread and promoted to
memory, and missing slices from the fill that is fetching them, which this request starts
(one origin range GET for each run of adjacent missing slices) or joins. Complete slices are
committed to memory and, in the background, to disk. A disk slice that fails verification is
fetched from the origin instead.

:class:`SliceStore`'s bases hold the rest: answers made at once from what the tiers hold now,
without waiting (:class:`edge.cache.held.HeldSlices`: ``plan_held``, ``plan_read_now``,
``views_held``, ``held_views``), and the background disk writes, waited for at shutdown
(:class:`edge.cache.disk_writes.DiskWrites`).

Prefetched slices are tracked until first use, so ``encore_prefetch_used_total`` and
``encore_prefetch_wasted_total`` (evicted from memory unread) tell whether prefetch pays.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing, contextmanager

from edge.cache.disk import DiskTier
from edge.cache.disk_writes import DiskWrites
from edge.cache.fills import (
    Client,
    ClientGone,
    FillBoard,
    FillKind,
    Run,
    SliceFill,
    SliceKey,
    StoredObject,
    WaitOutcome,
)
from edge.cache.held import HeldSlices
from edge.cache.memory import MemoryTier
from edge.cache.plan import ReadPlan, Tier
from edge.cache.slice_files import SliceData
from edge.http.errors import EncoreError, Unavailable
from edge.http.ranges import ByteRange
from edge.telemetry import metrics
from edge.upstream.guard import OriginGuard

WAIT_MARGIN_S = 1.0  # a waiter outlasts the fetch's own deadline by this much

__all__ = ["ClientGone", "ReadPlan", "SliceStore", "StoredObject", "Tier"]


class _Wait:
    """How one read of a fill ended; GONE until it completes or fails."""

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome = WaitOutcome.GONE


class SliceStore(HeldSlices, DiskWrites):
    def __init__(
        self,
        guard: OriginGuard,
        memory_bytes: int,
        slice_bytes: int,
        *,
        policy: str,
        disk: DiskTier | None = None,
        max_waiters: int = 4096,
        negative_ttl_s: float = 0,
        look_ahead: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.guard = guard
        self.memory = MemoryTier(memory_bytes, policy, on_evict=self._evicted)
        self.disk = disk
        self.slice_bytes = slice_bytes
        self.max_waiters = max_waiters
        self.look_ahead = look_ahead  # slices a demand fetch brings along past its request
        self.fills = FillBoard(guard, slice_bytes, self._commit, negative_ttl_s, clock)
        self._wait_s = guard.deadline_s + WAIT_MARGIN_S
        self._disk_writes: set[asyncio.Task[None]] = set()
        self._prefetched: set[SliceKey] = set()  # prefetched into memory, not read yet

    async def plan(
        self, obj: StoredObject, ranges: Sequence[ByteRange], *, reading: bool = True
    ) -> ReadPlan:
        """Look up the slices ``ranges`` cover; ``reading`` False: only to answer a HEAD."""
        indexes: set[int] = set()
        for r in ranges:
            indexes.update(range(r.start // self.slice_bytes, r.end // self.slice_bytes + 1))
        held: dict[int, SliceData] = {}
        missing: list[int] = []
        for index in sorted(indexes):
            data = self.memory.get((obj.key, index))
            if data is not None:
                held[index] = data
                if reading and self._prefetched:
                    self._note_use((obj.key, index))
            else:
                missing.append(index)
        disk = self.disk
        on_disk = await disk.holding(obj.key, missing) if disk is not None and missing else set()
        return ReadPlan(obj, len(indexes), held, on_disk, keep_fetched=len(ranges) > 1)

    async def _from_disk(self, plan: ReadPlan, index: int) -> SliceData | None:
        assert self.disk is not None  # only slices the disk tier reported are planned there
        obj = plan.obj
        data = await self.disk.get(obj.key, index, self._slice_length(obj, index))
        if data is not None:
            self.memory.put((obj.key, index), data)  # a disk hit is hot: promote it
            if plan.keep_fetched:
                plan.held[index] = data
        return data

    async def read(
        self, plan: ReadPlan, wanted: ByteRange, client: Client | None = None
    ) -> AsyncGenerator[memoryview, None]:
        """Yield exactly the bytes of ``wanted``, in order. With a ``client``, the bytes of
        slices being fetched are written to it by their fill as they land, and not yielded,
        unless the client is congested: then they are yielded for the caller to write with
        flow control. The caller must have written every byte yielded before asking for more.
        :class:`ClientGone` when the client leaves while its fill writes to it."""
        size, key = self.slice_bytes, plan.obj.key
        index, last = wanted.start // size, wanted.end // size
        run: Run | None = None  # the run whose slices this request is reading
        try:
            while index <= last:
                base = index * size
                lo, hi = max(wanted.start - base, 0), wanted.end + 1 - base
                data, tier = plan.held.get(index), Tier.MEMORY
                if data is None and index in plan.on_disk:
                    data, tier = await self._from_disk(plan, index), Tier.DISK
                if data is None:
                    # Fetched since the plan was made (usually by this request's own run): the
                    # bytes count as from the origin, as X-Cache announced.
                    data, tier = self.memory.peek((key, index)), Tier.ORIGIN
                if data is not None:
                    chunk = memoryview(data)[lo:hi]
                    metrics.response_bytes(tier.label).inc(len(chunk))
                    yield chunk
                    index += 1
                    continue
                fill, joined = await self._fill_for(plan, index, last)
                if fill.run is not run:
                    if run is not None:
                        run.interest -= 1
                    run = fill.run
                    run.interest += 1
                async with aclosing(self._from_fill(fill, lo, hi, joined, client)) as chunks:
                    async for chunk in chunks:
                        yield chunk
                if plan.keep_fetched:
                    plan.following[index] = fill  # another range may need this slice again
                index += 1
        finally:
            if run is not None:
                run.interest -= 1

    async def _fill_for(self, plan: ReadPlan, index: int, last: int) -> tuple[SliceFill, bool]:
        """The fill of slice ``index``: one in flight (joined: True), or one started now."""
        key = (plan.obj.key, index)
        fill = plan.following.get(index) or self.fills.get(key)
        if fill is not None:
            return fill, True
        ahead = await self._look_ahead(plan.obj, last)
        fill = self.fills.get(key)  # started while we looked?
        if fill is not None:
            return fill, True
        return self._start_demand(plan, index, last, ahead), False

    def _start_demand(self, plan: ReadPlan, index: int, last: int, ahead: list[int]) -> SliceFill:
        """One GET for the run of missing slices from ``index``; when it reaches the end of the
        request, the look-ahead slices ride on it (no second request, no added latency)."""
        end = index
        while end < last and self._fetchable(plan, end + 1):
            end += 1
        ahead_from = -1
        if end == last and ahead:
            key = plan.obj.key
            for extra in ahead:
                if extra != end + 1 or (key, extra) in self.memory or self.fills.get((key, extra)):
                    break
                end = extra
            if end > last:
                ahead_from = last + 1
                metrics.PREFETCH_ISSUED.labels("sequential").inc(end - last)
        return self.fills.start(plan.obj, index, end, FillKind.DEMAND, ahead_from).fills[0]

    async def _look_ahead(self, obj: StoredObject, last: int) -> list[int]:
        """The slices after ``last`` a demand fetch may bring along: up to ``look_ahead``, in a
        row, held by no tier; none while the origin is in trouble."""
        if self.look_ahead <= 0 or self.guard.breaker.troubled:
            return []
        final = (obj.size - 1) // self.slice_bytes
        ahead: list[int] = []
        for index in range(last + 1, min(last + self.look_ahead, final) + 1):
            if not self._absent(obj.key, index):
                break
            ahead.append(index)
        if self.disk is not None and ahead:
            on_disk = await self.disk.holding(obj.key, ahead)
            ahead = ahead[: next((n for n, i in enumerate(ahead) if i in on_disk), len(ahead))]
        return ahead

    def _fetchable(self, plan: ReadPlan, index: int) -> bool:
        """Neither planned from a tier nor in flight nor committed since the plan."""
        key = (plan.obj.key, index)
        return (
            index not in plan.held
            and index not in plan.on_disk
            and self.fills.get(key) is None
            and key not in self.memory
        )

    async def _from_fill(
        self, fill: SliceFill, lo: int, hi: int, joined: bool, client: Client | None
    ) -> AsyncGenerator[memoryview, None]:
        """``fill[lo:hi]`` as it arrives (``joined``: someone else started the fill): written to
        ``client`` by the fill while the client keeps up, yielded for the rest."""
        stop = min(hi, len(fill.buffer))
        with self._reading(fill, joined) as wait:
            if client is not None and not client.congested:
                pushed = await fill.push(client, lo, stop, self._wait_s)
                metrics.response_bytes(Tier.ORIGIN.label).inc(pushed.position - lo)
                if pushed.gone:
                    raise ClientGone("the client went away while its bytes were being fetched")
                if pushed.error is not None:
                    raise pushed.error.with_traceback(None)  # one error object, many readers
                lo = pushed.position
            if lo < stop:
                async with aclosing(fill.read(lo, stop, self._wait_s)) as chunks:
                    async for chunk in chunks:
                        metrics.response_bytes(Tier.ORIGIN.label).inc(len(chunk))
                        yield chunk
            wait.outcome = WaitOutcome.DONE

    @contextmanager
    def _reading(self, fill: SliceFill, joined: bool) -> Iterator[_Wait]:
        """A request reads ``fill``: the bound on waiters, prefetch use, and the wait's outcome
        (counted for ``joined`` reads, which wait on a fetch another request started)."""
        if joined and fill.readers >= self.max_waiters:
            metrics.fill_waits(WaitOutcome.FULL.value).inc()
            raise Unavailable(
                "too many requests are waiting for this slice",
                code="too_many_waiters",
                retry_after_s=1,
            )
        if fill.prefetched and not fill.used:
            fill.used = True
            metrics.PREFETCH_USED.inc()
        wait = _Wait()
        fill.readers += 1
        try:
            yield wait
        except EncoreError as exc:
            timed_out = exc.code == "fill_wait_timeout"
            wait.outcome = WaitOutcome.TIMEOUT if timed_out else WaitOutcome.ERROR
            raise
        finally:
            fill.readers -= 1
            if joined:
                metrics.fill_waits(wait.outcome.value).inc()

    # --- prefetch ---------------------------------------------------------------------------

    async def prefetch(self, obj: StoredObject, first: int, last: int) -> list[Run]:
        """Start fetching the slices of ``first..last`` that no tier holds and nobody fetches."""
        last = min(last, (obj.size - 1) // self.slice_bytes)
        if self.fills.known_missing(obj.key):
            return []
        wanted = [i for i in range(first, last + 1) if self._absent(obj.key, i)]
        if self.disk is not None and wanted:
            on_disk = await self.disk.holding(obj.key, wanted)
            wanted = [i for i in wanted if i not in on_disk and self._absent(obj.key, i)]
        runs: list[Run] = []
        while wanted:
            end = 0
            while end + 1 < len(wanted) and wanted[end + 1] == wanted[end] + 1:
                end += 1
            runs.append(self.fills.start(obj, wanted[0], wanted[end], FillKind.PREFETCH))
            wanted = wanted[end + 1 :]
        return runs

    def _absent(self, key: str, index: int) -> bool:
        return (key, index) not in self.memory and self.fills.get((key, index)) is None

    def _note_use(self, key: SliceKey) -> None:
        if key in self._prefetched:
            self._prefetched.discard(key)
            metrics.PREFETCH_USED.inc()

    def _evicted(self, key: SliceKey) -> None:
        if key in self._prefetched:
            self._prefetched.discard(key)
            metrics.PREFETCH_WASTED.inc()

    # --- purge ------------------------------------------------------------------------------

    async def purge(self, objects: Mapping[str, int], prefixes: tuple[str, ...]) -> tuple[int, int]:
        """Drop the slices of ``objects`` (key -> size) and of any object whose key starts with
        one of ``prefixes`` from memory, and of ``objects`` from disk: (memory, disk) counts.
        A fetch in flight still completes for the requests reading it."""
        dropped = self.memory.drop_objects(lambda key: key in objects or key.startswith(prefixes))
        self._prefetched.difference_update(dropped)
        on_disk = await self.disk.drop_objects(objects) if self.disk is not None else 0
        return len(dropped), on_disk

    # --- commits ----------------------------------------------------------------------------

    def _commit(self, fill: SliceFill, data: bytes) -> None:
        obj = fill.run.obj
        key = (obj.key, fill.index)
        self.memory.put(key, data)
        if fill.prefetched and not fill.used and key in self.memory:
            self._prefetched.add(key)
        self._store_on_disk(obj, fill.index, data)
