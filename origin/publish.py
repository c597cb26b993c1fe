"""Publish a track: upload its immutable audio objects, then write the manifest last.

Until the manifest is written no edge can see the track, so a failure part-way publishes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from origin import layout
from origin.manifest import Manifest, Rendition


@dataclass(frozen=True, slots=True)
class EncodedRendition:
    """A rendition file on local disk, ready to upload."""

    name: str
    path: Path
    codec: str
    content_type: str
    extension: str
    bitrate_kbps: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


async def _exists(client: Any, bucket: str, key: str, size: int) -> bool:
    try:
        head = await client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return False
        raise
    return int(head["ContentLength"]) == size


async def publish_track(
    client: Any,
    bucket: str,
    *,
    track_id: str,
    title: str,
    artist: str,
    duration_s: float,
    renditions: list[EncodedRendition],
) -> Manifest:
    published: dict[str, Rendition] = {}
    for encoded in renditions:
        content_hash = await asyncio.to_thread(_sha256, encoded.path)
        key = layout.audio_key(track_id, encoded.name, content_hash, encoded.extension)
        size = encoded.path.stat().st_size
        # Content-addressed: an object already there under this key has these very bytes.
        if not await _exists(client, bucket, key, size):
            body = await asyncio.to_thread(encoded.path.read_bytes)
            await client.put_object(
                Bucket=bucket, Key=key, Body=body, ContentType=encoded.content_type
            )
        published[encoded.name] = Rendition(
            name=encoded.name,
            key=key,
            content_type=encoded.content_type,
            codec=encoded.codec,
            bitrate_kbps=encoded.bitrate_kbps,
            size=size,
            sha256=content_hash,
        )
    manifest = Manifest(
        track_id=track_id,
        title=title,
        artist=artist,
        duration_s=duration_s,
        published_at=datetime.now(UTC).replace(microsecond=0),
        renditions=published,
    )
    await client.put_object(
        Bucket=bucket,
        Key=layout.manifest_key(track_id),
        Body=manifest.to_json(),
        ContentType="application/json",
    )
    return manifest
