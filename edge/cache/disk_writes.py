"""The background disk writes of :class:`edge.cache.store.SliceStore`: each slice fetched
from the origin is written to the disk tier by a task of its own, at most
:data:`MAX_PENDING_DISK_WRITES` at a time, and at shutdown (:meth:`DiskWrites.drain`) those
in flight are given time to land.

:class:`DiskWrites` holds no state of its own: ``SliceStore`` sets the disk tier, the fill
board and the set of writes in flight.
"""

from __future__ import annotations

import asyncio
import logging

from edge.cache.disk import DiskTier
from edge.cache.fills import FillBoard, StoredObject
from edge.cache.plan import Tier
from edge.telemetry import metrics

log = logging.getLogger("edge.cache.store")

MAX_PENDING_DISK_WRITES = 64  # beyond this, freshly fetched slices are not written to disk


class DiskWrites:
    """See the module docstring."""

    disk: DiskTier | None
    fills: FillBoard
    _disk_writes: set[asyncio.Task[None]]

    def _store_on_disk(self, obj: StoredObject, index: int, data: bytes) -> None:
        if self.disk is None:
            return
        if len(self._disk_writes) >= MAX_PENDING_DISK_WRITES:
            metrics.CACHE_REFUSED.labels(Tier.DISK.label).inc()
            return
        # In the background: the client's next bytes do not wait for the disk.
        task = asyncio.create_task(self._write_to_disk(self.disk, obj, index, data))
        self._disk_writes.add(task)
        task.add_done_callback(self._disk_writes.discard)

    @staticmethod
    async def _write_to_disk(disk: DiskTier, obj: StoredObject, index: int, data: bytes) -> None:
        if await disk.put(obj.key, index, data):
            # Another worker stored it first: both fetched it from the origin.
            metrics.ORIGIN_DUPLICATE_FETCHES.inc()

    @property
    def pending_disk_writes(self) -> int:
        return len(self._disk_writes)

    async def disk_writes_done(self, timeout_s: float | None = None) -> bool:
        """Wait until every background disk write started so far, and any started while
        waiting, has ended; False if ``timeout_s`` ran out first."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while self._disk_writes:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(set(self._disk_writes), timeout=left)
        return True

    async def drain(self, disk_timeout_s: float) -> None:
        """At shutdown: stop fetches, then give the background disk writes of the slices
        already fetched up to ``disk_timeout_s`` to land, so a restart finds them on disk."""
        await self.fills.drain()
        pending = self.pending_disk_writes
        if not await self.disk_writes_done(disk_timeout_s):
            log.warning(
                "shutting down with %d of %d slice writes unfinished after %g s",
                self.pending_disk_writes,
                pending,
                disk_timeout_s,
            )
