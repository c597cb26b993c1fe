"""Warming a track's first slices ahead of demand: for the next-track hint and for
``POST /admin/warm``. The licence is checked first, as for any client request: nothing is
fetched for a region the track may not be served in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge.access.licensing import LicenceGate
from edge.cache.fills import StoredObject
from edge.cache.prefetch import Prefetcher, PrefetchReason
from edge.upstream.manifests import ManifestStore
from origin.manifest import Manifest, Rendition

PickRenditions = Callable[[Manifest], list[Rendition]]


@dataclass(frozen=True, slots=True)
class Warmed:
    fetched: int  # slices fetched from the origin now
    wanted: int  # slices asked for (the rest were cached or already being fetched)


async def warm_track(
    manifests: ManifestStore,
    gate: LicenceGate,
    prefetcher: Prefetcher,
    track_id: str,
    *,
    region: str,
    pick: PickRenditions,
    slices: int,
    reason: PrefetchReason,
) -> Warmed:
    """Fetch the first ``slices`` slices of the renditions ``pick`` chooses, if licensed for
    ``region``. Raises NotFound, NotLicensed or an origin error."""
    manifest = (await manifests.get(track_id)).manifest
    gate.enforce(track_id, manifest.license, region)
    fetched = wanted = 0
    slice_bytes = prefetcher.slice_bytes
    for rendition in pick(manifest):
        if rendition.size == 0:
            continue
        obj = StoredObject(rendition.key, rendition.size)
        last = min(slices, -(-rendition.size // slice_bytes)) - 1
        wanted += last + 1
        fetched += await prefetcher.fetch(obj, 0, last, reason)
    return Warmed(fetched, wanted)


def same_bitrate(current: Rendition) -> PickRenditions:
    """The next track's rendition at the bitrate being played (else the same name)."""

    def pick(manifest: Manifest) -> list[Rendition]:
        renditions = list(manifest.renditions.values())
        for rendition in renditions:
            if rendition.codec == current.codec and rendition.bitrate_kbps == current.bitrate_kbps:
                return [rendition]
        same_name = manifest.renditions.get(current.name)
        return [same_name] if same_name is not None else []

    return pick
