"""Manifests read from the origin, parsed once and kept for ``edge.manifest_ttl_s``.

The cache is bounded in bytes (``edge.manifest_cache_bytes``): a manifest with long seek
tables weighs more than a short one. Concurrent requests for the same uncached manifest share
one origin GET.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from cachetools import TTLCache

from edge.client_view import LoadedManifest
from edge.errors import BadOriginData, NotFound
from edge.origin import Origin
from origin import layout
from origin.manifest import MAX_MANIFEST_BYTES, ManifestError, parse_manifest

log = logging.getLogger(__name__)


def _footprint(loaded: LoadedManifest) -> int:
    return loaded.footprint


class ManifestStore:
    def __init__(self, origin: Origin, ttl_s: float, max_bytes: int) -> None:
        self._origin = origin
        self._ttl_s = ttl_s if max_bytes > 0 else 0
        self._cache: TTLCache[str, LoadedManifest] = TTLCache(
            maxsize=max(max_bytes, 1), ttl=max(ttl_s, 0.001), getsizeof=_footprint
        )
        self._in_flight: dict[str, asyncio.Task[LoadedManifest]] = {}

    async def get(self, track_id: str) -> LoadedManifest:
        """The manifest of ``track_id``; NotFound if the track is not published."""
        loaded = self._cache.get(track_id) if self._ttl_s > 0 else None
        if loaded is not None:
            return loaded
        task = self._in_flight.get(track_id)
        if task is None:
            task = asyncio.create_task(self._load(track_id))
            self._in_flight[track_id] = task
            task.add_done_callback(functools.partial(self._finished, track_id))
        # shield: a client that goes away does not cancel the load others wait on.
        return await asyncio.shield(task)

    def _finished(self, track_id: str, task: asyncio.Task[LoadedManifest]) -> None:
        self._in_flight.pop(track_id, None)
        if not task.cancelled():
            task.exception()  # retrieved here, so a load whose waiters all left logs nothing

    async def _load(self, track_id: str) -> LoadedManifest:
        try:
            raw = await self._origin.get_small(layout.manifest_key(track_id), MAX_MANIFEST_BYTES)
        except NotFound:
            raise NotFound(f"track {track_id!r} does not exist", code="track_not_found") from None
        try:
            manifest = parse_manifest(raw, track_id)
        except ManifestError as exc:
            log.error("rejecting manifest of track %s: %s", track_id, exc)
            raise BadOriginData(
                f"the manifest of track {track_id!r} is invalid", code="bad_manifest"
            ) from None
        loaded = LoadedManifest.of(manifest)
        if self._ttl_s > 0 and loaded.footprint <= self._cache.maxsize:
            self._cache[track_id] = loaded
        return loaded

    def forget(self, track_id: str) -> None:
        self._cache.pop(track_id, None)
