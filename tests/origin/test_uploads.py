"""Uploads against the real S3 server: single PUT or multipart, with Content-MD5, and a failed
multipart upload aborted rather than left behind."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from origin.s3 import open_s3_client
from origin.uploads import upload_file
from tests.conftest import S3Target, setup_settings
from tests.support.tcp_proxy import SeenRequest, TcpProxy

PART = 5 * 1024 * 1024


async def _upload(endpoint: str, bucket: str, key: str, path: Path) -> None:
    settings = setup_settings(endpoint, bucket)
    async with open_s3_client(settings.origin) as client:
        await upload_file(client, bucket, key, path, content_type="audio/ogg", part_bytes=PART)


async def _read(s3: S3Target, key: str) -> bytes:
    settings = setup_settings(s3.endpoint_url, s3.bucket)
    async with open_s3_client(settings.origin) as client:
        response = await client.get_object(Bucket=s3.bucket, Key=key)
        async with response["Body"] as body:
            return bytes(await body.read())


async def _open_uploads(s3: S3Target, key: str) -> list[str]:
    settings = setup_settings(s3.endpoint_url, s3.bucket)
    async with open_s3_client(settings.origin) as client:
        listing = await client.list_multipart_uploads(Bucket=s3.bucket, Prefix=key)
        return [upload["UploadId"] for upload in listing.get("Uploads", [])]


def test_small_file_is_one_put_with_content_md5(
    s3: S3Target, proxy: TcpProxy, tmp_path: Path
) -> None:
    path = tmp_path / "small.ogg"
    path.write_bytes(os.urandom(100_000))
    asyncio.run(_upload(proxy.url, s3.bucket, "uploads/small.ogg", path))
    md5 = base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()
    assert [(r.method, r.headers.get("content-md5")) for r in proxy.requests] == [("PUT", md5)]
    assert asyncio.run(_read(s3, "uploads/small.ogg")) == path.read_bytes()


def test_large_file_goes_up_in_parts(s3: S3Target, proxy: TcpProxy, tmp_path: Path) -> None:
    path = tmp_path / "large.ogg"
    path.write_bytes(os.urandom(2 * PART + 12345))
    asyncio.run(_upload(proxy.url, s3.bucket, "uploads/large.ogg", path))
    methods = [r.method for r in proxy.requests]
    assert methods == ["POST", "PUT", "PUT", "PUT", "POST"]  # create, 3 parts, complete
    assert all("content-md5" in r.headers for r in proxy.requests if r.method == "PUT")
    stored = asyncio.run(_read(s3, "uploads/large.ogg"))
    assert hashlib.sha256(stored).digest() == hashlib.sha256(path.read_bytes()).digest()


def test_a_failed_multipart_upload_is_aborted(
    s3: S3Target, proxy: TcpProxy, tmp_path: Path
) -> None:
    path = tmp_path / "doomed.ogg"
    path.write_bytes(os.urandom(2 * PART + 1))

    def drop_second_part(request: SeenRequest) -> bool:
        return "partNumber=2" not in request.path

    proxy.faults.on_request = drop_second_part
    with pytest.raises((BotoCoreError, ClientError)):
        asyncio.run(_upload(proxy.url, s3.bucket, "uploads/doomed.ogg", path))
    assert proxy.requests[-1].method == "DELETE"
    assert "uploadId=" in proxy.requests[-1].path
    assert asyncio.run(_open_uploads(s3, "uploads/doomed.ogg")) == []
    with pytest.raises(ClientError):
        asyncio.run(_read(s3, "uploads/doomed.ogg"))


def test_open_uploads_are_visible_so_the_check_above_can_fail(s3: S3Target) -> None:
    async def start_one() -> str:
        settings = setup_settings(s3.endpoint_url, s3.bucket)
        async with open_s3_client(settings.origin) as client:
            created = await client.create_multipart_upload(Bucket=s3.bucket, Key="uploads/open")
            return str(created["UploadId"])

    upload_id = asyncio.run(start_one())
    assert asyncio.run(_open_uploads(s3, "uploads/open")) == [upload_id]
