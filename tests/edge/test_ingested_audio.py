"""The edge serving what ``encore-origin ingest`` published: the client view of the manifest,
and real players (ffmpeg) reading and seeking over HTTP."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from origin.ingest import IngestJob, ingest
from origin.ladder import parse_ladder
from origin.license import LicenseChange
from origin.manifest import Manifest
from origin.s3 import open_s3_client
from tests.conftest import S3Target, make_settings
from tests.support.audio import decode, make_source
from tests.support.edge_server import EdgeServer

SECONDS = 30
LADDER = parse_ladder(["vorbis:96", "vorbis:160", "vorbis:320", "opus:64"])


@pytest.fixture(scope="module")
def ingested(s3: S3Target, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    source = make_source(tmp_path_factory.mktemp("edge-ingest") / "track.flac", SECONDS)
    job = IngestJob(
        source=source,
        track_id=f"played-{uuid.uuid4().hex[:8]}",
        title="Played",
        license=LicenseChange(allow=("*",)),
    )

    async def run() -> Manifest:
        settings = make_settings(s3.endpoint_url, s3.bucket)
        async with open_s3_client(settings.origin) as client:
            result = await ingest(
                client, s3.bucket, job, ladder=LADDER, part_bytes=settings.ingest.part_bytes
            )
            return result.manifest

    return asyncio.run(run())


def test_client_view_carries_codecs_bitrates_seek_tables_and_duration(
    edge: EdgeServer, ingested: Manifest
) -> None:
    reply = edge.get(f"/v1/tracks/{ingested.track_id}")
    assert reply.status == 200
    view = json.loads(reply.body)
    assert view["duration_s"] == pytest.approx(SECONDS, abs=0.05)
    by_name = {r["name"]: r for r in view["renditions"]}
    assert set(by_name) == {"96", "160", "320", "64"}
    assert [r["name"] for r in view["renditions"]] == ["64", "96", "160", "320"]  # codec, kbps
    for name, rendition in ingested.renditions.items():
        shown = by_name[name]
        assert shown["codec"] == rendition.codec
        assert shown["content_type"] == rendition.content_type
        assert shown["bitrate_kbps"] == rendition.bitrate_kbps
        assert shown["measured_kbps"] == rendition.measured_kbps
        assert shown["size"] == rendition.size
        assert shown["seek_table"] == rendition.seek_table.to_doc()
        assert len(shown["seek_table"]["points"]) >= SECONDS


@pytest.mark.parametrize("name", ["160", "64"])
def test_ffmpeg_plays_and_seeks_over_http(edge: EdgeServer, ingested: Manifest, name: str) -> None:
    url = f"http://127.0.0.1:{edge.port}/v1/tracks/{ingested.track_id}/{name}"
    seconds, errors = decode(url=url)
    assert errors == ""
    assert seconds == pytest.approx(SECONDS, abs=0.1)
    seconds, errors = decode(url=url, seek_s=17.5)
    assert errors == ""
    assert seconds == pytest.approx(SECONDS - 17.5, abs=0.6)


def test_a_player_seeks_with_the_table_and_two_range_requests(
    edge: EdgeServer, ingested: Manifest
) -> None:
    rendition = ingested.renditions["320"]
    path = f"/v1/tracks/{ingested.track_id}/320"
    header_end = rendition.seek_table.header_bytes
    time_s, offset = next(p for p in rendition.seek_table.points() if p[0] >= 20)
    header = edge.get(path, Range=f"bytes=0-{header_end - 1}")
    tail = edge.get(path, Range=f"bytes={offset}-")
    assert (header.status, tail.status) == (206, 206)
    seconds, errors = decode(header.body + tail.body)
    assert errors == ""
    assert seconds == pytest.approx(SECONDS - time_s, abs=0.15)
