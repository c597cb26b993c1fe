"""The memory tier: whole slices in a byte-bounded cache with the configured policy."""

from __future__ import annotations

from cachetools import Cache

from edge.policies import DEFAULT_POLICY, make_cache

SliceKey = tuple[str, int]  # (immutable object key, slice index)


class MemoryTier:
    """Slices by key, evicted by ``policy`` (see ``edge.policies``) to stay within ``max_bytes``."""

    def __init__(self, max_bytes: int, policy: str = DEFAULT_POLICY) -> None:
        self.max_bytes = max_bytes
        self._slices: Cache[SliceKey, bytes] = make_cache(policy, max(max_bytes, 1), getsizeof=len)

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
