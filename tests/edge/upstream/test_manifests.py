"""Manifests: stale-while-revalidate, stale-if-error, and negative caching of unknown ids and
missing objects, each within its configured bound. Origin requests are counted at the proxy.

The edges here keep those bounds on a clock the test moves (``start_edge(clock=...)``): each check
is made at an exact age, before or at its bound, and none waits for real time to pass."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

import pytest

from origin import layout
from tests.conftest import Catalog
from tests.support.clock import ManualClock
from tests.support.edge_server import EdgeServer
from tests.support.tcp_proxy import TcpProxy


def _manifest_gets(proxy: TcpProxy, track_id: str) -> int:
    return len(proxy.gets(layout.manifest_key(track_id)))


@pytest.fixture
def clock() -> ManualClock:
    """The clock of the edge the test starts."""
    return ManualClock()


def test_near_its_ttl_a_manifest_is_served_while_one_get_refreshes_it(
    catalog: Catalog,
    proxy: TcpProxy,
    start_edge: Callable[..., EdgeServer],
    clock: ManualClock,
) -> None:
    first = catalog.publish({"160": os.urandom(1000)})
    track = first.track_id
    edge = start_edge(
        origin_url=proxy.url,
        clock=clock,
        edge={"manifest_ttl_s": 60.0, "manifest_stale_while_revalidate_s": 20.0},
    )
    old = edge.get(f"/v1/tracks/{track}")
    catalog.publish({"160": os.urandom(2000)}, track_id=track)  # new audio: a new manifest
    clock.advance(40.0)  # the refresh point (ttl - stale_while_revalidate), short of the TTL
    stale = edge.get(f"/v1/tracks/{track}")
    assert stale.header("ETag") == old.header("ETag")  # answered at once from the cache
    deadline = time.monotonic() + 10
    while edge.get(f"/v1/tracks/{track}").header("ETag") == old.header("ETag"):
        assert time.monotonic() < deadline, "the background refresh never landed"
        time.sleep(0.02)
    # One background GET however many requests saw it stale; the new one is fresh again.
    assert _manifest_gets(proxy, track) == 2


def test_past_its_ttl_a_request_waits_for_the_new_manifest(
    catalog: Catalog,
    proxy: TcpProxy,
    start_edge: Callable[..., EdgeServer],
    clock: ManualClock,
) -> None:
    track = catalog.publish({"160": os.urandom(1000)}).track_id
    edge = start_edge(
        origin_url=proxy.url,
        clock=clock,
        edge={"manifest_ttl_s": 60.0, "manifest_stale_while_revalidate_s": 3600},
    )
    old = edge.get(f"/v1/tracks/{track}")
    catalog.publish({"160": os.urandom(2000)}, track_id=track)
    clock.advance(60.0)  # the TTL bounds serving, however long stale-while-revalidate is
    assert edge.get(f"/v1/tracks/{track}").header("ETag") != old.header("ETag")
    assert _manifest_gets(proxy, track) == 2


def test_stale_if_error_serves_the_last_manifest_while_the_origin_is_down(
    catalog: Catalog,
    proxy: TcpProxy,
    start_edge: Callable[..., EdgeServer],
    clock: ManualClock,
) -> None:
    data = os.urandom(3000)
    track = catalog.publish({"160": data}).track_id
    edge = start_edge(
        origin_url=proxy.url,
        clock=clock,
        origin={"retries": 0},
        edge={
            "manifest_ttl_s": 10.0,
            "manifest_stale_while_revalidate_s": 0,
            "manifest_stale_if_error_s": 20.0,
        },
    )
    assert edge.get(f"/v1/tracks/{track}/160").body == data  # manifest and audio cached
    proxy.set_down(True)
    clock.advance(10.0)  # at the TTL: a request asks the origin, which fails
    assert edge.get(f"/v1/tracks/{track}").status == 200
    played = edge.get(f"/v1/tracks/{track}/160")
    assert (played.status, played.body == data) == (200, True)
    clock.advance(19.5)  # just short of ttl + stale_if_error
    assert edge.get(f"/v1/tracks/{track}").status == 200
    clock.advance(0.5)  # ttl + stale_if_error: the error shows
    assert edge.get(f"/v1/tracks/{track}").status == 502


def test_unknown_ids_are_remembered_so_a_flood_does_not_reach_the_origin(
    catalog: Catalog,
    proxy: TcpProxy,
    start_edge: Callable[..., EdgeServer],
    clock: ManualClock,
) -> None:
    track = f"t-{uuid.uuid4().hex[:12]}"
    edge = start_edge(origin_url=proxy.url, clock=clock, edge={"negative_ttl_s": 5.0})
    for _ in range(20):
        reply = edge.get(f"/v1/tracks/{track}/160")
        assert reply.status == 404
        assert b'"track_not_found"' in reply.body
    assert _manifest_gets(proxy, track) == 1
    catalog.publish({"160": os.urandom(1000)}, track_id=track)
    clock.advance(4.5)  # still remembered: the origin is not asked
    assert edge.get(f"/v1/tracks/{track}").status == 404
    assert _manifest_gets(proxy, track) == 1
    clock.advance(0.5)  # the negative entry expires: a track published since is found
    assert edge.get(f"/v1/tracks/{track}").status == 200
    assert _manifest_gets(proxy, track) == 2


def test_a_missing_audio_object_is_remembered_too(
    catalog: Catalog,
    proxy: TcpProxy,
    start_edge: Callable[..., EdgeServer],
    clock: ManualClock,
) -> None:
    manifest = catalog.publish({"160": os.urandom(5000)})
    key = manifest.renditions["160"].key
    catalog.delete(key)  # a manifest naming an object that is gone
    edge = start_edge(origin_url=proxy.url, clock=clock, edge={"negative_ttl_s": 5.0})
    path = f"/v1/tracks/{manifest.track_id}/160"
    for _ in range(10):
        reply = edge.get(path)
        assert reply.status == 404
        assert b'"origin_not_found"' in reply.body
    assert len(proxy.gets(key)) == 1
    clock.advance(4.5)
    assert edge.get(path).status == 404
    assert len(proxy.gets(key)) == 1
    clock.advance(0.5)  # asked again once per negative TTL
    assert edge.get(path).status == 404
    assert len(proxy.gets(key)) == 2
