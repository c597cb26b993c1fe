"""The disk tier: slice files under ``cache.disk_path``, bounded by ``cache.disk_bytes``.

All file I/O runs in worker threads, never on the event loop. The index (slice name -> file
size, in the configured policy's order) lives in memory and is rebuilt from the files at
startup, in the background: until it is complete, a slice missing from the index is looked
for on disk before it counts as a miss, so a restarted node serves disk hits at once.

Several worker processes can share one folder, each within its share of the byte budget.
A worker indexes, and alone evicts, the slice files it wrote; after a restart each indexes
the files whose name hashes to it (``worker`` of ``workers``). Every worker reads every
slice, since a file's place follows from its name. A worker writes a slice only if no file
is there yet; if two race, both count the file (the bound errs on the safe side), and when
one deletes it the other notices at its next lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from cachetools import Cache

from edge import metrics
from edge.policies import make_cache
from edge.slice_files import (
    SLICES_DIR,
    TMP_DIR,
    decode,
    encode,
    read_file,
    slice_name,
    slice_path,
    write_atomically,
)

log = logging.getLogger(__name__)

TIER = "disk"


class DiskTier:
    def __init__(
        self,
        root: Path,
        max_bytes: int,
        slice_bytes: int,
        policy: str,
        *,
        worker: int = 0,
        workers: int = 1,
    ) -> None:
        self.root = root
        self.slice_bytes = slice_bytes
        self.max_bytes = max_bytes // workers  # this worker's share of the budget
        self.worker, self.workers = worker, workers
        # Index memory per slice matters (millions of slices): 16-byte names, one shared int
        # object per distinct size.
        self._index: Cache[bytes, int] = make_cache(policy, max(self.max_bytes, 1), getsizeof=int)
        self._size_objects: dict[int, int] = {}
        self._writing: set[bytes] = set()  # reserved in the index, file not in place yet
        self.rebuilt = asyncio.Event()
        self.rebuild_seconds: float | None = None
        self._tmp_prefix = f"w{worker}-"

    # --- lookups ----------------------------------------------------------------------------

    def name(self, object_key: str, index: int) -> bytes:
        return slice_name(object_key, self.slice_bytes, index)

    def _owns(self, name: bytes) -> bool:
        return int.from_bytes(name[:4], "big") % self.workers == self.worker

    def _size(self, size: int) -> int:
        return self._size_objects.setdefault(size, size)

    async def holding(self, object_key: str, indexes: list[int]) -> set[int]:
        """Which of the object's slices are on disk (as far as can be told without reading
        them). The index answers for what this worker wrote; the rest are looked for on disk,
        all in one thread hop, since another worker (or, before the rebuild ends, a previous
        run) may have written them."""
        names = {index: self.name(object_key, index) for index in indexes}
        held = {index for index, name in names.items() if name in self._index}
        unknown = [(index, names[index]) for index in indexes if index not in held]
        if unknown:
            found = await asyncio.to_thread(self._existing, unknown)
            held |= found
            metrics.cache_lookups(TIER, "miss").inc(len(unknown) - len(found))
        return held

    def _existing(self, candidates: list[tuple[int, bytes]]) -> set[int]:
        return {index for index, name in candidates if slice_path(self.root, name).exists()}

    async def get(self, object_key: str, index: int, length: int) -> bytes | None:
        """The slice's verified bytes, or None (a damaged file is deleted on the way)."""
        name = self.name(object_key, index)
        raw = await asyncio.to_thread(read_file, slice_path(self.root, name))
        data = None if raw is None else decode(raw, object_key, index, length)
        if raw is None or data is None:
            metrics.cache_lookups(TIER, "miss").inc()
            if raw is None and name not in self._writing:
                self._index.pop(name, None)  # the file went away: forget it
                self._publish_size()
            elif raw is not None:
                metrics.DISK_DAMAGED.inc()
                log.warning("dropping damaged slice file %s", name.hex())
                await self._drop(name)
            return None
        metrics.cache_lookups(TIER, "hit").inc()
        if name in self._index:
            self._index[name]  # a use, for the policy
        elif not self.rebuilt.is_set() and self._owns(name):
            await self._admit(name, len(raw))  # found before the rebuild reached it
        return data

    # --- writes -----------------------------------------------------------------------------

    async def put(self, object_key: str, index: int, data: bytes) -> bool:
        """Store a slice fetched from the origin, unless it is on disk already or too big.

        True if another worker had written it already: both fetched it from the origin."""
        name = self.name(object_key, index)
        if name in self._index or name in self._writing:
            return False
        if await asyncio.to_thread(slice_path(self.root, name).exists):
            return True  # another worker wrote it (and counts it)
        if name in self._index or name in self._writing:
            return False  # this worker started the same write meanwhile
        blob = encode(object_key, index, data)
        if len(blob) > self.max_bytes:
            metrics.CACHE_REFUSED.labels(TIER).inc()
            return False
        # Choose victims and reserve the space before the first await, so concurrent writes
        # never overcommit the budget. Until the file is in place a lookup finds no file: a miss.
        victims = self._make_room(len(blob))
        self._index[name] = self._size(len(blob))
        self._writing.add(name)
        self._publish_size()
        try:
            if victims:
                await asyncio.to_thread(self._unlink_all, victims)
            placed = await asyncio.to_thread(
                write_atomically, self.root, name, blob, self._tmp_prefix
            )
            if not placed:  # another worker's file landed first (and is counted there)
                self._index.pop(name, None)
                self._publish_size()
                return True
            if name not in self._index:  # evicted while it was being written
                await asyncio.to_thread(self._unlink_all, [name])
        except OSError as exc:  # a full or failing disk: keep serving without it
            self._index.pop(name, None)
            self._publish_size()
            metrics.CACHE_REFUSED.labels(TIER).inc()
            log.warning("cannot write slice file %s: %s", name.hex(), exc.strerror)
        finally:
            self._writing.discard(name)
        return False

    async def drop_objects(self, objects: Mapping[str, int]) -> int:
        """Delete the slice files of ``objects`` (key -> size), indexed here or not (another
        worker's, or not yet re-indexed after a restart): how many files were removed. A write
        still in flight removes its own file once placed, as its name left the index here."""
        names = [
            self.name(key, index)
            for key, size in objects.items()
            for index in range(-(-size // self.slice_bytes))
        ]
        for name in names:
            self._index.pop(name, None)
        self._publish_size()
        return await asyncio.to_thread(self._unlink_all, names)

    async def _admit(self, name: bytes, size: int) -> None:
        """Index a valid file found on disk that the index did not know (during a rebuild)."""
        if size > self.max_bytes:
            return
        victims = self._make_room(size)
        self._index[name] = self._size(size)
        self._publish_size()
        if victims:
            await asyncio.to_thread(self._unlink_all, victims)

    def _make_room(self, size: int) -> list[bytes]:
        """Take victims out of the index until ``size`` more bytes fit; their files are for
        the caller to delete."""
        victims = []
        while self._index and self._index.currsize + size > self.max_bytes:
            victims.append(self._index.popitem()[0])
        if victims:
            metrics.CACHE_EVICTIONS.labels(TIER).inc(len(victims))
        return victims

    def _unlink_all(self, names: list[bytes]) -> int:
        """Delete the files of ``names``; how many there were."""
        removed = 0
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                slice_path(self.root, name).unlink()
                removed += 1
        return removed

    async def _drop(self, name: bytes) -> None:
        self._index.pop(name, None)
        await asyncio.to_thread(self._unlink_all, [name])
        self._publish_size()

    def _publish_size(self) -> None:
        metrics.CACHE_BYTES.labels(TIER).set(self._index.currsize)
        metrics.CACHE_OBJECTS.labels(TIER).set(len(self._index))

    # --- startup ----------------------------------------------------------------------------

    async def rebuild(self) -> None:
        """Index this worker's slice files (oldest first) and clear its leftover temp files."""
        started = time.monotonic()
        try:
            try:
                found = await asyncio.to_thread(self._scan)
            except OSError as exc:  # the node serves on, from memory and the origin
                log.error("disk tier unusable at %s: %s", self.root, exc)
                return
            excess = []
            for name, size, _ in sorted(found, key=lambda entry: entry[2]):
                if name in self._index:
                    continue  # indexed by a request while the scan ran
                if size > self.max_bytes:
                    excess.append(name)
                    continue
                while self._index and self._index.currsize + size > self.max_bytes:
                    excess.append(self._index.popitem()[0])  # e.g. after disk_bytes shrank
                self._index[name] = self._size(size)
            if excess:
                await asyncio.to_thread(self._unlink_all, excess)
            self._publish_size()
        finally:
            self.rebuild_seconds = time.monotonic() - started
            metrics.DISK_REBUILD_SECONDS.set(self.rebuild_seconds)
            self.rebuilt.set()
        log.info(
            "disk index rebuilt: %d slices, %d bytes in %.2f s",
            len(self._index),
            self._index.currsize,
            self.rebuild_seconds,
        )

    def _scan(self) -> list[tuple[bytes, int, float]]:
        for leftover in self._own_temp_files():
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        found = []
        slices = self.root / SLICES_DIR
        slices.mkdir(parents=True, exist_ok=True)
        for bucket in os.scandir(slices):
            if not bucket.is_dir():
                continue
            for entry in os.scandir(bucket.path):
                try:
                    name = bytes.fromhex(entry.name)
                except ValueError:
                    continue  # not a slice file
                if len(name) == 16 and self._owns(name):
                    with contextlib.suppress(FileNotFoundError):
                        stat = entry.stat()
                        found.append((name, stat.st_size, stat.st_mtime))
        return found

    def _own_temp_files(self) -> Iterator[Path]:
        tmp = self.root / TMP_DIR
        if tmp.is_dir():
            yield from tmp.glob(f"{self._tmp_prefix}*")

    @property
    def bytes_held(self) -> int:
        return int(self._index.currsize)

    def __len__(self) -> int:
        return len(self._index)
