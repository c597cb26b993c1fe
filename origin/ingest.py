"""Ingest: one source file in, a published track out (ladder, seek tables, licence, manifest).

The steps run cheapest-first so bad input fails before any transcoding or upload: the source
must exist and hold audio, the bucket must be usable, and only then does ffmpeg run. The
manifest goes up last; if anything fails before it, edges see nothing new. Superseded audio
objects are deleted only after the new manifest is up, and only when asked (``prune``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from origin import layout
from origin.catalog import check_bucket, prune, read_manifest
from origin.ladder import Rung
from origin.license import LicenseChange
from origin.manifest import Manifest, ManifestError
from origin.publish import TrackInfo, publish_track
from origin.transcode import SourceError, probe_source, transcode


@dataclass(frozen=True, slots=True)
class IngestJob:
    source: Path
    track_id: str
    title: str | None = None  # None: the source's tag, else the published title, else file name
    artist: str | None = None
    license: LicenseChange = field(default_factory=LicenseChange)
    prune: bool = False


@dataclass(frozen=True, slots=True)
class IngestResult:
    manifest: Manifest
    uploaded: list[str]
    unchanged: bool
    pruned: list[str]


def check_source(source: Path) -> None:
    if not source.exists():
        raise SourceError(f"{source}: no such file")
    if not source.is_file():
        raise SourceError(f"{source}: not a regular file")
    try:
        with source.open("rb"):
            pass
    except OSError as exc:
        raise SourceError(f"{source}: cannot read it: {exc.strerror}") from None


async def ingest(
    client: Any,
    bucket: str,
    job: IngestJob,
    *,
    ladder: tuple[Rung, ...],
    part_bytes: int,
    say: Callable[[str], None] = lambda _: None,
) -> IngestResult:
    layout.track_prefix(job.track_id)  # ValueError on a bad id, before any work
    check_source(job.source)
    tags = await probe_source(job.source)
    await check_bucket(client, bucket)
    try:
        previous = await read_manifest(client, bucket, job.track_id)
    except ManifestError as exc:
        say(f"the published manifest of {job.track_id} is invalid ({exc}); replacing it")
        previous = None
    current_license = previous.license if previous else None
    license = current_license if job.license.is_empty else job.license.apply(current_license)
    if license is None:
        say(f"{job.track_id} has no licence: edges serve it nowhere until `license` sets one")

    with tempfile.TemporaryDirectory(prefix="encore-ingest-") as tmp:
        say(f"transcoding {job.source} to {', '.join(r.spec for r in ladder)}")
        files = await transcode(job.source, Path(tmp), ladder)
        track = TrackInfo(
            track_id=job.track_id,
            title=job.title
            or tags.get("title")
            or (previous.title if previous else None)
            or job.source.stem,
            artist=job.artist or tags.get("artist") or (previous.artist if previous else ""),
            license=license,
        )
        result = await publish_track(
            client, bucket, track, files, part_bytes=part_bytes, previous=previous
        )
    pruned = await prune(client, bucket, result.manifest) if job.prune else []
    return IngestResult(result.manifest, result.uploaded, result.unchanged, pruned)
