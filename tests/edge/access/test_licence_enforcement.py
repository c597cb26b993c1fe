"""Regional licensing on every path that serves audio: a matrix of regions x licences x
cached/uncached, HEAD and conditional requests, the next-track prefetch, and the 451 body.
The client region comes from the trusted header (loopback is a trusted proxy by default)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from origin.license import License
from origin.manifest import Manifest
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.edge_server import Counters, EdgeServer, Reply
from tests.support.tcp_proxy import TcpProxy

SLICE = TEST_SLICE_BYTES
NOW = datetime.now(UTC)
LICENCES: dict[str, License | None] = {
    "nordics": License(allow=("SE", "NO", "DK", "FI", "IS")),
    "not_us": License(allow=("*",), deny=("US",)),
    "future": License(allow=("*",), not_before=NOW + timedelta(days=1)),
    "expired": License(allow=("*",), not_after=NOW - timedelta(days=1)),
    "none": None,
}
REGIONS = ("SE", "US", "DE")
# (licence, region) -> the 451 reason, or None where the track may be served.
EXPECTED: dict[tuple[str, str], str | None] = {
    ("nordics", "SE"): None,
    ("nordics", "US"): "region",
    ("nordics", "DE"): "region",
    ("not_us", "SE"): None,
    ("not_us", "US"): "region",
    ("not_us", "DE"): None,
    **{("future", r): "window" for r in REGIONS},
    **{("expired", r): "window" for r in REGIONS},
    **{("none", r): "no_licence" for r in REGIONS},
}


def _as(region: str, **headers: str) -> dict[str, str]:
    return {"X-Client-Region": region, **headers}


def _assert_refused(reply: Reply, reason: str, method: str = "GET") -> None:
    assert reply.status == 451, (reply.status, reply.body[:200])
    assert reply.header("Content-Type") == "application/json"
    if method == "GET":
        body = json.loads(reply.body)
        assert body["error"] == "not_licensed"
        assert body["reason"] == reason
    else:
        assert reply.body == b""
    assert reply.header("X-Cache") is None
    assert reply.header("Content-Range") is None


@pytest.fixture
def licensed_edge(proxy: TcpProxy, start_edge: Callable[..., EdgeServer]) -> EdgeServer:
    # TTL 0: every request reads the manifest, so a licence change applies to the next one.
    return start_edge(origin_url=proxy.url, edge={"manifest_ttl_s": 0})


@pytest.mark.parametrize("cached", [False, True], ids=["uncached", "cached"])
def test_licence_matrix_over_regions_windows_and_cache_state(
    catalog: Catalog, proxy: TcpProxy, licensed_edge: EdgeServer, cached: bool
) -> None:
    edge = licensed_edge
    tracks: dict[str, tuple[Manifest, bytes]] = {}
    for name, licence in LICENCES.items():
        data = os.urandom(2 * SLICE)
        if cached:
            # Served worldwide first, so its slices are in the cache; then the rights change.
            manifest = catalog.publish({"160": data})
            path = f"/v1/tracks/{manifest.track_id}/160"
            assert edge.request("GET", path, _as("SE")).body == data
            assert edge.request("HEAD", path, _as("SE")).header("X-Cache") == "HIT"
            if licence is None:
                manifest = catalog.publish({"160": data}, manifest.track_id, license=None)
            else:
                manifest = catalog.relicense(manifest.track_id, licence)
        else:
            manifest = catalog.publish({"160": data}, license=licence)
        tracks[name] = (manifest, data)
    counters = Counters(edge)
    origin_gets_before = len(proxy.gets())

    for (name, region), reason in EXPECTED.items():
        manifest, data = tracks[name]
        track = f"/v1/tracks/{manifest.track_id}"
        for method, path, headers in [
            ("GET", track, _as(region)),
            ("HEAD", track, _as(region)),
            ("GET", f"{track}/160", _as(region, Range=f"bytes=0-{SLICE + 9}")),
            ("GET", f"{track}/160", _as(region)),
            ("HEAD", f"{track}/160", _as(region)),
            ("GET", f"{track}/160", _as(region, If_None_Match=manifest.renditions["160"].etag)),
        ]:
            reply = edge.request(method, path, {k.replace("_", "-"): v for k, v in headers.items()})
            if reason is None:
                assert reply.status in {200, 206, 304}, (name, region, reply.status)
                if method == "GET" and reply.status == 206:
                    assert reply.body == data[: SLICE + 10]
            else:
                _assert_refused(reply, reason, method)
                assert data[:64] not in reply.body  # never a byte of the audio

    refused = [key for key, reason in EXPECTED.items() if reason]
    assert counters.delta("encore_license_denials_total", reason="region", region="SE") == 0
    assert counters.delta("encore_license_denials_total", reason="region", region="other") == 6 * 3
    assert counters.delta("encore_license_denials_total", reason="window", region="SE") == 6 * 2
    total = sum(
        counters.delta("encore_license_denials_total", reason=r, region=g)
        for r in ("region", "window", "no_licence")
        for g in ("SE", "other")
    )
    assert total == 6 * len(refused)
    # Tracks refused everywhere: not one audio GET reached the origin for them.
    never = [tracks[name][0].renditions["160"].key for name in ("future", "expired", "none")]
    fetched = [r.path for r in proxy.gets()[origin_gets_before:]]
    assert [path for path in fetched if any(key in path for key in never)] == []


def test_prefetched_slices_are_refused_to_clients_outside_the_licence(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    playing = catalog.publish({"160": os.urandom(SLICE)})
    nordic_data = os.urandom(2 * SLICE)
    nordic = catalog.publish({"160": nordic_data}, license=LICENCES["nordics"])
    key = nordic.renditions["160"].key
    edge = start_edge(origin_url=proxy.url, cache={"prefetch_slices": 1})
    playing_path = f"/v1/tracks/{playing.track_id}/160"
    nordic_path = f"/v1/tracks/{nordic.track_id}/160"

    # A listener in the US hints at the Nordic track: its audio is not fetched.
    edge.request("GET", playing_path, _as("US", **{"X-Encore-Next": nordic.track_id}))
    edge.call(lambda app: app.prefetcher.idle())  # the hint's warm has run
    assert proxy.gets(key) == []

    # A listener in Sweden hints at it: it is prefetched...
    edge.request("GET", playing_path, _as("SE", **{"X-Encore-Next": nordic.track_id}))
    deadline = time.monotonic() + 10
    first_slice = _as("SE", Range=f"bytes=0-{SLICE - 1}")
    while edge.request("HEAD", nordic_path, first_slice).header("X-Cache") != "HIT":
        assert time.monotonic() < deadline, "the next track was never prefetched"
        time.sleep(0.02)
    # ...and still refused to the listener in the US, from the cache as much as anywhere.
    _assert_refused(edge.request("GET", nordic_path, _as("US")), "region")
    assert edge.request("GET", nordic_path, _as("NO", Range="bytes=0-9")).body == nordic_data[:10]
