"""Objects as fixed-size slices: memory tier, then disk tier, then one origin range GET per
missing run.

A response is served in two steps. :meth:`SliceStore.plan` looks every needed slice up once,
pins the ones memory holds and notes the ones on disk, so ``X-Cache`` and ``X-Cache-Tier``
can be sent truthfully before the body. :meth:`SliceStore.read` then streams a byte range:
pinned slices from memory, disk slices read (and verified) in a worker thread and promoted to
memory, and each run of adjacent missing slices through a single origin range GET whose bytes
go to the client as they arrive, while complete slices are committed to memory and, in the
background, to disk. A disk slice that fails verification is fetched from the origin instead.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from edge import metrics
from edge.disk_tier import DiskTier
from edge.memory_tier import MemoryTier
from edge.origin import Origin
from edge.ranges import ByteRange

MAX_PENDING_DISK_WRITES = 64  # beyond this, freshly fetched slices are not written to disk


class Tier(enum.IntEnum):
    """Where bytes came from; a higher value is slower."""

    MEMORY = 0
    DISK = 1
    ORIGIN = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An immutable origin object: its key never names other bytes."""

    key: str
    size: int


class ReadPlan:
    """The slices one response needs: those memory held when it was made (pinned) and those
    the disk tier had."""

    __slots__ = ("held", "keep_fetched", "needed", "obj", "on_disk")

    def __init__(
        self,
        obj: StoredObject,
        needed: int,
        held: dict[int, bytes],
        on_disk: set[int],
        keep_fetched: bool,
    ) -> None:
        self.obj = obj
        self.needed = needed
        self.held = held
        self.on_disk = on_disk
        # With several ranges, two may share a slice; a single range never revisits one.
        self.keep_fetched = keep_fetched

    @property
    def cache_status(self) -> str:
        covered = len(self.held) + len(self.on_disk)
        if covered >= self.needed:
            return "HIT"
        return "PARTIAL" if covered else "MISS"

    @property
    def slowest_tier(self) -> Tier:
        if len(self.held) + len(self.on_disk) < self.needed:
            return Tier.ORIGIN
        return Tier.DISK if self.on_disk else Tier.MEMORY


class SliceStore:
    def __init__(
        self, origin: Origin, memory: MemoryTier, slice_bytes: int, disk: DiskTier | None = None
    ) -> None:
        self.origin = origin
        self.memory = memory
        self.disk = disk
        self.slice_bytes = slice_bytes
        self._disk_writes: set[asyncio.Task[None]] = set()

    async def plan(self, obj: StoredObject, ranges: Sequence[ByteRange]) -> ReadPlan:
        indexes: set[int] = set()
        for r in ranges:
            indexes.update(range(r.start // self.slice_bytes, r.end // self.slice_bytes + 1))
        held: dict[int, bytes] = {}
        missing: list[int] = []
        for index in sorted(indexes):
            data = self.memory.get((obj.key, index))
            if data is not None:
                held[index] = data
            else:
                missing.append(index)
        on_disk = await self.disk.holding(obj.key, missing) if self.disk and missing else set()
        return ReadPlan(obj, len(indexes), held, on_disk, keep_fetched=len(ranges) > 1)

    def _slice_length(self, obj: StoredObject, index: int) -> int:
        return min(self.slice_bytes, obj.size - index * self.slice_bytes)

    async def _from_disk(self, plan: ReadPlan, index: int) -> bytes | None:
        assert self.disk is not None  # only slices the disk tier reported are planned there
        obj = plan.obj
        data = await self.disk.get(obj.key, index, self._slice_length(obj, index))
        if data is not None:
            self.memory.put((obj.key, index), data)  # a disk hit is hot: promote it
            if plan.keep_fetched:
                plan.held[index] = data
        return data

    async def read(self, plan: ReadPlan, wanted: ByteRange) -> AsyncIterator[memoryview]:
        """Yield exactly the bytes of ``wanted``, in order."""
        size = self.slice_bytes
        index, last = wanted.start // size, wanted.end // size
        while index <= last:
            data, tier = plan.held.get(index), Tier.MEMORY
            if data is None and index in plan.on_disk:
                data, tier = await self._from_disk(plan, index), Tier.DISK
            if data is not None:
                base = index * size
                chunk = memoryview(data)[max(wanted.start - base, 0) : wanted.end + 1 - base]
                metrics.RESPONSE_BYTES.labels(tier.label).inc(len(chunk))
                yield chunk
                index += 1
                continue
            run_end = index
            while (
                run_end < last and run_end + 1 not in plan.held and run_end + 1 not in plan.on_disk
            ):
                run_end += 1
            async for chunk in self._fill(plan, index, run_end, wanted):
                yield chunk
            index = run_end + 1

    def _store_on_disk(self, obj: StoredObject, index: int, data: bytes) -> None:
        if self.disk is None:
            return
        if len(self._disk_writes) >= MAX_PENDING_DISK_WRITES:
            metrics.CACHE_REFUSED.labels(Tier.DISK.label).inc()
            return
        # In the background: the client's next bytes do not wait for the disk.
        task = asyncio.create_task(self.disk.put(obj.key, index, data))
        self._disk_writes.add(task)
        task.add_done_callback(self._disk_writes.discard)

    async def drain(self) -> None:
        """Wait for background disk writes (at shutdown)."""
        if self._disk_writes:
            await asyncio.gather(*self._disk_writes, return_exceptions=True)

    async def _fill(
        self, plan: ReadPlan, first: int, last: int, wanted: ByteRange
    ) -> AsyncIterator[memoryview]:
        """One origin GET for slices ``first..last``: yield the wanted part, commit whole slices."""
        obj, size = plan.obj, self.slice_bytes
        position = first * size  # absolute offset of the next byte from the origin
        end = min((last + 1) * size, obj.size) - 1
        index = first
        pending = bytearray()
        origin_label = Tier.ORIGIN.label
        async for chunk in self.origin.stream_range(obj.key, position, end, obj.size):
            view = memoryview(chunk)
            lo = max(wanted.start - position, 0)
            hi = min(wanted.end + 1 - position, len(chunk))
            if lo < hi:
                metrics.RESPONSE_BYTES.labels(origin_label).inc(hi - lo)
                yield view[lo:hi]
            offset = 0
            while offset < len(chunk):
                slice_end = min((index + 1) * size, obj.size)
                take = min(len(chunk) - offset, slice_end - position - offset)
                pending += view[offset : offset + take]
                offset += take
                if position + offset == slice_end:
                    data = bytes(pending)
                    pending.clear()
                    self.memory.put((obj.key, index), data)
                    self._store_on_disk(obj, index, data)
                    if plan.keep_fetched:
                        plan.held[index] = data
                    index += 1
            position += len(chunk)
