"""The disk tier: slice files under ``cache.disk_path``, bounded by ``cache.disk_bytes``.

File I/O runs in worker threads, never on the event loop, except a read of a slice file
that this worker verified before and that is all in the page cache (``RWF_NOWAIT``: such a
read cannot wait on the device), which is done at once. The index (slice name -> file
size, in the configured policy's order) lives in memory and is rebuilt from the files at
startup, in the background: until it is complete, a slice missing from the index is looked
for on disk before it counts as a miss, so a restarted node serves disk hits at once.

Several worker processes can share one folder, each within its share of the byte budget.
Every worker reads every slice, since a file's place follows from its name. A worker writes a
slice only if no file is there yet (a hard link decides a race: one wins, the other learns it
fetched a duplicate), and indexes, and alone evicts, the files it wrote. So that a file is
counted by exactly one worker across crashes too, a worker that writes a slice whose name
hashes to another worker (``worker`` of ``workers``) makes a claim marker, an empty file
``claims/w{worker}/{name}``, just before it links the file into place, and removes it after
the file when it evicts or drops the slice. A crash thus leaves at worst a marker without a
file, never a file without its claim. Marker work shares the thread hop of the file's own
write or unlink. At a rebuild, each worker indexes

* the files whose name hashes to it, unless another worker (one of ``workers``) claims them;
* the files its own markers name (its predecessor wrote them); a marker without its file,
  or for a name that now hashes to this worker, is deleted.

Markers of worker numbers no longer in use (``workers`` shrank) are void: their files fall to
their hash owner, and worker 0 deletes those folders. A crash between two file operations can
leave a slice counted by two workers, which errs on the safe side; never by none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from cachetools import Cache

from edge.cache.disk_folder import Share
from edge.cache.policies import make_cache
from edge.cache.slice_files import (
    SLICES_DIR,
    Identity,
    SliceData,
    claim_path,
    decode,
    encode,
    read_cached,
    read_file,
    read_with_identity,
    slice_file,
    slice_name,
    slice_path,
    write_atomically,
)
from edge.telemetry import metrics

log = logging.getLogger(__name__)

TIER = "disk"
_HITS = metrics.cache_lookups(TIER, "hit")
MAX_VERIFIED = 65_536  # identities of verified files (some 13 MB), all forgotten when full


def _read_verified(
    path: str, object_key: str, index: int, length: int
) -> tuple[tuple[bytearray, Identity] | None, SliceData | None]:
    """A slice file's bytes and identity (None: no such file) and its verified data (None:
    damaged)."""
    found = read_with_identity(path)
    return found, None if found is None else decode(found[0], object_key, index, length)


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
        self._slices_dir = os.path.join(root, SLICES_DIR)
        self.slice_bytes = slice_bytes
        self.max_bytes = max_bytes // workers  # this worker's share of the budget
        self.worker, self.workers = worker, workers
        # Index memory per slice matters (millions of slices): 16-byte names, one shared int
        # object per distinct size.
        self._index: Cache[bytes, int] = make_cache(policy, max(self.max_bytes, 1), getsizeof=int)
        self._verified: dict[bytes, Identity] = {}  # files whose CRC this worker checked
        self._size_objects: dict[int, int] = {}
        # Names whose file or claim marker a thread of this worker is changing: no write of
        # them starts meanwhile (it could make a marker that thread then removes). A name
        # being written is also reserved in the index.
        self._busy: set[bytes] = set()
        # Names this worker forgot while the rebuild ran: its scan may have seen their files.
        self._forgotten: set[bytes] | None = set()
        self._writes_placed = 0  # slice files this worker has linked into place, ever
        self.rebuilt = asyncio.Event()
        self.rebuild_seconds: float | None = None
        self._share = Share(root, worker, workers)

    # --- lookups ----------------------------------------------------------------------------

    def name(self, object_key: str, index: int) -> bytes:
        return slice_name(object_key, self.slice_bytes, index)

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

    async def get(self, object_key: str, index: int, length: int) -> SliceData | None:
        """The slice's verified bytes, or None (a damaged file is deleted on the way)."""
        name = self.name(object_key, index)
        path = slice_file(self._slices_dir, name)
        # Before the rebuild reaches it, a file that hashes here may be this worker's to count
        # (a previous run's), unless another worker claims it: learnt in the same thread hop.
        adopt = not self.rebuilt.is_set() and self._share.owns(name) and name not in self._index
        writes_before = self._writes_placed
        # Read and verified in a worker thread (the checksum of a slice costs more than the
        # rest of a hit, and zlib lets the event loop run meanwhile), unless verified before
        # and still in the page cache: see _read.
        raw: bytes | bytearray | None
        if adopt:
            raw, adopt = await asyncio.to_thread(self._read_unclaimed, name)
            data = None if raw is None else decode(raw, object_key, index, length)
        else:
            raw, data = await self._read(name, path, (object_key, index, length))
        if raw is None or data is None:
            metrics.cache_lookups(TIER, "miss").inc()
            # The file went away: forget it, unless a write of this worker may have placed it
            # while the read was looking (then the index is right and the read was early).
            if raw is None and name not in self._busy and self._writes_placed == writes_before:
                if self._forget(name) and not self._share.owns(name):
                    await self._delete([name], files=False)  # and so does its claim
                self._publish_size()
            elif raw is not None:
                metrics.DISK_DAMAGED.inc()
                log.warning("dropping damaged slice file %s", name.hex())
                await self._drop(name)
            return None
        _HITS.inc()
        if name in self._index:
            self._index[name]  # a use, for the policy
        elif adopt and not self.rebuilt.is_set():
            await self._admit(name, len(raw))  # found before the rebuild reached it
        return data

    async def _read(
        self, name: bytes, path: str, slice_: tuple[str, int, int]
    ) -> tuple[bytes | bytearray | None, SliceData | None]:
        """A slice file's bytes (None: no such file) and its data (None: damaged). A file
        this worker verified, unchanged since and still in the page cache, is read at once
        and not checksummed again; any other is read and verified in a worker thread."""
        raw = self._page_cached(name, path)
        if raw is not None:
            return raw, decode(raw, *slice_, checksum=False)
        found, data = await asyncio.to_thread(_read_verified, path, *slice_)
        if found is None or data is None:
            self._verified.pop(name, None)
            return None if found is None else found[0], None
        if len(self._verified) >= MAX_VERIFIED:
            self._verified.clear()
        self._verified[name] = found[1]
        return found[0], data

    def _page_cached(self, name: bytes, path: str) -> bytearray | None:
        """The file's bytes if this worker verified it, it is unchanged since (same inode,
        size and mtime) and all of it is in the page cache; else None: read it in a thread."""
        known = self._verified.get(name)
        if known is None:
            return None
        with contextlib.suppress(BlockingIOError):
            cached = read_cached(path)
            if cached is not None and cached[1] == known:
                return cached[0]
        return None

    def read_now(self, object_key: str, index: int, length: int) -> tuple[bytes, SliceData] | None:
        """Without waiting: the slice's name and data if its file can be read at once (see
        :meth:`_page_cached`) and its header holds; else None, nothing counted, and
        :meth:`get` reads it. A hit is counted with :meth:`count_hit` once it is used."""
        name = self.name(object_key, index)
        if not self.rebuilt.is_set() and self._share.owns(name) and name not in self._index:
            return None  # maybe a previous run's file, to adopt: get does that
        try:
            raw = self._page_cached(name, slice_file(self._slices_dir, name))
        except OSError:
            return None  # get meets it again, and answers for it
        data = None if raw is None else decode(raw, object_key, index, length, checksum=False)
        return None if data is None else (name, data)

    def count_hit(self, name: bytes) -> None:
        """A slice from :meth:`read_now` was used."""
        _HITS.inc()
        if name in self._index:
            self._index[name]  # a use, for the policy

    def _read_unclaimed(self, name: bytes) -> tuple[bytes | None, bool]:
        """The file's bytes, and whether no other worker claims it."""
        raw = read_file(slice_path(self.root, name))
        return raw, raw is not None and not any(
            claim_path(self.root, other, name).exists() for other in self._share.others()
        )

    # --- writes -----------------------------------------------------------------------------

    async def put(self, object_key: str, index: int, data: bytes) -> bool:
        """Store a slice fetched from the origin, unless it is on disk already or too big.

        True if another worker had written it already: both fetched it from the origin."""
        name = self.name(object_key, index)
        if name in self._index or name in self._busy:
            return False
        if await asyncio.to_thread(slice_path(self.root, name).exists):
            return True  # another worker wrote it (and counts it)
        if name in self._index or name in self._busy:
            return False  # this worker started the same write meanwhile
        blob = encode(object_key, index, data)
        if len(blob) > self.max_bytes:
            metrics.CACHE_REFUSED.labels(TIER).inc()
            return False
        # Choose victims and reserve the space before the first await, so concurrent writes
        # never overcommit the budget. Until the file is in place a lookup finds no file: a miss.
        victims = self._make_room(len(blob))
        self._index[name] = self._size(len(blob))
        self._busy.add(name)
        self._publish_size()
        try:
            if victims:
                await self._delete(victims)
            placed = await asyncio.to_thread(self._place, name, blob)
            self._writes_placed += placed
            if not placed:  # another worker's file landed first (and is counted there)
                self._forget(name)
                self._publish_size()
                return True
            if name not in self._index:  # evicted or purged while it was being written
                await asyncio.to_thread(self._unlink_all, [name])
        except OSError as exc:  # a full or failing disk: keep serving without it
            self._forget(name)
            self._publish_size()
            metrics.CACHE_REFUSED.labels(TIER).inc()
            log.warning("cannot write slice file %s: %s", name.hex(), exc.strerror)
        finally:
            self._busy.discard(name)
        return False

    def _place(self, name: bytes, blob: bytes) -> bool:
        """Write the slice file, claimed if its name hashes to another worker; False, and no
        claim left, if a file was there already."""
        claim = None if self._share.owns(name) else claim_path(self.root, self.worker, name)
        return write_atomically(self.root, name, blob, self._share.tmp_prefix, claim)

    async def drop_objects(self, objects: Mapping[str, int]) -> int:
        """Delete the slice files of ``objects`` (key -> size), indexed here or not (another
        worker's, or not yet re-indexed after a restart), and this worker's claims of them:
        how many files were removed. A write still in flight removes its own file once
        placed, as its name left the index here."""
        names = [
            self.name(key, index)
            for key, size in objects.items()
            for index in range(-(-size // self.slice_bytes))
        ]
        for name in names:
            self._forget(name)
        self._publish_size()
        return await self._delete(names)

    async def _admit(self, name: bytes, size: int) -> None:
        """Index a valid file found on disk that the index did not know (during a rebuild)."""
        if size > self.max_bytes:
            return
        victims = self._make_room(size)
        self._index[name] = self._size(size)
        self._publish_size()
        if victims:
            await self._delete(victims)

    def _make_room(self, size: int) -> list[bytes]:
        """Take victims out of the index until ``size`` more bytes fit; their files are for
        the caller to delete."""
        victims = []
        while self._index and self._index.currsize + size > self.max_bytes:
            victims.append(self._index.popitem()[0])
        if victims:
            metrics.CACHE_EVICTIONS.labels(TIER).inc(len(victims))
            if self._forgotten is not None:
                self._forgotten.update(victims)
        return victims

    def _forget(self, name: bytes) -> bool:
        """Take ``name`` out of the index; whether it was there."""
        self._verified.pop(name, None)
        if self._forgotten is not None:
            self._forgotten.add(name)
        return self._index.pop(name, None) is not None

    async def _delete(self, names: list[bytes], *, files: bool = True) -> int:
        """Delete the files of ``names`` (or, ``files`` False, only this worker's claims of
        them) in one thread hop: how many files there were. Until it ends no write of these
        names starts here. (A name busy already is another operation's, which ends
        consistently: a write in flight sees its name left the index and removes its file.)"""
        held = [name for name in names if name not in self._busy]
        self._busy.update(held)
        try:
            unlink = self._unlink_all if files else self._unclaim_all
            return await asyncio.to_thread(unlink, names)
        finally:
            self._busy.difference_update(held)

    def _unlink_all(self, names: list[bytes]) -> int:
        """Delete the files of ``names``, then this worker's claims of them (in that order: a
        crash in between leaves a marker without a file, which the next rebuild clears)."""
        removed = 0
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                slice_path(self.root, name).unlink()
                removed += 1
            if not self._share.owns(name):
                with contextlib.suppress(FileNotFoundError):
                    claim_path(self.root, self.worker, name).unlink()
        return removed

    def _unclaim_all(self, names: list[bytes]) -> int:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                claim_path(self.root, self.worker, name).unlink()
        return 0

    async def _drop(self, name: bytes) -> None:
        self._forget(name)
        await self._delete([name])
        self._publish_size()

    def _publish_size(self) -> None:
        metrics.CACHE_BYTES.labels(TIER).set(self._index.currsize)
        metrics.CACHE_OBJECTS.labels(TIER).set(len(self._index))

    # --- startup ----------------------------------------------------------------------------

    async def rebuild(self) -> None:
        """Index this worker's slice files (oldest first), clear its leftover temp files and
        the claims that name no file."""
        started = time.monotonic()
        try:
            try:
                found, unbacked = await asyncio.to_thread(self._share.scan)
            except OSError as exc:  # the node serves on, from memory and the origin
                log.error("disk tier unusable at %s: %s", self.root, exc)
                return
            forgotten = self._forgotten or set()
            excess = []
            for name, size, _ in sorted(found, key=lambda entry: entry[2]):
                if name in self._index or name in forgotten:
                    continue  # indexed by a request while the scan ran, or evicted since
                if size > self.max_bytes:
                    excess.append(name)
                    continue
                while self._index and self._index.currsize + size > self.max_bytes:
                    excess.append(self._index.popitem()[0])  # e.g. after disk_bytes shrank
                self._index[name] = self._size(size)
            if excess:
                await self._delete(excess)
            # A marker this worker made since the scan (a write in flight) is in the index.
            unbacked = [n for n in unbacked if n not in self._index and n not in self._busy]
            if unbacked:
                await self._delete(unbacked, files=False)
            self._publish_size()
        finally:
            self._forgotten = None
            self.rebuild_seconds = time.monotonic() - started
            metrics.DISK_REBUILD_SECONDS.set(self.rebuild_seconds)
            self.rebuilt.set()
        log.info(
            "disk index rebuilt: %d slices, %d bytes in %.2f s",
            len(self._index),
            self._index.currsize,
            self.rebuild_seconds,
        )

    @property
    def bytes_held(self) -> int:
        return int(self._index.currsize)

    def __len__(self) -> int:
        return len(self._index)
