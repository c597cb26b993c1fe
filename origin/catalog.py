"""The catalogue as the bucket holds it: read, list, relicense and remove tracks.

Every change that edges can see goes through the manifest: relicensing rewrites only the
manifest, removal deletes the manifest before the audio, so no edge ever finds a manifest
whose audio is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from origin import layout
from origin.license import LicenseChange
from origin.manifest import MAX_MANIFEST_BYTES, Manifest, ManifestError, parse_manifest
from origin.publish import write_manifest
from origin.s3 import http_status

MANIFEST_NAME = "manifest.json"
LIST_CONCURRENCY = 16


class TrackNotFound(LookupError):
    """No manifest (and for ``remove``, no object at all) under the track's prefix."""


class BucketUnusable(Exception):
    """The bucket does not exist or these credentials may not use it."""


async def check_bucket(client: Any, bucket: str) -> None:
    """Fail early, before any transcoding, if the bucket is missing or not ours to use."""
    try:
        await client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if http_status(exc) == 404:
            raise BucketUnusable(f"bucket {bucket!r} does not exist") from None
        if http_status(exc) == 403:
            raise BucketUnusable(f"access to bucket {bucket!r} is denied") from None
        raise


async def read_manifest(client: Any, bucket: str, track_id: str) -> Manifest | None:
    """The published manifest of ``track_id``; None if there is none; ManifestError if bad."""
    try:
        response = await client.get_object(Bucket=bucket, Key=layout.manifest_key(track_id))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            raise BucketUnusable(f"bucket {bucket!r} does not exist") from None
        if http_status(exc) == 404:
            return None
        raise
    async with response["Body"] as body:
        size = int(response.get("ContentLength", 0))
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"manifest is {size} bytes, more than {MAX_MANIFEST_BYTES}")
        raw = await body.read()
    return parse_manifest(raw, track_id)


async def object_keys(client: Any, bucket: str, prefix: str) -> AsyncIterator[str]:
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"]


async def track_ids(client: Any, bucket: str) -> list[str]:
    """Ids of every track that has a manifest, sorted."""
    found = []
    async for key in object_keys(client, bucket, layout.TRACKS_PREFIX):
        track_id, _, name = key[len(layout.TRACKS_PREFIX) :].partition("/")
        if name == MANIFEST_NAME and layout.is_track_id(track_id):
            found.append(track_id)
    return sorted(found)


async def list_manifests(
    client: Any, bucket: str
) -> list[tuple[str, Manifest | ManifestError | None]]:
    """Every track with its manifest (or why it cannot be read), a few fetches at a time."""
    ids = await track_ids(client, bucket)
    limit = asyncio.Semaphore(LIST_CONCURRENCY)

    async def fetch(track_id: str) -> Manifest | ManifestError | None:
        async with limit:
            try:
                return await read_manifest(client, bucket, track_id)
            except ManifestError as exc:
                return exc

    results = await asyncio.gather(*(fetch(track_id) for track_id in ids))
    return list(zip(ids, results, strict=True))


async def relicense(client: Any, bucket: str, track_id: str, change: LicenseChange) -> Manifest:
    """Rewrite only the manifest, with the licence changed; the audio objects stay untouched."""
    current = await read_manifest(client, bucket, track_id)
    if current is None:
        raise TrackNotFound(f"track {track_id!r} is not published")
    updated = replace(current, license=change.apply(current.license))
    if updated != current:
        await write_manifest(client, bucket, updated)
    return updated


async def remove_track(client: Any, bucket: str, track_id: str) -> list[str]:
    """Delete the manifest first (unpublishing the track), then every other object."""
    prefix = layout.track_prefix(track_id)
    manifest_key = layout.manifest_key(track_id)
    keys = [key async for key in object_keys(client, bucket, prefix)]
    if not keys:
        raise TrackNotFound(f"track {track_id!r} has no objects in the bucket")
    ordered = [key for key in keys if key == manifest_key] + [k for k in keys if k != manifest_key]
    for key in ordered:
        await client.delete_object(Bucket=bucket, Key=key)
    return ordered


async def prune(client: Any, bucket: str, manifest: Manifest) -> list[str]:
    """Delete objects under the track's prefix that ``manifest`` does not refer to."""
    keep = {layout.manifest_key(manifest.track_id)} | {r.key for r in manifest.renditions.values()}
    prefix = layout.track_prefix(manifest.track_id)
    removed = [key async for key in object_keys(client, bucket, prefix) if key not in keep]
    for key in removed:
        await client.delete_object(Bucket=bucket, Key=key)
    return removed
