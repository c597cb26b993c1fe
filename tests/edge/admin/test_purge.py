"""``POST /admin/purge`` and ``GET /admin/stats``: a licence change applies within the manifest
TTL, or at once after a purge, on every worker; purged slices leave memory and disk; a purge
landing while a manifest loads leaves the next load single-flight."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from edge.runtime.app import EdgeApp
from edge.upstream.client_view import LoadedManifest
from origin import layout
from origin.license import License
from origin.local_s3 import free_port
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.admin_client import admin_request
from tests.support.edge_node import Node
from tests.support.edge_server import EdgeServer
from tests.support.tcp_proxy import SeenRequest, TcpProxy

SLICE = TEST_SLICE_BYTES
TOKEN = "purge-admin-token-0123"
NORWAY_ONLY = License(allow=("NO",))


def _admin(
    port: int, path: str, body: bytes | dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    return admin_request(port, path, body, TOKEN)


def test_a_licence_change_applies_within_the_manifest_ttl(
    catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    manifest = catalog.publish({"160": os.urandom(1000)})
    path = f"/v1/tracks/{manifest.track_id}/160"
    edge = start_edge(edge={"manifest_ttl_s": 1.0})  # stale-while-revalidate 30 s by default
    assert edge.get(path).status == 200
    catalog.relicense(manifest.track_id, NORWAY_ONLY)
    changed = time.monotonic()
    while edge.get(path).status == 200:  # a steady stream of requests, all in the TTL window
        time.sleep(0.05)
    assert time.monotonic() - changed <= 1.0 + 0.3  # the TTL, and one origin GET of margin
    assert edge.get(path).status == 451


def test_a_licence_change_applies_at_once_after_a_purge(
    catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    data = os.urandom(3 * SLICE)
    manifest = catalog.publish({"160": data})
    path = f"/v1/tracks/{manifest.track_id}/160"
    port = free_port()
    edge = start_edge(admin={"token": TOKEN, "port": port})  # manifest TTL 60 s
    assert edge.get(path).status == 200  # all three slices cached, and the manifest

    catalog.relicense(manifest.track_id, NORWAY_ONLY)
    assert edge.get(path).status == 200  # within the TTL, the cached licence still holds

    status, answer = _admin(port, "/admin/purge", {"tracks": [manifest.track_id, "never-seen"]})
    assert status == 200, answer
    assert answer["tracks"] == 2
    assert answer["purged"] == {"manifests": 1, "memory_slices": 3, "disk_slices": 0}
    assert (answer["workers_purged"], answer["workers_failed"]) == (1, [])

    refused = edge.get(path)
    assert (refused.status, json.loads(refused.body)["reason"]) == (451, "region")
    again = edge.get(path, X_Client_Region="NO", Range="bytes=0-9")
    assert (again.status, again.header("X-Cache"), again.body) == (206, "MISS", data[:10])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not valid JSON"),
        ({"tracks": []}, "a list of 1 to 1000"),
        ({"tracks": ["../etc"]}, "invalid entries"),
        ({"tracks": ["a"], "all": True}, "unknown keys"),
        ({}, "'tracks' is required"),
    ],
)
def test_bad_purge_requests_get_a_clear_400(
    start_edge: Callable[..., EdgeServer], body: bytes | dict[str, Any], message: str
) -> None:
    port = free_port()
    start_edge(admin={"token": TOKEN, "port": port})
    status, answer = _admin(port, "/admin/purge", body)
    assert (status, answer["error"]) == (400, "bad_body")
    assert message in answer["message"]


def test_a_purge_reaches_every_worker_and_the_disk(
    catalog: Catalog, start_node: Callable[..., Node]
) -> None:
    data = os.urandom(4 * SLICE)
    manifest = catalog.publish({"160": data})
    path = f"/v1/tracks/{manifest.track_id}/160"
    port = free_port()
    node = start_node(extra_toml=f'[admin]\nport = {port}\ntoken = "{TOKEN}"\n')

    # Until both workers hold the manifest (stats say so) and the slices are on disk.
    for _ in range(200):
        assert node.status(path, {"X-Client-Region": "SE"}) == 200
        status, stats = _admin(port, "/admin/stats")
        assert status == 200
        if stats["totals"]["manifests_cached"] == 2 and len(node.slice_files()) == 4:
            break
    else:
        pytest.fail(f"the manifest never reached both workers: {stats}")
    assert stats["workers_answering"] == stats["workers_configured"] == 2
    assert sorted(w["worker"] for w in stats["workers"]) == [0, 1]
    assert stats["totals"]["disk"]["slices"] == 4
    assert stats["region"] == "SE"

    catalog.relicense(manifest.track_id, NORWAY_ONLY)
    status, answer = _admin(port, "/admin/purge", {"tracks": [manifest.track_id]})
    assert status == 200, answer
    assert answer["workers_purged"] == 2
    assert answer["purged"]["manifests"] == 2
    assert answer["purged"]["disk_slices"] == 4
    assert node.slice_files() == []

    # Every worker now refuses Sweden and serves Norway, from the origin again.
    assert {node.status(path, {"X-Client-Region": "SE"}) for _ in range(20)} == {451}
    assert {node.status(path, {"X-Client-Region": "NO"}) for _ in range(10)} == {200}
    deadline = time.monotonic() + 10  # stored again (in the background), once
    while _admin(port, "/admin/stats")[1]["totals"]["disk"]["slices"] != 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_purge_during_a_manifest_load_leaves_the_next_load_single_flight(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    track_id = catalog.publish({"160": os.urandom(1000)}).track_id
    key = layout.manifest_key(track_id)
    edge = start_edge(origin_url=proxy.url)
    # Load A answers after 0.3 s, load B after 1 s: A ends while B is in flight. (A third
    # load, which must not happen, would answer at once.)
    latencies = iter([0.3, 1.0])

    def slow_manifests(request: SeenRequest) -> bool:
        proxy.faults.latency_s = next(latencies, 0.0) if key in request.path else 0.0
        return True

    proxy.faults.on_request = slow_manifests

    def manifest_gets() -> int:
        return sum(1 for r in proxy.gets() if key in r.path)

    async def scenario(app: EdgeApp) -> tuple[LoadedManifest, LoadedManifest]:
        store = app.manifests
        load_a = asyncio.ensure_future(store.get(track_id))
        deadline = asyncio.get_running_loop().time() + 10
        while manifest_gets() < 1:  # A's GET has reached the origin: it is held there
            assert asyncio.get_running_loop().time() < deadline, "load A never started"
            await asyncio.sleep(0.001)
        assert store.forget(track_id) is False  # a purge lands: nothing was cached yet
        load_b = asyncio.ensure_future(store.get(track_id))
        await asyncio.sleep(0)  # B takes the single-flight slot
        await load_a
        assert not load_b.done()
        during_b = await store.get(track_id)  # must join B, not load a third time
        return during_b, await load_b

    during_b, loaded_b = edge.call(scenario)  # on the edge's loop, where its state lives
    assert manifest_gets() == 2  # A and B: the request during B made no GET of its own
    assert during_b is loaded_b
    assert edge.get(f"/v1/tracks/{track_id}").status == 200
    assert manifest_gets() == 2  # B's manifest is the one cached
