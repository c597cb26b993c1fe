"""Upload one local file to one S3 key: a single PUT, or a multipart upload when it is large.

Every request carries Content-MD5, so the server rejects bytes damaged on the way. A multipart
upload that fails is aborted, so no half-object and no orphaned parts are left behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)


def content_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _read_at(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read(length)


async def upload_file(
    client: Any, bucket: str, key: str, path: Path, *, content_type: str, part_bytes: int
) -> None:
    size = (await asyncio.to_thread(path.stat)).st_size
    if size <= part_bytes:
        body = await asyncio.to_thread(path.read_bytes)
        await client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            ContentMD5=content_md5(body),
        )
        return
    created = await client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)
    upload_id = created["UploadId"]
    try:
        parts = []
        for number, offset in enumerate(range(0, size, part_bytes), start=1):
            body = await asyncio.to_thread(_read_at, path, offset, part_bytes)
            part = await client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ContentMD5=content_md5(body),
            )
            parts.append({"PartNumber": number, "ETag": part["ETag"]})
        await client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        await asyncio.shield(_abort(client, bucket, key, upload_id))
        raise


async def _abort(client: Any, bucket: str, key: str, upload_id: str) -> None:
    # Best effort: when the server is gone the abort fails too, and the original error matters.
    with contextlib.suppress(BotoCoreError, ClientError, OSError):
        await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        return
    log.warning(
        "could not abort multipart upload %s of %s; the bucket keeps its parts", upload_id, key
    )
