"""Single flight with read-while-write: one origin GET per missing slice, waiters read as the
bytes arrive, a leaving client cancels nothing, and failures never leave short bytes anywhere.
Origin requests are counted at the TCP proxy."""

from __future__ import annotations

import http.client
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.cache.slice_files import _HEADER, decode
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.crowd import crowd
from tests.support.edge_server import Counters, EdgeServer
from tests.support.tcp_proxy import SeenRequest, TcpProxy

SLICE = TEST_SLICE_BYTES
HEAD_BYTES = 2000  # of the origin's response (its head and the body's first bytes), then held


def _published(catalog: Catalog, size: int = SLICE) -> tuple[str, str, bytes]:
    data = os.urandom(size)
    manifest = catalog.publish({"160": data})
    return f"/v1/tracks/{manifest.track_id}/160", manifest.renditions["160"].key, data


def _slice_file_contents(path: Path) -> tuple[int, bytes]:
    raw = path.read_bytes()
    _, _, key_length, index, length, _ = _HEADER.unpack_from(raw)
    key = raw[_HEADER.size : _HEADER.size + key_length].decode()
    stored = decode(raw, key, index, length)
    assert stored is not None, f"{path} does not verify"
    return index, bytes(stored)


def _warm_manifest(edge: EdgeServer, path: str) -> None:
    """Load the manifest first, so the crowd below only waits on audio."""
    assert edge.get(path.rsplit("/", 1)[0]).status == 200


def _hold_bodies(proxy: TcpProxy) -> None:
    """The origin sends the response head and the first bytes of the body, then holds the rest
    until ``proxy.release()``: a slow origin whose end the test decides."""
    proxy.faults.stall_after, proxy.faults.stall_until_released = HEAD_BYTES, True


@contextmanager
def _answered(
    edge: EdgeServer, path: str, headers: dict[str, str], clients: int
) -> Iterator[list[http.client.HTTPResponse]]:
    """``clients`` GETs of the same thing, all sent before any answer is read; each answer's
    head. Reading a head blocks until it comes, and the edge sends an audio response's head
    with its first bytes: with the origin's body held, a client that waited for the whole
    slice would time out here."""
    connections = [
        http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10) for _ in range(clients)
    ]
    try:
        for connection in connections:
            connection.request("GET", path, headers=headers)
        yield [connection.getresponse() for connection in connections]
    finally:
        for connection in connections:
            connection.close()


def test_a_crowd_on_a_cold_slice_makes_one_origin_get_and_reads_while_it_is_written(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    path, key, data = _published(catalog)
    edge = start_edge(origin_url=proxy.url)
    _warm_manifest(edge, path)
    _hold_bodies(proxy)
    counters = Counters(edge)

    with _answered(edge, path, {"Range": f"bytes=0-{SLICE - 1}"}, clients=12) as replies:
        # Everyone has its first bytes while the origin still holds the rest: nobody waited
        # for the whole slice.
        firsts = [reply.read(1) for reply in replies]
        assert firsts == [data[:1]] * 12
        assert len(proxy.gets(key)) == 1
        proxy.release()
        bodies = [first + reply.read() for first, reply in zip(firsts, replies, strict=True)]
        assert [r.status for r in replies] == [206] * 12
    assert all(body == data for body in bodies)
    assert len(proxy.gets(key)) == 1
    # The eleven others joined that one fill and read it to its end.
    assert counters.delta("encore_fill_waits_total", outcome="done") == 11
    assert counters.delta("encore_origin_fills_total", kind="demand") == 1


def test_the_client_that_started_a_fill_can_leave_without_cancelling_it(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    path, key, data = _published(catalog)
    edge = start_edge(origin_url=proxy.url)
    _warm_manifest(edge, path)
    _hold_bodies(proxy)
    whole = {"Range": f"bytes=0-{SLICE - 1}"}

    with _answered(edge, path, whole, clients=1) as (leader,):
        assert leader.read(1) == data[:1]
    # The leader is gone mid-fill (its connection closed); the origin still holds the rest.
    with _answered(edge, path, whole, clients=1) as (follower,):
        first = follower.read(1)  # it joined the fill in flight, and has what arrived
        proxy.release()
        body = first + follower.read()
        assert follower.status == 206
        assert follower.headers["x-cache"] == "MISS"
    assert body == data
    assert len(proxy.gets(key)) == 1
    assert edge.get(path, **whole).header("X-Cache") == "HIT"


def test_a_truncated_origin_body_reaches_no_tier_and_no_client_as_complete(
    catalog: Catalog,
    proxy: TcpProxy,
    start_edge: Callable[..., EdgeServer],
    tmp_path: Path,
) -> None:
    path, key, data = _published(catalog, 3 * SLICE)
    edge = start_edge(
        origin_url=proxy.url,
        origin={"retries": 0},
        cache={"disk_bytes": 64 * 1024**2, "disk_path": str(tmp_path / "cache")},
    )
    _warm_manifest(edge, path)
    proxy.faults.truncate_response_at = 2 * SLICE  # in the middle of the second slice

    replies = crowd(edge.port, path, {}, clients=6)

    for reply in replies:
        # Either the body was cut (a failed transfer), or the error came before any byte.
        assert reply.status == 0 or reply.status >= 500, (reply.status, len(reply.body))
    proxy.faults.truncate_response_at = None
    # Every background disk write started so far, wrong ones included, has landed.
    assert edge.call(lambda app: app.slices.disk_writes_done(10))
    slice_files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    before = len(proxy.gets(key))
    again = edge.get(path)
    assert again.status == 200
    assert again.body == data
    # Slices that arrived whole may have been kept (each run's first slice); each kept one
    # holds exactly the original bytes. The slice the body was cut in is nowhere.
    assert len(slice_files) <= 2
    for path_ in slice_files:
        index, stored = _slice_file_contents(path_)
        assert stored == data[index * SLICE : (index + 1) * SLICE]
    assert len(proxy.gets(key)) == before + 1
    assert again.header("X-Cache") in {"MISS", "PARTIAL"}


def test_a_body_cut_short_is_resumed_from_where_it_stopped_and_nobody_notices(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    path, key, data = _published(catalog, 2 * SLICE)
    edge = start_edge(origin_url=proxy.url, origin={"retries": 2, "retry_backoff_s": 0.01})
    _warm_manifest(edge, path)
    proxy.faults.truncate_response_at = SLICE  # the first response loses its tail
    audio_gets = 0

    def heal_after_first(request: SeenRequest) -> bool:
        nonlocal audio_gets
        if key in request.path:
            audio_gets += 1
            if audio_gets == 2:
                proxy.faults.truncate_response_at = None
        return True

    proxy.faults.on_request = heal_after_first
    counters = Counters(edge)
    replies = crowd(edge.port, path, {}, clients=5)

    assert [r.status for r in replies] == [200] * 5
    assert all(r.body == data for r in replies)
    ranges = [r.headers["range"] for r in proxy.gets(key)]
    assert len(ranges) == 2
    first_start = int(ranges[1].removeprefix("bytes=").split("-")[0])
    assert 0 < first_start < 2 * SLICE  # resumed mid-object, not from the start
    assert counters.delta("encore_origin_retries_total", reason="origin_truncated") == 1


def test_waiters_are_bounded_and_the_excess_gets_503_with_retry_after(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    path, key, data = _published(catalog)
    edge = start_edge(origin_url=proxy.url, cache={"max_waiters": 2})
    _warm_manifest(edge, path)
    _hold_bodies(proxy)
    counters = Counters(edge)

    with _answered(edge, path, {"Range": f"bytes=0-{SLICE - 1}"}, clients=6) as replies:
        # All six came while the fill was held: two read it, four were turned away at once.
        served = [r for r in replies if r.status == 206]
        refused = [r for r in replies if r.status == 503]
        assert (len(served), len(refused)) == (2, 4)  # the one reading its own fill, a waiter
        assert all(b'"too_many_waiters"' in r.read() and r.headers["retry-after"] for r in refused)
        proxy.release()
        assert all(r.read() == data for r in served)
    assert len(proxy.gets(key)) == 1
    assert counters.delta("encore_fill_waits_total", outcome="full") == 4
