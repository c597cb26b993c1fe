"""Manifests read from the origin, parsed once, and kept for ``edge.manifest_ttl_s``.

The TTL is a hard bound while the origin answers: manifests carry the licence, and a licence
change must apply within it. So revalidation starts early: in the last
``edge.manifest_stale_while_revalidate_s`` of the TTL (at most its second half) a manifest is
still served while one background GET refreshes it, and a popular manifest never makes a
request wait. Past the TTL a request waits for the new one; only when the origin fails
(timeouts, 5xx, an open breaker, an invalid new manifest) is the old one served, for
``edge.manifest_stale_if_error_s`` more. A not-found is
authoritative: the track was removed, so it is dropped at once and remembered for
``edge.negative_ttl_s``, so that a flood of unknown ids does not become a flood at the origin.

The cache is bounded in bytes (``edge.manifest_cache_bytes``): a manifest with long seek
tables weighs more than a short one. Concurrent requests for the same manifest share one GET.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache, TTLCache

from edge.http.errors import BadOriginData, EncoreError, NotFound
from edge.telemetry import metrics
from edge.upstream.client_view import LoadedManifest
from edge.upstream.guard import OriginGuard
from origin import layout
from origin.manifest import MAX_MANIFEST_BYTES, ManifestError, parse_manifest

log = logging.getLogger(__name__)

MAX_NEGATIVE_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class ManifestPolicy:
    ttl_s: float
    stale_while_revalidate_s: float
    stale_if_error_s: float
    negative_ttl_s: float
    max_bytes: int


@dataclass(frozen=True, slots=True)
class _Entry:
    loaded: LoadedManifest
    fetched_at: float


def _footprint(entry: _Entry) -> int:
    return entry.loaded.footprint


class ManifestStore:
    def __init__(
        self,
        guard: OriginGuard,
        policy: ManifestPolicy,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._guard = guard
        self._policy = policy
        self._clock = clock
        self._caching = policy.ttl_s > 0 and policy.max_bytes > 0
        self._refresh_after_s = policy.ttl_s - min(
            policy.stale_while_revalidate_s, policy.ttl_s / 2
        )
        self._entries: LRUCache[str, _Entry] = LRUCache(
            maxsize=max(policy.max_bytes, 1), getsizeof=_footprint
        )
        self._missing: TTLCache[str, bool] = TTLCache(
            maxsize=MAX_NEGATIVE_ENTRIES, ttl=max(policy.negative_ttl_s, 0.001), timer=clock
        )
        self._in_flight: dict[str, asyncio.Task[LoadedManifest]] = {}

    async def get(self, track_id: str) -> LoadedManifest:
        """The manifest of ``track_id``; NotFound if the track is not published."""
        entry = self._entries.get(track_id)
        age = self._clock() - entry.fetched_at if entry is not None else 0.0
        policy = self._policy
        if entry is not None:
            if age < self._refresh_after_s:
                metrics.manifest_lookups("fresh").inc()
                return entry.loaded
            if age < policy.ttl_s:
                metrics.manifest_lookups("stale").inc()
                self._load(track_id)  # in the background; this request does not wait
                return entry.loaded
        if track_id in self._missing:
            metrics.manifest_lookups("negative").inc()
            raise _track_not_found(track_id)
        try:
            # shield: a client that goes away does not cancel the load others wait on.
            loaded = await asyncio.shield(self._load(track_id))
        except NotFound:
            raise
        except EncoreError as exc:
            if entry is not None and age < policy.ttl_s + policy.stale_if_error_s:
                metrics.manifest_lookups("stale_if_error").inc()
                log.warning("serving a stale manifest of %s: %s", track_id, exc.message)
                return entry.loaded
            raise
        metrics.manifest_lookups("loaded").inc()
        return loaded

    def fresh(self, track_id: str) -> LoadedManifest | None:
        """The manifest of ``track_id`` if one is held and fresh (counted as a ``fresh``
        lookup), else None: then :meth:`get`, which may wait on the origin."""
        entry = self._entries.get(track_id)
        if entry is not None and self._clock() - entry.fetched_at < self._refresh_after_s:
            metrics.manifest_lookups("fresh").inc()
            return entry.loaded
        return None

    def _load(self, track_id: str) -> asyncio.Task[LoadedManifest]:
        task = self._in_flight.get(track_id)
        if task is None:
            task = asyncio.create_task(self._fetch(track_id))
            self._in_flight[track_id] = task
            task.add_done_callback(lambda done: self._finished(track_id, done))
        return task

    def _finished(self, track_id: str, task: asyncio.Task[LoadedManifest]) -> None:
        # A purge during this load dropped its entry, and a newer load may hold the slot now.
        if self._in_flight.get(track_id) is task:
            del self._in_flight[track_id]
        if not task.cancelled():
            task.exception()  # retrieved here, so a load whose waiters all left logs nothing

    async def _fetch(self, track_id: str) -> LoadedManifest:
        try:
            raw = await self._guard.get_small(layout.manifest_key(track_id), MAX_MANIFEST_BYTES)
        except NotFound:
            self._entries.pop(track_id, None)  # removed from the origin: stop serving it
            if self._policy.negative_ttl_s > 0:
                self._missing[track_id] = True
            raise _track_not_found(track_id) from None
        try:
            manifest = parse_manifest(raw, track_id)
        except ManifestError as exc:
            log.error("rejecting manifest of track %s: %s", track_id, exc)
            raise BadOriginData(
                f"the manifest of track {track_id!r} is invalid", code="bad_manifest"
            ) from None
        loaded = LoadedManifest.of(manifest)
        purged = self._in_flight.get(track_id) is not asyncio.current_task()
        if self._caching and not purged and loaded.footprint <= self._entries.maxsize:
            self._entries[track_id] = _Entry(loaded, self._clock())
        return loaded

    def cached(self, track_id: str) -> LoadedManifest | None:
        """The manifest held for ``track_id``, however old, without a lookup or a load."""
        entry = self._entries.get(track_id)
        return entry.loaded if entry is not None else None

    def forget(self, track_id: str) -> bool:
        """Drop what is known of ``track_id`` (a purge): the next request loads it afresh. A
        load already in flight still answers its waiters but is not kept. True if a manifest
        was held."""
        self._missing.pop(track_id, None)
        self._in_flight.pop(track_id, None)
        return self._entries.pop(track_id, None) is not None

    @property
    def held(self) -> int:
        return len(self._entries)


def _track_not_found(track_id: str) -> NotFound:
    return NotFound(f"track {track_id!r} does not exist", code="track_not_found")
