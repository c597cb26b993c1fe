"""Purging tracks: their manifests and slices leave this worker's memory and the disk tier,
so the next request loads the manifest afresh (a takedown or licence change applies at once).

The slices to drop are those of every object the track's manifests name: the origin's current
manifest (read by the worker that took the admin request) and the manifest each worker still
holds, however old. Memory is also swept by key prefix (``tracks/{id}/``), which catches
objects of a manifest no worker holds any more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edge.http.errors import EncoreError
from edge.runtime.context import WorkerContext
from edge.upstream.guard import OriginGuard
from origin import layout
from origin.manifest import MAX_MANIFEST_BYTES, Manifest, ManifestError, parse_manifest

log = logging.getLogger(__name__)

ORIGIN_READS_AT_ONCE = 8


@dataclass(frozen=True, slots=True)
class Purged:
    manifests: int = 0  # cached manifests dropped
    memory_slices: int = 0
    disk_slices: int = 0

    def __add__(self, other: Purged) -> Purged:
        return Purged(
            self.manifests + other.manifests,
            self.memory_slices + other.memory_slices,
            self.disk_slices + other.disk_slices,
        )

    def to_doc(self) -> dict[str, int]:
        return {
            "manifests": self.manifests,
            "memory_slices": self.memory_slices,
            "disk_slices": self.disk_slices,
        }

    @classmethod
    def from_doc(cls, doc: object) -> Purged:
        if not isinstance(doc, dict):
            raise ValueError(f"not a purge result: {doc!r}")
        values = [doc.get(k) for k in ("manifests", "memory_slices", "disk_slices")]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ValueError(f"not a purge result: {doc!r}")
        return cls(*values)  # type: ignore[arg-type]


def objects_of(manifest: Manifest) -> dict[str, int]:
    return {r.key: r.size for r in manifest.renditions.values()}


async def objects_at_origin(guard: OriginGuard, track_ids: Iterable[str]) -> dict[str, int]:
    """The objects the origin's current manifests name (key -> size). A track the origin does
    not have, or cannot answer for now, adds nothing: the purge goes on with what the workers
    hold."""
    gate = asyncio.Semaphore(ORIGIN_READS_AT_ONCE)

    async def one(track_id: str) -> dict[str, int]:
        async with gate:
            try:
                raw = await guard.get_small(layout.manifest_key(track_id), MAX_MANIFEST_BYTES)
                return objects_of(parse_manifest(raw, track_id))
            except (EncoreError, ManifestError) as exc:
                log.info("purge of %s goes on without the origin's manifest: %s", track_id, exc)
                return {}

    found: dict[str, int] = {}
    for objects in await asyncio.gather(*(one(t) for t in track_ids)):
        found.update(objects)
    return found


async def purge_here(
    worker: WorkerContext, track_ids: Iterable[str], objects: Mapping[str, int]
) -> Purged:
    """Purge ``track_ids`` from this worker, and the slices of ``objects`` besides."""
    objects = dict(objects)
    track_ids = list(track_ids)
    manifests = 0
    for track_id in track_ids:
        held = worker.manifests.cached(track_id)
        if held is not None:
            objects.update(objects_of(held.manifest))
        manifests += worker.manifests.forget(track_id)
    prefixes = tuple(layout.track_prefix(t) for t in track_ids)
    memory, disk = await worker.slices.purge(objects, prefixes)
    return Purged(manifests, memory, disk)
