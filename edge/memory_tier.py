"""The memory tier: whole slices held in a byte-bounded LRU (cachetools, sized by ``len``)."""

from __future__ import annotations

from cachetools import LRUCache

SliceKey = tuple[str, int]  # (immutable object key, slice index)


class MemoryTier:
    """Slices by key, evicting least recently used ones to stay within ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._slices: LRUCache[SliceKey, bytes] = LRUCache(maxsize=max(max_bytes, 1), getsizeof=len)

    def get(self, key: SliceKey) -> bytes | None:
        return self._slices.get(key)

    def put(self, key: SliceKey, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return  # larger than the whole tier (or the tier is off): not cached
        self._slices[key] = data

    def __contains__(self, key: SliceKey) -> bool:
        return key in self._slices

    @property
    def bytes_held(self) -> int:
        return int(self._slices.currsize)

    def __len__(self) -> int:
        return len(self._slices)
