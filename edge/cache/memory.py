"""The memory tier: whole slices in a byte-bounded cache with the configured policy."""

from __future__ import annotations

from collections.abc import Callable

from cachetools import Cache

from edge.cache.policies import make_cache
from edge.cache.slice_files import SliceData
from edge.telemetry import metrics
from origin.settings import DEFAULT_POLICY

SliceKey = tuple[str, int]  # (immutable object key, slice index)
TIER = "memory"
# Looked up once: prometheus-client's labels() costs more than the rest of a put.
_EVICTIONS = metrics.CACHE_EVICTIONS.labels(TIER)
_BYTES = metrics.CACHE_BYTES.labels(TIER)
_OBJECTS = metrics.CACHE_OBJECTS.labels(TIER)
_REFUSED = metrics.CACHE_REFUSED.labels(TIER)
_MISSES = metrics.cache_lookups(TIER, "miss")


class MemoryTier:
    """Slices by key, evicted by ``policy`` (see ``edge.cache.policies``) to stay within
    ``max_bytes``."""

    def __init__(
        self,
        max_bytes: int,
        policy: str = DEFAULT_POLICY,
        on_evict: Callable[[SliceKey], None] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self._on_evict = on_evict
        # Bumped whenever a slice leaves (evicted or purged): while it stays the same, what
        # was found held is still held (see edge.api.hot_hits).
        self.removals = 0
        self._slices: Cache[SliceKey, SliceData] = make_cache(
            policy, max(max_bytes, 1), getsizeof=len, on_evict=self._evicted
        )

    def _evicted(self, key: SliceKey) -> None:
        self.removals += 1
        if self._on_evict is not None:
            self._on_evict(key)

    def get(self, key: SliceKey) -> SliceData | None:
        data = self._slices.get(key)
        metrics.cache_lookups(TIER, "miss" if data is None else "hit").inc()
        return data

    def take(self, key: SliceKey) -> SliceData | None:
        """As :meth:`get`, but a miss is not counted (the caller falls back to a path that
        looks again, and counts it there)."""
        data = self._slices.get(key)
        if data is not None:
            metrics.cache_lookups(TIER, "hit").inc()
        return data

    def count_misses(self, count: int) -> None:
        """Lookups that found nothing, made without :meth:`get` (``SliceStore.plan_read_now``
        looks with ``in`` until it knows the request is served at once)."""
        _MISSES.inc(count)

    def peek(self, key: SliceKey) -> SliceData | None:
        """Look again, without counting a lookup (the request already counted its miss)."""
        return self._slices.get(key)

    def put(self, key: SliceKey, data: SliceData) -> None:
        if len(data) > self.max_bytes:
            _REFUSED.inc()
            return  # larger than the whole tier (or the tier is off): not cached
        before = len(self._slices) + (key not in self._slices)
        self._slices[key] = data
        if before > len(self._slices):
            _EVICTIONS.inc(before - len(self._slices))
        _BYTES.set(self._slices.currsize)
        _OBJECTS.set(len(self._slices))

    def drop_objects(self, object_keys: Callable[[str], bool]) -> list[SliceKey]:
        """Delete every slice of the objects ``object_keys`` selects (a purge); their keys."""
        victims = [key for key in self._slices if object_keys(key[0])]
        self.removals += len(victims)
        for key in victims:
            del self._slices[key]
        _BYTES.set(self._slices.currsize)
        _OBJECTS.set(len(self._slices))
        return victims

    def __contains__(self, key: SliceKey) -> bool:
        return key in self._slices

    @property
    def bytes_held(self) -> int:
        return int(self._slices.currsize)

    def __len__(self) -> int:
        return len(self._slices)
