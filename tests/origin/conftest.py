"""A real transcode shared by the tests that inspect renditions, and ``encore-origin`` as a
subprocess against the real S3 server."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError

from origin import layout
from origin.ladder import parse_ladder
from origin.manifest import Manifest, parse_manifest
from origin.publish import RenditionFile
from origin.s3 import open_s3_client
from origin.transcode import transcode
from tests.conftest import S3Target, setup_settings
from tests.support.audio import make_source

SOURCE_SECONDS = 20
LADDER = parse_ladder(["vorbis:96", "vorbis:160", "vorbis:320", "opus:64"])


@pytest.fixture(scope="session")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RenditionFile]:
    """Renditions ``96``, ``160``, ``320`` (Vorbis) and ``64`` (Opus) of a 20 s tone."""
    workdir = tmp_path_factory.mktemp("encoded")
    source = make_source(workdir / "source.flac", SOURCE_SECONDS)
    files = asyncio.run(transcode(source, workdir, LADDER))
    return {file.name: file for file in files}


# What the AWS chain reads from the environment besides the key pair: a command given a key
# pair of its own must not pick up a session token meant for another server.
_AMBIENT_ONLY = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE")


@dataclass(frozen=True)
class OriginCli:
    """``python -m origin`` as an operator runs it, pointed at one S3 endpoint and bucket.

    ``credentials`` (``LocalS3.credentials_env()`` of a server a test starts itself) are used by
    the command and by the in-process reads below; empty means the ambient AWS chain, which the
    session's ``s3`` fixture sets for its own server (rclone, or ENCORE_TEST_S3_ENDPOINT's)."""

    endpoint_url: str
    bucket: str
    credentials: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        base = {
            "ENCORE_ORIGIN__ENDPOINT_URL": self.endpoint_url,
            "ENCORE_ORIGIN__BUCKET": self.bucket,
        }
        inherited = dict(os.environ)
        if self.credentials:
            for name in _AMBIENT_ONLY:
                inherited.pop(name, None)
        return subprocess.run(
            [sys.executable, "-m", "origin", *args],
            capture_output=True,
            text=True,
            timeout=300,
            env={**inherited, **self.credentials, **base, **env},
            check=False,
        )

    def _client(self) -> AbstractAsyncContextManager[Any]:
        # The test's own look at the bucket: a loaded machine's slow connect must not fail it.
        settings = setup_settings(self.endpoint_url, self.bucket)
        pair = None
        if self.credentials:
            pair = (
                self.credentials["AWS_ACCESS_KEY_ID"],
                self.credentials["AWS_SECRET_ACCESS_KEY"],
            )
        return open_s3_client(settings.origin, credentials=pair)

    def objects(self) -> dict[str, tuple[str, str]]:
        """Every object in the bucket: key -> (ETag, Last-Modified)."""

        async def run() -> dict[str, tuple[str, str]]:
            async with self._client() as client:
                found = {}
                paginator = client.get_paginator("list_objects_v2")
                async for page in paginator.paginate(Bucket=self.bucket):
                    for item in page.get("Contents", []):
                        found[item["Key"]] = (item["ETag"], str(item["LastModified"]))
                return found

        return asyncio.run(run())

    def manifest_bytes(self, track_id: str) -> bytes | None:
        async def run() -> bytes | None:
            async with self._client() as client:
                try:
                    response = await client.get_object(
                        Bucket=self.bucket, Key=layout.manifest_key(track_id)
                    )
                except ClientError:
                    return None
                async with response["Body"] as body:
                    return bytes(await body.read())

        return asyncio.run(run())

    def manifest(self, track_id: str) -> Manifest:
        raw = self.manifest_bytes(track_id)
        assert raw is not None, f"{track_id} is not published"
        return parse_manifest(raw, track_id)


@pytest.fixture(scope="session")
def origin_cli(s3: S3Target) -> OriginCli:
    return OriginCli(s3.endpoint_url, s3.bucket)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserting there is exactly one)."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.match(r"encore-origin( [a-z-]+)?: ", lines[0]), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]
