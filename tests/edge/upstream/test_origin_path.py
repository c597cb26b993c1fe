"""What the edge asks of the origin, counted at the origin side by a TCP proxy, and how origin
faults reach the player: as JSON errors that never name a bucket key (the key goes to the
edge's log instead)."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable

import pytest

from origin import layout
from origin.manifest import MAX_MANIFEST_BYTES
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.edge_server import Counters, EdgeServer
from tests.support.tcp_proxy import TcpProxy

SLICE = TEST_SLICE_BYTES


def _ranges_asked(proxy: TcpProxy, key_part: str) -> list[tuple[int, int]]:
    asked = []
    for request in proxy.gets():
        if key_part in request.path and "range" in request.headers:
            match = re.fullmatch(r"bytes=(\d+)-(\d+)", request.headers["range"])
            assert match, request.headers["range"]
            asked.append((int(match[1]), int(match[2])))
    return asked


def _wait_cached(edge: EdgeServer, path: str, byte_range: str) -> None:
    """HEAD reports what a GET would read, so it shows when a fill has been committed."""
    deadline = time.monotonic() + 10
    while edge.request("HEAD", path, {"Range": byte_range}).header("X-Cache") != "HIT":
        assert time.monotonic() < deadline, f"{byte_range} never became cached"
        time.sleep(0.01)


def test_cold_range_fetches_only_the_covering_slices(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    size = 40 * SLICE + 777  # a "large" object of 41 slices
    data = os.urandom(size)
    manifest = catalog.publish({"320": data})
    key = manifest.renditions["320"].key
    edge = start_edge(origin_url=proxy.url)
    path = f"/v1/tracks/{manifest.track_id}/320"

    # Slices 10, 11 and 12 cover this range; they are adjacent, so one GET.
    reply = edge.get(path, Range=f"bytes={10 * SLICE + 5}-{12 * SLICE + 9}")
    assert reply.status == 206
    assert reply.body == data[10 * SLICE + 5 : 12 * SLICE + 10]
    assert _ranges_asked(proxy, key) == [(10 * SLICE, 13 * SLICE - 1)]

    # The client has its bytes before the edge has read the rest of slice 12; wait for the fill.
    _wait_cached(edge, path, f"bytes={10 * SLICE}-{13 * SLICE - 1}")
    # Slices 10-12 are cached now: of 9..13 only 9 and 13 are missing, two separate runs.
    proxy.requests.clear()
    reply = edge.get(path, Range=f"bytes={9 * SLICE}-{13 * SLICE + 1}")
    assert reply.body == data[9 * SLICE : 13 * SLICE + 2]
    assert reply.header("X-Cache") == "PARTIAL"
    assert _ranges_asked(proxy, key) == [(9 * SLICE, 10 * SLICE - 1), (13 * SLICE, 14 * SLICE - 1)]

    # The last slice is short; the edge asks for exactly what exists.
    proxy.requests.clear()
    reply = edge.get(path, Range="bytes=-10")
    assert reply.body == data[-10:]
    assert _ranges_asked(proxy, key) == [(40 * SLICE, size - 1)]

    # A repeat is served from memory without touching the origin.
    proxy.requests.clear()
    again = edge.get(path, Range=f"bytes={10 * SLICE + 5}-{12 * SLICE + 9}")
    assert (again.header("X-Cache"), again.header("X-Cache-Tier")) == ("HIT", "memory")
    assert proxy.gets() == []


def test_multirange_fetches_each_shared_slice_once(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    data = os.urandom(4 * SLICE)
    manifest = catalog.publish({"96": data})
    edge = start_edge(origin_url=proxy.url, cache={"memory_bytes": 0})  # memory tier off
    reply = edge.get(f"/v1/tracks/{manifest.track_id}/96", Range="bytes=0-9,100-109")
    assert reply.status == 206
    key = manifest.renditions["96"].key
    assert _ranges_asked(proxy, key) == [(0, SLICE - 1)]


def _error_code(body: bytes) -> str:
    return str(json.loads(body)["error"])


def test_origin_down_is_a_502(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    manifest = catalog.publish({"96": os.urandom(1000)})
    edge = start_edge(origin_url=proxy.url)
    proxy.faults.refuse = True
    reply = edge.get(f"/v1/tracks/{manifest.track_id}/96")
    assert reply.status == 502
    assert _error_code(reply.body) == "origin_unreachable"


def test_origin_not_listening_is_a_502(start_edge: Callable[..., EdgeServer]) -> None:
    edge = start_edge(origin_url="http://127.0.0.1:9")  # discard port: nothing listens
    reply = edge.get("/v1/tracks/anything/96")
    assert reply.status == 502
    assert _error_code(reply.body) == "origin_unreachable"


def test_slow_origin_is_a_504(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    manifest = catalog.publish({"96": os.urandom(1000)})
    edge = start_edge(origin_url=proxy.url, origin={"read_timeout_s": 0.3})
    proxy.faults.latency_s = 1.0
    reply = edge.get(f"/v1/tracks/{manifest.track_id}/96")
    assert reply.status == 504
    assert _error_code(reply.body) == "origin_timeout"


def test_truncated_origin_body_breaks_the_client_connection(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    data = os.urandom(3 * SLICE)
    manifest = catalog.publish({"96": data})
    edge = start_edge(origin_url=proxy.url)
    path = f"/v1/tracks/{manifest.track_id}/96"
    assert edge.get(f"/v1/tracks/{manifest.track_id}").status == 200  # manifest cached first
    counters = Counters(edge)  # the registry is shared with earlier tests' edges
    proxy.faults.truncate_response_at = 2000  # headers plus a little of the body
    conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    assert response.status == 200  # headers were already sent when the origin failed
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    conn.close()
    aborted = {"method": "GET", "route": "rendition", "status": "aborted"}
    assert counters.delta("encore_requests_total", **aborted) == 1
    cut = {"operation": "get_range", "outcome": "error"}
    assert counters.delta("encore_origin_requests_total", **cut) >= 1
    # Nothing of the truncated body was committed: with the origin healthy again, the edge
    # fetches and serves the full, correct bytes.
    proxy.faults.truncate_response_at = None
    reply = edge.get(path)
    assert reply.body == data
    assert reply.header("X-Cache") == "MISS"


def _keyless_error(body: bytes, key: str) -> str:
    """The error code of a JSON error body that names no bucket key."""
    doc = json.loads(body)
    assert set(doc) == {"error", "message"}, doc
    assert key not in doc["message"], doc
    assert "tracks/" not in doc["message"], doc
    return str(doc["error"])


def _warnings_naming(caplog: pytest.LogCaptureFixture, key: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and key in r.getMessage()
    ]


def test_an_object_the_bucket_lacks_is_a_404_naming_no_key(
    catalog: Catalog, edge: EdgeServer, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = catalog.publish({"160": os.urandom(1000)})
    key = manifest.renditions["160"].key
    catalog.delete(key)  # the manifest still names it
    with caplog.at_level(logging.WARNING):
        reply = edge.get(f"/v1/tracks/{manifest.track_id}/160")
    assert reply.status == 404
    assert _keyless_error(reply.body, key) == "origin_not_found"
    assert len(_warnings_naming(caplog, key)) == 1  # the operator's to fix: the key is logged


def test_a_content_range_mismatch_is_a_502_naming_no_key(
    catalog: Catalog, edge: EdgeServer, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = catalog.publish({"160": os.urandom(3 * SLICE)})
    key = manifest.renditions["160"].key
    catalog.put_raw(key, os.urandom(2 * SLICE))  # replaced behind the manifest's back
    with caplog.at_level(logging.WARNING):
        reply = edge.get(f"/v1/tracks/{manifest.track_id}/160", Range="bytes=0-9")
    assert reply.status == 502
    assert _keyless_error(reply.body, key) == "origin_object_mismatch"
    assert _warnings_naming(caplog, key)


def test_a_manifest_body_cut_short_on_every_try_is_a_502_naming_no_key(
    catalog: Catalog,
    proxy: TcpProxy,
    start_edge: Callable[..., EdgeServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    track_id = f"cut-{uuid.uuid4().hex[:12]}"
    key = layout.manifest_key(track_id)
    catalog.put_raw(key, b" " * 50_000)
    edge = start_edge(origin_url=proxy.url, origin={"retries": 2, "retry_backoff_s": 0.01})
    proxy.faults.truncate_response_at = 10_000  # past the head, well short of the body
    with caplog.at_level(logging.WARNING):
        reply = edge.get(f"/v1/tracks/{track_id}")
    assert reply.status == 502
    assert _keyless_error(reply.body, key) == "origin_truncated"
    assert len(proxy.gets(key)) == 3  # retried, then given up
    assert _warnings_naming(caplog, key)


def test_an_oversized_manifest_is_a_502_naming_no_key(
    catalog: Catalog, edge: EdgeServer, caplog: pytest.LogCaptureFixture
) -> None:
    track_id = f"big-{uuid.uuid4().hex[:12]}"
    key = layout.manifest_key(track_id)
    catalog.put_raw(key, b" " * (MAX_MANIFEST_BYTES + 1))
    with caplog.at_level(logging.WARNING):
        reply = edge.get(f"/v1/tracks/{track_id}/160")
    assert reply.status == 502
    assert _keyless_error(reply.body, key) == "bad_origin_data"
    assert _warnings_naming(caplog, key)
