"""Publish a track: upload its immutable audio objects, then write the manifest last.

Until the manifest is written no edge can see the track, so a failure part-way publishes nothing.
Audio keys are content-addressed: a key already in the bucket with the right size already holds
these bytes, so publishing the same audio again uploads nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from origin import layout
from origin.license import License
from origin.manifest import Manifest, Rendition
from origin.s3 import http_status
from origin.seek_table import SeekTable
from origin.uploads import content_md5, upload_file


@dataclass(frozen=True, slots=True)
class RenditionFile:
    """An encoded rendition on local disk, analysed and ready to upload."""

    name: str
    path: Path
    codec: str
    content_type: str
    extension: str
    bitrate_kbps: int
    sample_rate: int
    channels: int
    duration_s: float
    seek_table: SeekTable


@dataclass(frozen=True, slots=True)
class TrackInfo:
    track_id: str
    title: str
    artist: str
    license: License | None


@dataclass(slots=True)
class PublishResult:
    manifest: Manifest
    uploaded: list[str] = field(default_factory=list)  # keys this run wrote
    unchanged: bool = False  # the bucket already had this very manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


async def object_size(client: Any, bucket: str, key: str) -> int | None:
    """The size of ``key``, or None when there is no such object."""
    try:
        head = await client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if http_status(exc) == 404:
            return None
        raise
    return int(head["ContentLength"])


def measured_kbps(size: int, duration_s: float) -> float:
    return round(size * 8 / duration_s / 1000, 1) if duration_s > 0 else 0.0


async def _describe(track_id: str, file: RenditionFile) -> Rendition:
    content_hash = await asyncio.to_thread(_sha256, file.path)
    size = (await asyncio.to_thread(file.path.stat)).st_size
    return Rendition(
        name=file.name,
        key=layout.audio_key(track_id, file.name, content_hash, file.extension),
        content_type=file.content_type,
        codec=file.codec,
        bitrate_kbps=file.bitrate_kbps,
        measured_kbps=measured_kbps(size, file.duration_s),
        size=size,
        sha256=content_hash,
        sample_rate=file.sample_rate,
        channels=file.channels,
        duration_s=round(file.duration_s, 3),
        seek_table=file.seek_table,
    )


async def publish_track(
    client: Any,
    bucket: str,
    track: TrackInfo,
    files: list[RenditionFile],
    *,
    part_bytes: int,
    previous: Manifest | None = None,
) -> PublishResult:
    """Upload ``files`` that the bucket lacks, then write the manifest unless it is unchanged.

    The manifest is built and checked before the first upload, so a track whose manifest
    could never be written (too long for its seek tables, say) leaves nothing behind. Audio
    objects missing from the bucket are uploaded even when the manifest is unchanged, so
    re-ingesting repairs a deleted object.
    """
    renditions = {file.name: await _describe(track.track_id, file) for file in files}
    same_audio = previous is not None and dict(previous.renditions) == renditions
    manifest = Manifest(
        track_id=track.track_id,
        title=track.title,
        artist=track.artist,
        duration_s=max((r.duration_s for r in renditions.values()), default=0.0),
        # Publication time is the renditions' Last-Modified: it moves only with the audio.
        published_at=previous.published_at
        if previous is not None and same_audio
        else datetime.now(UTC).replace(microsecond=0),
        renditions=renditions,
        license=track.license,
    )
    body = manifest.to_json()
    uploaded: list[str] = []
    for file in files:
        rendition = renditions[file.name]
        if await object_size(client, bucket, rendition.key) != rendition.size:
            await upload_file(
                client,
                bucket,
                rendition.key,
                file.path,
                content_type=file.content_type,
                part_bytes=part_bytes,
            )
            uploaded.append(rendition.key)
    if previous is not None and previous.same_content(manifest):
        return PublishResult(previous, uploaded, unchanged=True)
    await _put_manifest(client, bucket, manifest.track_id, body)
    return PublishResult(manifest, uploaded)


async def write_manifest(client: Any, bucket: str, manifest: Manifest) -> None:
    """Validate and upload the manifest: the single write that publishes (or changes) a track."""
    await _put_manifest(client, bucket, manifest.track_id, manifest.to_json())


async def _put_manifest(client: Any, bucket: str, track_id: str, body: bytes) -> None:
    await client.put_object(
        Bucket=bucket,
        Key=layout.manifest_key(track_id),
        Body=body,
        ContentType="application/json",
        ContentMD5=content_md5(body),
    )
