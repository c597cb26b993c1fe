"""Objects as fixed-size slices: memory tier first, then one origin range GET per missing run.

A response is served in two steps. :meth:`SliceStore.plan` looks every needed slice up once and
pins the ones the cache holds, so ``X-Cache`` and ``X-Cache-Tier`` can be sent truthfully before
the body. :meth:`SliceStore.read` then streams a byte range: pinned slices from memory, and each
run of adjacent missing slices through a single origin range GET whose bytes go to the client as
they arrive, while complete slices are committed to the cache.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from edge import metrics
from edge.memory_tier import MemoryTier
from edge.origin import Origin
from edge.ranges import ByteRange


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
    """The slices one response needs, and those the cache held when it was made (pinned)."""

    __slots__ = ("held", "keep_fetched", "needed", "obj")

    def __init__(
        self, obj: StoredObject, needed: int, held: dict[int, bytes], keep_fetched: bool
    ) -> None:
        self.obj = obj
        self.needed = needed
        self.held = held
        # With several ranges, two may share a slice; a single range never revisits one.
        self.keep_fetched = keep_fetched

    @property
    def cache_status(self) -> str:
        if len(self.held) >= self.needed:
            return "HIT"
        return "PARTIAL" if self.held else "MISS"

    @property
    def slowest_tier(self) -> Tier:
        return Tier.MEMORY if len(self.held) >= self.needed else Tier.ORIGIN


class SliceStore:
    def __init__(self, origin: Origin, memory: MemoryTier, slice_bytes: int) -> None:
        self.origin = origin
        self.memory = memory
        self.slice_bytes = slice_bytes

    def plan(self, obj: StoredObject, ranges: Sequence[ByteRange]) -> ReadPlan:
        indexes: set[int] = set()
        for r in ranges:
            indexes.update(range(r.start // self.slice_bytes, r.end // self.slice_bytes + 1))
        held: dict[int, bytes] = {}
        for index in indexes:
            data = self.memory.get((obj.key, index))
            if data is not None:
                held[index] = data
        return ReadPlan(obj, len(indexes), held, keep_fetched=len(ranges) > 1)

    async def read(self, plan: ReadPlan, wanted: ByteRange) -> AsyncIterator[memoryview]:
        """Yield exactly the bytes of ``wanted``, in order."""
        size = self.slice_bytes
        index, last = wanted.start // size, wanted.end // size
        while index <= last:
            data = plan.held.get(index)
            if data is not None:
                base = index * size
                chunk = memoryview(data)[max(wanted.start - base, 0) : wanted.end + 1 - base]
                metrics.RESPONSE_BYTES.labels(Tier.MEMORY.label).inc(len(chunk))
                yield chunk
                index += 1
                continue
            run_end = index
            while run_end < last and run_end + 1 not in plan.held:
                run_end += 1
            async for chunk in self._fill(plan, index, run_end, wanted):
                yield chunk
            index = run_end + 1

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
                    if plan.keep_fetched:
                        plan.held[index] = data
                    index += 1
            position += len(chunk)
