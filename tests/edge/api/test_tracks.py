"""The HTTP surface of /v1/tracks, end to end through a real edge and a real S3 server."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from edge.access.signing import signed_query
from origin.license import License
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.edge_server import EdgeServer, Reply

SIGNING_SECRET = "tracks-secret-0123456789"
SIZE = 5 * TEST_SLICE_BYTES + 1234  # not a multiple of the slice size


def _object(size: int = SIZE) -> bytes:
    return os.urandom(size)


def _error(reply: Reply) -> str:
    assert (reply.header("Content-Type") or "").startswith("application/json")
    doc = json.loads(reply.body)
    assert set(doc) == {"error", "message"}
    assert "Traceback" not in reply.body.decode()
    return str(doc["error"])


@pytest.fixture
def track(catalog: Catalog) -> tuple[str, bytes]:
    data = _object()
    manifest = catalog.publish({"160": data})
    return manifest.track_id, data


def test_manifest_gives_the_client_view(edge: EdgeServer, catalog: Catalog) -> None:
    manifest = catalog.publish({"96": _object(1000), "320": _object(3000)})
    reply = edge.get(f"/v1/tracks/{manifest.track_id}")
    assert reply.status == 200
    doc = json.loads(reply.body)
    assert doc["track_id"] == manifest.track_id
    assert [r["name"] for r in doc["renditions"]] == ["96", "320"]
    assert doc["duration_s"] == 10.0
    assert doc["renditions"][1] == {
        "name": "320",
        "url": f"/v1/tracks/{manifest.track_id}/320",
        "content_type": "audio/ogg; codecs=vorbis",
        "codec": "vorbis",
        "bitrate_kbps": 320,
        "measured_kbps": 2.4,
        "size": 3000,
        "sample_rate": 44_100,
        "channels": 2,
        "duration_s": 10.0,
        "seek_table": {"header_bytes": 0, "points": [[0.0, 0]]},
    }
    for private in ('"key"', "sha256", "license"):  # bucket keys, hashes and licences stay inside
        assert private not in reply.body.decode()
    assert reply.header("Access-Control-Allow-Origin") == "*"
    etag = reply.header("ETag")
    assert etag is not None
    again = edge.get(f"/v1/tracks/{manifest.track_id}", If_None_Match=etag)
    assert again.status == 304
    assert again.body == b""
    head = edge.request("HEAD", f"/v1/tracks/{manifest.track_id}")
    assert head.status == 200
    assert head.body == b""
    assert head.header("Content-Length") == str(len(reply.body))


def test_whole_rendition_and_cache_headers(edge: EdgeServer, track: tuple[str, bytes]) -> None:
    track_id, data = track
    first = edge.get(f"/v1/tracks/{track_id}/160")
    assert first.status == 200
    assert first.body == data
    assert first.header("Content-Length") == str(len(data))
    assert first.header("Accept-Ranges") == "bytes"
    assert first.header("Content-Type") == "audio/ogg; codecs=vorbis"
    assert "immutable" in (first.header("Cache-Control") or "")
    assert (first.header("X-Cache"), first.header("X-Cache-Tier")) == ("MISS", "origin")
    assert "X-Cache" in (first.header("Access-Control-Expose-Headers") or "")
    second = edge.get(f"/v1/tracks/{track_id}/160")
    assert second.body == data
    assert (second.header("X-Cache"), second.header("X-Cache-Tier")) == ("HIT", "memory")
    assert second.header("ETag") == first.header("ETag")


@pytest.mark.parametrize(
    ("licence", "signed", "cache_control"),
    [
        (License(allow=("*",)), False, "public, max-age=31536000, immutable"),
        (License(allow=("*",)), True, "private, max-age=31536000, immutable"),
        (License(allow=("SE", "NO")), False, "private, max-age=31536000, immutable"),
        (License(allow=("*",), deny=("US",)), False, "private, max-age=31536000, immutable"),
        (
            License(allow=("*",), not_after=datetime(2100, 1, 1, tzinfo=UTC)),
            False,
            "private, max-age=31536000, immutable",
        ),
    ],
    ids=["everywhere", "signed", "regional", "denied-somewhere", "windowed"],
)
def test_only_audio_anyone_may_fetch_is_cacheable_by_shared_caches(
    catalog: Catalog,
    start_edge: Callable[..., EdgeServer],
    licence: License,
    signed: bool,
    cache_control: str,
) -> None:
    """A shared cache in front of the edge would hand bytes to clients the edge refuses."""
    track_id = catalog.publish({"160": _object(100)}, license=licence).track_id
    path = f"/v1/tracks/{track_id}/160"
    if signed:
        edge = start_edge(auth={"signing_keys": {"k1": SIGNING_SECRET}})
        path += "?" + signed_query(SIGNING_SECRET, "k1", path, int(time.time()) + 60)
    else:
        edge = start_edge()
    for method in ("GET", "HEAD"):
        reply = edge.request(method, path, {"Range": "bytes=0-9"})
        assert (reply.status, reply.header("Cache-Control")) == (206, cache_control)


def test_partial_hit_is_reported_as_partial(edge: EdgeServer, track: tuple[str, bytes]) -> None:
    track_id, data = track
    warm = edge.get(f"/v1/tracks/{track_id}/160", Range=f"bytes=0-{TEST_SLICE_BYTES - 1}")
    assert warm.header("X-Cache") == "MISS"
    both = edge.get(f"/v1/tracks/{track_id}/160", Range=f"bytes=100-{TEST_SLICE_BYTES + 99}")
    assert both.status == 206
    assert both.body == data[100 : TEST_SLICE_BYTES + 100]
    assert (both.header("X-Cache"), both.header("X-Cache-Tier")) == ("PARTIAL", "origin")


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-20", 10, 20),
        (f"bytes={SIZE - 10}-", SIZE - 10, SIZE - 1),
        ("bytes=-500", SIZE - 500, SIZE - 1),
        (f"bytes=-{SIZE * 2}", 0, SIZE - 1),
        (f"bytes=100-{SIZE * 3}", 100, SIZE - 1),
        (
            f"bytes={TEST_SLICE_BYTES - 3}-{TEST_SLICE_BYTES * 3 + 2}",
            TEST_SLICE_BYTES - 3,
            TEST_SLICE_BYTES * 3 + 2,
        ),
        (" BYTES = 5-9", 5, 9),
    ],
)
def test_single_ranges(
    edge: EdgeServer, track: tuple[str, bytes], spec: str, start: int, end: int
) -> None:
    track_id, data = track
    for method in ("GET", "HEAD"):
        reply = edge.request(method, f"/v1/tracks/{track_id}/160", {"Range": spec})
        assert reply.status == 206, spec
        assert reply.header("Content-Range") == f"bytes {start}-{end}/{SIZE}"
        assert reply.header("Content-Length") == str(end - start + 1)
        assert reply.body == (data[start : end + 1] if method == "GET" else b"")


def test_multiple_ranges_are_multipart(edge: EdgeServer, track: tuple[str, bytes]) -> None:
    track_id, data = track
    reply = edge.get(f"/v1/tracks/{track_id}/160", Range="bytes=50000-50009, 0-4,-3")
    assert reply.status == 206
    assert reply.header("Content-Length") == str(len(reply.body))
    assert reply.multipart_parts() == [
        (f"bytes 50000-50009/{SIZE}", data[50000:50010]),
        (f"bytes 0-4/{SIZE}", data[0:5]),
        (f"bytes {SIZE - 3}-{SIZE - 1}/{SIZE}", data[-3:]),
    ]


def test_overlapping_ranges_are_coalesced(edge: EdgeServer, track: tuple[str, bytes]) -> None:
    track_id, data = track
    reply = edge.get(f"/v1/tracks/{track_id}/160", Range="bytes=0-99,50-149,150-199")
    assert reply.status == 206
    assert reply.header("Content-Range") == f"bytes 0-199/{SIZE}"
    assert reply.body == data[:200]


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        (f"bytes={SIZE}-", "range_not_satisfiable"),
        (f"bytes={SIZE + 5}-{SIZE + 10}", "range_not_satisfiable"),
        ("bytes=-0", "range_not_satisfiable"),
        ("bytes=", "invalid_range"),
        ("bytes=abc", "invalid_range"),
        ("bytes=5-1", "invalid_range"),
        ("bytes=1-2-3", "invalid_range"),
        ("bytes=--5", "invalid_range"),
        ("bytes=0x10-20", "invalid_range"),
        ("bytes=" + "9" * 40 + "-", "invalid_range"),
        ("bytes=" + ",".join(f"{i}-{i}" for i in range(0, 200, 2)), "too_many_ranges"),
    ],
)
def test_bad_ranges_get_416(
    edge: EdgeServer, track: tuple[str, bytes], spec: str, code: str
) -> None:
    track_id, _ = track
    reply = edge.get(f"/v1/tracks/{track_id}/160", Range=spec)
    assert reply.status == 416, spec
    assert reply.header("Content-Range") == f"bytes */{SIZE}"
    assert _error(reply) == code


def test_control_bytes_in_headers_are_refused_by_the_http_parser(
    edge: EdgeServer, track: tuple[str, bytes]
) -> None:
    # Not a valid HTTP message at all: aiohttp's parser answers 400 before any routing.
    track_id, _ = track
    reply = edge.get(f"/v1/tracks/{track_id}/160", Range="bytes=\x00-1")
    assert reply.status == 400
    assert b"Traceback" not in reply.body


def test_other_range_units_are_ignored(edge: EdgeServer, track: tuple[str, bytes]) -> None:
    track_id, data = track
    reply = edge.get(f"/v1/tracks/{track_id}/160", Range="items=0-5")
    assert reply.status == 200
    assert reply.body == data


def test_if_range(edge: EdgeServer, track: tuple[str, bytes]) -> None:
    track_id, data = track
    path = f"/v1/tracks/{track_id}/160"
    head = edge.request("HEAD", path)
    etag, modified = head.header("ETag"), head.header("Last-Modified")
    assert etag
    assert modified
    assert edge.get(path, Range="bytes=0-9", If_Range=etag).status == 206
    assert edge.get(path, Range="bytes=0-9", If_Range=modified).status == 206
    stale = edge.get(path, Range="bytes=0-9", If_Range='"some-older-version"')
    assert (stale.status, stale.body) == (200, data)
    assert edge.get(path, Range="bytes=0-9", If_Range="W/" + etag).status == 200
    assert edge.get(path, Range="bytes=0-9", If_Range="Mon, 01 Jan 2001 00:00:00 GMT").status == 200
    assert edge.get(path, Range="bytes=0-9", If_Range="not a date").status == 200


def test_conditional_get(edge: EdgeServer, track: tuple[str, bytes]) -> None:
    track_id, _ = track
    path = f"/v1/tracks/{track_id}/160"
    etag = edge.request("HEAD", path).header("ETag")
    assert etag
    for value in (etag, f'"x", {etag}', "W/" + etag, "*"):
        reply = edge.get(path, If_None_Match=value)
        assert reply.status == 304, value
        assert reply.body == b""
        assert reply.header("ETag") == etag
    assert edge.get(path, If_None_Match='"other"').status == 200
    assert edge.request("HEAD", path, {"If-None-Match": etag}).status == 304
    assert edge.get(path, If_Modified_Since="Fri, 01 Jan 2100 00:00:00 GMT").status == 304
    assert edge.get(path, If_Match='"other"').status == 412
    assert edge.get(path, If_Match=etag, Range="bytes=0-0").status == 206


def test_cors_preflight(edge: EdgeServer, track: tuple[str, bytes]) -> None:
    track_id, _ = track
    reply = edge.request(
        "OPTIONS",
        f"/v1/tracks/{track_id}/160",
        {"Origin": "https://player.example", "Access-Control-Request-Headers": "range"},
    )
    assert reply.status == 204
    assert reply.header("Access-Control-Allow-Origin") == "*"
    assert "Range" in (reply.header("Access-Control-Allow-Headers") or "")
    assert "GET" in (reply.header("Access-Control-Allow-Methods") or "")


def test_empty_object(edge: EdgeServer, catalog: Catalog) -> None:
    manifest = catalog.publish({"96": b""})
    path = f"/v1/tracks/{manifest.track_id}/96"
    whole = edge.get(path)
    assert (whole.status, whole.body, whole.header("Content-Length")) == (200, b"", "0")
    ranged = edge.get(path, Range="bytes=0-")
    assert (ranged.status, ranged.header("Content-Range")) == (416, "bytes */0")


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/tracks/no-such-track", 404, "track_not_found"),
        ("/v1/tracks/no-such-track/160", 404, "track_not_found"),
        ("/v1/tracks/bad.id", 400, "invalid_track_id"),
        ("/v1/tracks/%2e%2e", 400, "invalid_track_id"),
        ("/v1/tracks/%2e%2e/160", 400, "invalid_track_id"),
        ("/v1/tracks/a%00b/160", 400, "invalid_track_id"),
        ("/v1/tracks/a%2Fb/160", 400, "invalid_track_id"),
        ("/v1/tracks/" + "a" * 129, 400, "invalid_track_id"),
        ("/v1/tracks/ok/%2e%2e", 400, "invalid_rendition"),
        ("/v1/tracks/ok/" + "9" * 33, 400, "invalid_rendition"),
        ("/v1/tracks/ok/96%20", 400, "invalid_rendition"),
        ("/v1/tracks/ok/160/extra", 404, "not_found"),
        ("/v1/nothing", 404, "not_found"),
    ],
)
def test_bad_paths_get_json_errors(edge: EdgeServer, path: str, status: int, code: str) -> None:
    reply = edge.get(path)
    assert reply.status == status, path
    assert _error(reply) == code


def test_unknown_rendition(edge: EdgeServer, track: tuple[str, bytes]) -> None:
    track_id, _ = track
    reply = edge.get(f"/v1/tracks/{track_id}/999")
    assert reply.status == 404
    assert _error(reply) == "rendition_not_found"


def test_wrong_method_is_a_json_405(edge: EdgeServer, track: tuple[str, bytes]) -> None:
    track_id, _ = track
    reply = edge.request("POST", f"/v1/tracks/{track_id}/160")
    assert reply.status == 405
    assert _error(reply) == "method_not_allowed"
    assert "GET" in (reply.header("Allow") or "")


def test_invalid_manifest_is_a_502_with_a_clear_log_line(
    edge: EdgeServer, catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    catalog.put_raw("tracks/broken-manifest/manifest.json", b'{"schema": 1, "track_id": 7}')
    with caplog.at_level(logging.ERROR, logger="edge.upstream.manifests"):
        reply = edge.get("/v1/tracks/broken-manifest/160")
    assert reply.status == 502
    assert _error(reply) == "bad_manifest"
    assert [r.getMessage() for r in caplog.records] == [
        "rejecting manifest of track broken-manifest: manifest: 'title' is a required property"
    ]


def test_health_and_readiness(edge: EdgeServer) -> None:
    assert edge.get("/healthz").status == 200
    ready = edge.get("/readyz")
    assert ready.status == 200
    assert json.loads(ready.body) == {"status": "ready"}
