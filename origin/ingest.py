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

from botocore.exceptions import BotoCoreError, ClientError

from origin import layout
from origin.catalog import check_bucket, prune, read_manifest
from origin.ladder import Rung
from origin.license import License, LicenseChange
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
    prune_error: str | None = None  # the track is published; only the clean-up failed


MAX_TEXT = 500  # the schema's bound on title and artist


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


def _check_job(job: IngestJob) -> None:
    layout.track_prefix(job.track_id)  # ValueError naming the rule
    for name, value in (("title", job.title), ("artist", job.artist)):
        if value is not None and len(value) > MAX_TEXT:
            raise ValueError(f"--{name} is {len(value)} characters; at most {MAX_TEXT}")


async def _published(
    client: Any, bucket: str, track_id: str, say: Callable[[str], None]
) -> Manifest | None:
    try:
        return await read_manifest(client, bucket, track_id)
    except ManifestError as exc:
        say(f"the published manifest of {track_id} is invalid ({exc}); replacing it")
        return None


async def ingest(
    client: Any,
    bucket: str,
    job: IngestJob,
    *,
    ladder: tuple[Rung, ...],
    part_bytes: int,
    say: Callable[[str], None] = lambda _: None,
) -> IngestResult:
    _check_job(job)
    check_source(job.source)
    tags = await probe_source(job.source)
    await check_bucket(client, bucket)
    before = await _published(client, bucket, job.track_id, say)
    _license_for(job, before)  # a licence change that cannot apply fails before transcoding

    with tempfile.TemporaryDirectory(prefix="encore-ingest-") as tmp:
        say(f"transcoding {job.source} to {', '.join(r.spec for r in ladder)}")
        files = await transcode(job.source, Path(tmp), ladder)
        # Read again: a `license` run during the transcode must not be undone by this one.
        previous = await _published(client, bucket, job.track_id, say=lambda _: None)
        license = _license_for(job, previous)
        if license is None:
            say(f"{job.track_id} has no licence: edges serve it nowhere until `license` sets one")
        track = TrackInfo(
            track_id=job.track_id,
            title=job.title
            or tags.get("title", "")[:MAX_TEXT]
            or (previous.title if previous else "")
            or job.source.stem[:MAX_TEXT],
            artist=job.artist
            or tags.get("artist", "")[:MAX_TEXT]
            or (previous.artist if previous else ""),
            license=license,
        )
        result = await publish_track(
            client, bucket, track, files, part_bytes=part_bytes, previous=previous
        )
    pruned: list[str] = []
    prune_error = None
    if job.prune:
        try:
            pruned = await prune(client, bucket, result.manifest)
        except (BotoCoreError, ClientError, OSError) as exc:
            prune_error = str(exc)
    return IngestResult(result.manifest, result.uploaded, result.unchanged, pruned, prune_error)


def _license_for(job: IngestJob, previous: Manifest | None) -> License | None:
    current = previous.license if previous else None
    return current if job.license.is_empty else job.license.apply(current)
