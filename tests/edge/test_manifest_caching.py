"""Manifests: stale-while-revalidate, stale-if-error, and negative caching of unknown ids and
missing objects, each within its configured bound. Origin requests are counted at the proxy."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from origin import layout
from tests.conftest import Catalog
from tests.support.edge_server import EdgeServer
from tests.support.tcp_proxy import TcpProxy


def _manifest_gets(proxy: TcpProxy, track_id: str) -> int:
    return len(proxy.gets(layout.manifest_key(track_id)))


def test_near_its_ttl_a_manifest_is_served_while_one_get_refreshes_it(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    first = catalog.publish({"160": os.urandom(1000)})
    track = first.track_id
    edge = start_edge(
        origin_url=proxy.url,
        edge={"manifest_ttl_s": 2.0, "manifest_stale_while_revalidate_s": 1.5},
    )
    old = edge.get(f"/v1/tracks/{track}")
    catalog.publish({"160": os.urandom(2000)}, track_id=track)  # new audio: a new manifest
    time.sleep(1.1)  # past the refresh point (the second half of the TTL), not the TTL

    stale = edge.get(f"/v1/tracks/{track}")
    assert stale.header("ETag") == old.header("ETag")  # answered at once from the cache
    deadline = time.monotonic() + 5
    while edge.get(f"/v1/tracks/{track}").header("ETag") == old.header("ETag"):
        assert time.monotonic() < deadline, "the background refresh never landed"
        time.sleep(0.05)
    assert _manifest_gets(proxy, track) == 2


def test_past_its_ttl_a_request_waits_for_the_new_manifest(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    track = catalog.publish({"160": os.urandom(1000)}).track_id
    edge = start_edge(
        origin_url=proxy.url,
        edge={"manifest_ttl_s": 0.3, "manifest_stale_while_revalidate_s": 30},
    )
    old = edge.get(f"/v1/tracks/{track}")
    catalog.publish({"160": os.urandom(2000)}, track_id=track)
    time.sleep(0.4)  # the TTL bounds serving, however long stale-while-revalidate is
    assert edge.get(f"/v1/tracks/{track}").header("ETag") != old.header("ETag")


def test_stale_if_error_serves_the_last_manifest_while_the_origin_is_down(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    data = os.urandom(3000)
    track = catalog.publish({"160": data}).track_id
    edge = start_edge(
        origin_url=proxy.url,
        origin={"retries": 0},
        edge={
            "manifest_ttl_s": 0.2,
            "manifest_stale_while_revalidate_s": 0,
            "manifest_stale_if_error_s": 1.0,
        },
    )
    assert edge.get(f"/v1/tracks/{track}/160").body == data  # manifest and audio cached
    proxy.set_down(True)
    time.sleep(0.3)
    assert edge.get(f"/v1/tracks/{track}").status == 200
    played = edge.get(f"/v1/tracks/{track}/160")
    assert (played.status, played.body == data) == (200, True)
    time.sleep(1.0)  # past ttl + stale_if_error: the error shows
    assert edge.get(f"/v1/tracks/{track}").status == 502


def test_unknown_ids_are_remembered_so_a_flood_does_not_reach_the_origin(
    proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    edge = start_edge(origin_url=proxy.url, edge={"negative_ttl_s": 0.5})
    for _ in range(20):
        reply = edge.get("/v1/tracks/no-such-track/160")
        assert reply.status == 404
        assert b'"track_not_found"' in reply.body
    assert _manifest_gets(proxy, "no-such-track") == 1
    time.sleep(0.6)  # the negative entry expires: a track published since is found
    assert edge.get("/v1/tracks/no-such-track").status == 404
    assert _manifest_gets(proxy, "no-such-track") == 2


def test_a_missing_audio_object_is_remembered_too(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    manifest = catalog.publish({"160": os.urandom(5000)})
    key = manifest.renditions["160"].key
    catalog.delete(key)  # a manifest naming an object that is gone
    edge = start_edge(origin_url=proxy.url, edge={"negative_ttl_s": 30})
    for _ in range(10):
        reply = edge.get(f"/v1/tracks/{manifest.track_id}/160")
        assert reply.status == 404
        assert b'"origin_not_found"' in reply.body
    assert len(proxy.gets(key)) == 1
