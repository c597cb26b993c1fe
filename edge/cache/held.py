"""The part of :class:`edge.cache.store.SliceStore` that answers at once from what the tiers
hold now, without waiting: a plan whose slices memory holds (:meth:`HeldSlices.plan_held`),
or memory and disk files that can be read at once (:meth:`HeldSlices.plan_read_now`), and
the bytes of such a plan or of slices memory holds, counted by the tier they came from.

:class:`HeldSlices` holds no state of its own: ``SliceStore`` sets the tiers and the slice
size, and does the prefetch bookkeeping (``_note_use``).
"""

from __future__ import annotations

from collections.abc import Sequence

from edge.cache.disk import DiskTier
from edge.cache.fills import SliceKey, StoredObject
from edge.cache.memory import MemoryTier
from edge.cache.plan import ReadPlan, Tier
from edge.cache.slice_files import SliceData
from edge.http.ranges import ByteRange
from edge.telemetry import metrics

_MEMORY_BYTES = metrics.response_bytes(Tier.MEMORY.label)
_DISK_BYTES = metrics.response_bytes(Tier.DISK.label)
Cut = tuple[SliceKey, int, int]  # a slice, and the offsets of the bytes wanted in it


class HeldSlices:
    """See the module docstring."""

    memory: MemoryTier
    disk: DiskTier | None
    slice_bytes: int
    _prefetched: set[SliceKey]  # prefetched into memory, not read yet

    def _note_use(self, key: SliceKey) -> None:
        """Slice ``key`` is read: if it was prefetched, the prefetch was used."""
        raise NotImplementedError

    def plan_held(
        self, obj: StoredObject, ranges: Sequence[ByteRange], *, reading: bool = True
    ) -> ReadPlan | None:
        """The plan, made without waiting, when memory holds every slice ``ranges`` cover
        (each counted as a memory hit); else None, and nothing counted: then
        :meth:`plan_read_now` or :meth:`plan`."""
        key, memory = obj.key, self.memory
        indexes = self._indexes(ranges)
        for index in indexes:
            if (key, index) not in memory:
                return None
        held = self._pin(key, indexes, reading)
        return ReadPlan(obj, len(indexes), held, set(), keep_fetched=len(ranges) > 1)

    def plan_read_now(self, obj: StoredObject, ranges: Sequence[ByteRange]) -> ReadPlan | None:
        """For a ``GET`` whose slices are in memory or on disk in files that can be read at
        once (``DiskTier.read_now``: verified before, unchanged, in the page cache): the plan,
        those slices read and promoted to memory, as a hot disk hit needs no thread hop;
        else None, and nothing counted: then :meth:`plan`."""
        disk, key, memory = self.disk, obj.key, self.memory
        if disk is None:
            return None
        indexes = self._indexes(ranges)
        read: dict[int, tuple[bytes, SliceData]] = {}
        for index in indexes:
            if (key, index) not in memory:
                found = disk.read_now(key, index, self._slice_length(obj, index))
                if found is None:
                    return None
                read[index] = found
        # Memory's slices pinned first: promoting the others may evict them.
        held = self._pin(key, [index for index in indexes if index not in read], True)
        memory.count_misses(len(read))
        for index, (name, data) in read.items():
            disk.count_hit(name)
            memory.put((key, index), data)  # a disk hit is hot: promote it
            held[index] = data
        return ReadPlan(
            obj, len(indexes), held, set(), keep_fetched=len(ranges) > 1, from_disk=frozenset(read)
        )

    def _indexes(self, ranges: Sequence[ByteRange]) -> Sequence[int]:
        size = self.slice_bytes
        if len(ranges) == 1:
            return range(ranges[0].start // size, ranges[0].end // size + 1)
        wanted: set[int] = set()
        for r in ranges:
            wanted.update(range(r.start // size, r.end // size + 1))
        return sorted(wanted)

    def _pin(self, key: str, indexes: Sequence[int], reading: bool) -> dict[int, SliceData]:
        """The memory tier's slices ``indexes`` of ``key``, all held (checked just before, with
        no await since), each counted as a hit."""
        held: dict[int, SliceData] = {}
        for index in indexes:
            data = self.memory.get((key, index))
            assert data is not None, "a slice checked held went away without an await"
            held[index] = data
            if reading and self._prefetched:
                self._note_use((key, index))
        return held

    def views_held(self, cuts: Sequence[Cut]) -> list[memoryview] | None:
        """The bytes of ``cuts`` (slice key, first and end offset in it) if memory holds
        every slice now, each lookup counted as a hit; else None, and nothing counted."""
        memory = self.memory
        if len(cuts) > 1:
            for key, _, _ in cuts:
                if key not in memory:
                    return None
        views = []
        length = 0
        for key, lo, hi in cuts:
            data = memory.take(key)
            if data is None:  # (only a lone cut, unchecked above): nothing counted
                return None
            if self._prefetched:
                self._note_use(key)
            views.append(memoryview(data)[lo:hi])
            length += hi - lo
        _MEMORY_BYTES.inc(length)
        return views

    def held_views(self, plan: ReadPlan, wanted: ByteRange) -> list[memoryview]:
        """The bytes of ``wanted`` from a plan that holds all its slices (:meth:`plan_held`,
        :meth:`plan_read_now`), counted by the tier they came from."""
        size = self.slice_bytes
        views = []
        from_disk = 0
        for index in range(wanted.start // size, wanted.end // size + 1):
            base = index * size
            lo, hi = max(wanted.start - base, 0), wanted.end + 1 - base
            view = memoryview(plan.held[index])[lo:hi]
            views.append(view)
            if index in plan.from_disk:
                from_disk += len(view)
        _MEMORY_BYTES.inc(wanted.length - from_disk)
        if from_disk:
            _DISK_BYTES.inc(from_disk)
        return views

    def _slice_length(self, obj: StoredObject, index: int) -> int:
        return min(self.slice_bytes, obj.size - index * self.slice_bytes)
