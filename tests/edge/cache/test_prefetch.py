"""Prefetch: sequential look-ahead, the next-track hint (licence first), stopping under origin
trouble, and the issued / used / wasted counters. Origin requests are counted at the proxy.

What prefetch did *not* do is checked once its queue has run (``Prefetcher.idle``), never
after a sleep."""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Callable

from edge.runtime.app import EdgeApp
from origin import layout
from origin.license import License
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.edge_server import Counters, EdgeServer
from tests.support.tcp_proxy import TcpProxy

SLICE = TEST_SLICE_BYTES


def _slice_range(index: int) -> str:
    return f"bytes={index * SLICE}-{(index + 1) * SLICE - 1}"


def _cached(edge: EdgeServer, path: str, index: int) -> bool:
    return edge.request("HEAD", path, {"Range": _slice_range(index)}).header("X-Cache") == "HIT"


def _wait_cached(edge: EdgeServer, path: str, index: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not _cached(edge, path, index):
        assert time.monotonic() < deadline, f"slice {index} of {path} was never prefetched"
        time.sleep(0.02)


async def _fetches_in_flight(app: EdgeApp) -> int:
    return len(app.slices.fills)


def _wait_fetches_done(edge: EdgeServer, timeout_s: float = 10) -> None:
    """No slice is being fetched (looked for without a lookup, which a policy would count)."""
    deadline = time.monotonic() + timeout_s
    while edge.call(_fetches_in_flight):
        assert time.monotonic() < deadline, "a fetch never ended"
        time.sleep(0.02)


def _prefetch_idle(edge: EdgeServer) -> None:
    """Every prefetch job queued so far has run, its origin fetches included."""
    edge.call(lambda app: app.prefetcher.idle())


def _covers(range_header: str, offset: int) -> bool:
    start, end = map(int, range_header.removeprefix("bytes=").split("-"))
    return start <= offset <= end


def _ranges(proxy: TcpProxy, key: str) -> list[str]:
    return [r.headers.get("range", "") for r in proxy.gets(key)]


def test_reading_slice_n_fetches_the_next_k_slices_ahead(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    data = os.urandom(6 * SLICE)
    manifest = catalog.publish({"160": data})
    key, path = manifest.renditions["160"].key, f"/v1/tracks/{manifest.track_id}/160"
    edge = start_edge(origin_url=proxy.url, cache={"prefetch_slices": 2})
    counters = Counters(edge)

    first = edge.get(path, Range=_slice_range(0))
    assert (first.status, first.header("X-Cache")) == (206, "MISS")
    _wait_cached(edge, path, 1)
    _wait_cached(edge, path, 2)
    _prefetch_idle(edge)
    # The look-ahead rode on the demand GET: no second request, no added latency.
    assert _ranges(proxy, key) == [f"bytes=0-{3 * SLICE - 1}"]

    second = edge.get(path, Range=_slice_range(1))
    assert (second.header("X-Cache"), second.body) == ("HIT", data[SLICE : 2 * SLICE])
    _prefetch_idle(edge)
    assert _cached(edge, path, 3)  # reading slice 1 looked ahead to 2 (cached) and 3
    assert counters.delta("encore_prefetch_issued_total", reason="sequential") == 3
    assert counters.delta("encore_prefetch_used_total") == 1
    # The end of the object bounds the look-ahead: the last slice's GET is for it alone, and
    # nothing is queued past it.
    edge.get(path, Range=_slice_range(5))
    _prefetch_idle(edge)
    assert _ranges(proxy, key) == [
        f"bytes=0-{3 * SLICE - 1}",
        f"bytes={3 * SLICE}-{4 * SLICE - 1}",
        f"bytes={5 * SLICE}-{6 * SLICE - 1}",
    ]


async def _readers_of(app: EdgeApp, key: str, index: int) -> int:
    fill = app.slices.fills.get((key, index))
    return 0 if fill is None else fill.readers


def test_a_demand_request_joins_a_prefetch_in_flight(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    data = os.urandom(3 * SLICE)
    manifest = catalog.publish({"160": data})
    key, path = manifest.renditions["160"].key, f"/v1/tracks/{manifest.track_id}/160"
    edge = start_edge(origin_url=proxy.url, cache={"prefetch_slices": 1})
    assert edge.get(f"/v1/tracks/{manifest.track_id}").status == 200
    counters = Counters(edge)
    # Every audio body stops after its first bytes until the test releases it.
    proxy.faults.stall_after, proxy.faults.stall_until_released = 2000, True

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(edge.get, path, Range=_slice_range(0))  # brings slice 1 along
        deadline = time.monotonic() + 10
        while not proxy.gets(key):
            assert time.monotonic() < deadline, "the first request never reached the origin"
            time.sleep(0.01)
        second = pool.submit(edge.get, path, Range=_slice_range(1))  # while slice 1 is held
        while edge.call(lambda app: _readers_of(app, key, 1)) == 0:
            assert time.monotonic() < deadline, "the second request never joined the fetch"
            time.sleep(0.01)
        proxy.release()
        assert first.result().body == data[:SLICE]
        assert (second.result().body, second.result().header("X-Cache")) == (
            data[SLICE : 2 * SLICE],
            "MISS",
        )
    covering = [r for r in _ranges(proxy, key) if _covers(r, SLICE)]
    assert len(covering) == 1  # slice 1 was fetched once, ahead of its request
    assert counters.delta("encore_fill_waits_total", outcome="done") == 1
    assert counters.delta("encore_prefetch_used_total") == 1


def test_unread_prefetched_slices_that_leave_memory_count_as_wasted(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    first = catalog.publish({"160": os.urandom(4 * SLICE)})
    other = catalog.publish({"160": os.urandom(8 * SLICE)})
    edge = start_edge(origin_url=proxy.url, cache={"prefetch_slices": 2, "memory_bytes": 4 * SLICE})
    counters = Counters(edge)
    path = f"/v1/tracks/{first.track_id}/160"
    edge.get(path, Range=_slice_range(0))
    _wait_fetches_done(edge)  # slices 1 and 2 rode on its GET
    _prefetch_idle(edge)  # and nothing is still to be prefetched
    # Eight slices through a four-slice tier: each is committed, and what it evicts counted,
    # before its last byte is sent.
    edge.get(f"/v1/tracks/{other.track_id}/160")
    assert counters.delta("encore_prefetch_wasted_total") == 2  # slices 1 and 2 of the first
    assert counters.delta("encore_prefetch_used_total") == 0


def test_the_next_track_hint_warms_the_same_bitrate_after_the_licence_check(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    playing = catalog.publish({"96": os.urandom(2 * SLICE), "160": os.urandom(2 * SLICE)})
    upcoming_data = os.urandom(3 * SLICE)
    upcoming = catalog.publish({"96": os.urandom(3 * SLICE), "160": upcoming_data})
    blocked = catalog.publish(
        {"96": os.urandom(SLICE), "160": os.urandom(SLICE)}, license=License(allow=("NO",))
    )
    edge = start_edge(
        origin_url=proxy.url, cache={"prefetch_slices": 1, "next_track_slices": 1}
    )  # node region SE
    counters = Counters(edge)

    edge.get(
        f"/v1/tracks/{playing.track_id}/160", Range="bytes=0-99", X_Encore_Next=upcoming.track_id
    )
    next_path = f"/v1/tracks/{upcoming.track_id}/160"
    _prefetch_idle(edge)  # the warm is a prefetch job
    assert _cached(edge, next_path, 0)
    assert edge.get(next_path, Range="bytes=0-999").body == upcoming_data[:1000]
    assert proxy.gets(upcoming.renditions["96"].key) == []  # only the bitrate being played
    assert counters.delta("encore_prefetch_issued_total", reason="next_track") == 1

    edge.get(
        f"/v1/tracks/{playing.track_id}/160", Range="bytes=0-99", X_Encore_Next=blocked.track_id
    )
    edge.get(f"/v1/tracks/{playing.track_id}/160", Range="bytes=0-99", X_Encore_Next="../etc")
    _prefetch_idle(edge)
    # Its manifest was read to check the licence; none of its audio was fetched.
    assert len(proxy.gets(layout.manifest_key(blocked.track_id))) == 1
    assert all(blocked.renditions[n].key not in r.path for n in ("96", "160") for r in proxy.gets())


def test_prefetch_stops_first_when_the_origin_is_in_trouble(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    hot = catalog.publish({"160": os.urandom(4 * SLICE)})
    cold = catalog.publish({"160": os.urandom(SLICE)})
    hot_key, hot_path = hot.renditions["160"].key, f"/v1/tracks/{hot.track_id}/160"
    edge = start_edge(
        origin_url=proxy.url,
        origin={"retries": 0},
        cache={"prefetch_slices": 0},  # turned on below through a second node
    )
    assert edge.get(hot_path, Range=_slice_range(0)).status == 206
    assert edge.get(f"/v1/tracks/{cold.track_id}").status == 200
    edge.stop()

    node = start_edge(origin_url=proxy.url, origin={"retries": 0}, cache={"prefetch_slices": 2})
    assert node.get(hot_path, Range=_slice_range(0)).status == 206  # its own cold start
    _wait_cached(node, hot_path, 2)
    _prefetch_idle(node)
    assert node.get(f"/v1/tracks/{cold.track_id}").status == 200
    counters = Counters(node)
    proxy.set_down(True)
    assert node.get(f"/v1/tracks/{cold.track_id}/160").status == 502  # a failure: trouble
    proxy.set_down(False)
    gets = len(proxy.gets(hot_key))
    reply = node.get(hot_path, Range=_slice_range(1))  # a hit that would look ahead to 3
    assert reply.header("X-Cache") == "HIT"
    _prefetch_idle(node)
    assert len(proxy.gets(hot_key)) == gets
    assert counters.delta("encore_prefetch_skipped_total", reason="origin_trouble") == 1
