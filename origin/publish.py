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
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise
    return int(head["ContentLength"])


def measured_kbps(size: int, duration_s: float) -> float:
    return round(size * 8 / duration_s / 1000, 1) if duration_s > 0 else 0.0


async def publish_track(
    client: Any,
    bucket: str,
    track: TrackInfo,
    files: list[RenditionFile],
    *,
    part_bytes: int,
    previous: Manifest | None = None,
) -> PublishResult:
    """Upload ``files`` that the bucket lacks, then write the manifest unless it is unchanged."""
    renditions: dict[str, Rendition] = {}
    uploaded: list[str] = []
    for file in files:
        content_hash = await asyncio.to_thread(_sha256, file.path)
        key = layout.audio_key(track.track_id, file.name, content_hash, file.extension)
        size = (await asyncio.to_thread(file.path.stat)).st_size
        if await object_size(client, bucket, key) != size:
            await upload_file(
                client,
                bucket,
                key,
                file.path,
                content_type=file.content_type,
                part_bytes=part_bytes,
            )
            uploaded.append(key)
        renditions[file.name] = Rendition(
            name=file.name,
            key=key,
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
    manifest = Manifest(
        track_id=track.track_id,
        title=track.title,
        artist=track.artist,
        duration_s=max((r.duration_s for r in renditions.values()), default=0.0),
        published_at=datetime.now(UTC).replace(microsecond=0),
        renditions=renditions,
        license=track.license,
    )
    if previous is not None and previous.same_content(manifest):
        return PublishResult(previous, uploaded, unchanged=True)
    await write_manifest(client, bucket, manifest)
    return PublishResult(manifest, uploaded)


async def write_manifest(client: Any, bucket: str, manifest: Manifest) -> None:
    """Validate and upload the manifest: the single write that publishes (or changes) a track."""
    body = manifest.to_json()
    await client.put_object(
        Bucket=bucket,
        Key=layout.manifest_key(manifest.track_id),
        Body=body,
        ContentType="application/json",
        ContentMD5=content_md5(body),
    )
