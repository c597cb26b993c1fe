"""The next-track hint (edge.cache.next_track): with signed URLs on, only a hint that carries its
own valid signature reaches the origin; a hint warms the first ``cache.next_track_slices``
slices of one rendition; repeats and floods on one connection are not acted on; and an
unknown id costs the origin one manifest GET per negative TTL."""

from __future__ import annotations

import http.client
import os
import time
import uuid
from collections.abc import Callable

import pytest

from edge.access.signing import signed_query
from edge.cache.next_track import BURST, REFILL_S, HintBudget, parse_hint
from origin import layout
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.clock import ManualClock
from tests.support.edge_server import Counters, EdgeServer
from tests.support.tcp_proxy import TcpProxy

SLICE = TEST_SLICE_BYTES
SECRET = "hint-secret-0123456789"


def _signed(path: str, ttl_s: int = 600) -> str:
    return f"{path}?{signed_query(SECRET, 'k1', path, int(time.time()) + ttl_s)}"


def _prefetch_idle(edge: EdgeServer) -> None:
    """Until every prefetch job queued so far (the hints' warms) has run."""
    edge.call(lambda app: app.prefetcher.idle())


def _manifest_gets(proxy: TcpProxy, track_id: str) -> int:
    return len(proxy.gets(layout.manifest_key(track_id)))


# --- the hint's form and the per-connection budget ------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("demo-002", ("demo-002", None, None)),
        ("  demo-002 ", ("demo-002", None, None)),
        ("/v1/tracks/demo-002", ("demo-002", None, "/v1/tracks/demo-002")),
        (
            "/v1/tracks/demo-002/160?exp=1&kid=k&sig=s",
            ("demo-002", "160", "/v1/tracks/demo-002/160"),
        ),
        ("", None),
        ("../etc/passwd", None),
        ("/v1/tracks/a/160/extra", None),
        ("/v1/tracks/%2e%2e", None),
        ("/v2/tracks/demo-002", None),
        ("demo-002?exp=1", None),
        ("a" * 129, None),
        ("/v1/tracks/a?" + "x=1&" * 1000, None),
    ],
)
def test_a_hint_is_an_id_or_a_track_path(
    value: str, expected: tuple[str, str | None, str | None] | None
) -> None:
    hint = parse_hint(value)
    assert (hint and (hint.track_id, hint.rendition, hint.path)) == expected


def test_a_connection_gets_a_burst_of_hints_then_one_per_refill() -> None:
    now = [100.0]
    budget = HintBudget(clock=lambda: now[0])
    assert [budget.take() for _ in range(BURST + 1)] == [True] * BURST + [False]
    now[0] += REFILL_S * 0.99
    assert not budget.take()
    now[0] += REFILL_S * 0.02
    assert budget.take()
    now[0] += REFILL_S * 100  # a long pause refills the burst, no more
    assert [budget.take() for _ in range(BURST + 1)] == [True] * BURST + [False]


# --- on a signed edge ------------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def signed_edge(
    proxy: TcpProxy, start_edge: Callable[..., EdgeServer], clock: ManualClock
) -> EdgeServer:
    return start_edge(
        origin_url=proxy.url,
        clock=clock,
        auth={"signing_keys": {"k1": SECRET}},
        cache={"next_track_slices": 2},
    )


def test_unsigned_hints_never_reach_the_origin_when_urls_are_signed(
    catalog: Catalog, proxy: TcpProxy, signed_edge: EdgeServer
) -> None:
    playing = catalog.publish({"160": os.urandom(SLICE)})
    url = _signed(f"/v1/tracks/{playing.track_id}/160")
    counters = Counters(signed_edge)
    known = catalog.publish({"160": os.urandom(4 * SLICE)})
    unknown = [f"unknown-{uuid.uuid4().hex[:12]}" for _ in range(150)]
    for hint in [*unknown, *[known.track_id] * 75, *[f"/v1/tracks/{known.track_id}"] * 75]:
        reply = signed_edge.get(url, Range="bytes=0-0", X_Encore_Next=hint)
        assert reply.status == 206
    forged = f"/v1/tracks/{known.track_id}?exp={int(time.time()) + 60}&kid=k1&sig=AAAA"
    other_track = _signed(f"/v1/tracks/{playing.track_id}").replace(
        playing.track_id, known.track_id, 1
    )  # a valid signature, for another path
    for hint in (forged, other_track):
        assert signed_edge.get(url, Range="bytes=0-0", X_Encore_Next=hint).status == 206
    _prefetch_idle(signed_edge)

    assert all(_manifest_gets(proxy, track_id) == 0 for track_id in unknown)
    assert _manifest_gets(proxy, known.track_id) == 0
    assert proxy.gets(known.renditions["160"].key) == []
    assert counters.delta("encore_next_track_hints_total", outcome="unsigned") == 300
    assert counters.delta("encore_next_track_hints_total", outcome="bad_signature") == 2
    assert counters.delta("encore_signature_rejections_total", reason="signature_invalid") == 0


def test_a_signed_hint_warms_only_the_first_slices_of_one_rendition(
    catalog: Catalog, proxy: TcpProxy, signed_edge: EdgeServer
) -> None:
    playing = catalog.publish({"96": os.urandom(SLICE), "160": os.urandom(SLICE)})
    big = os.urandom(8 * 1024 * 1024)
    upcoming = catalog.publish({"96": os.urandom(SLICE), "160": big})
    url = _signed(f"/v1/tracks/{playing.track_id}/160")
    counters = Counters(signed_edge)

    reply = signed_edge.get(
        url, Range="bytes=0-0", X_Encore_Next=_signed(f"/v1/tracks/{upcoming.track_id}")
    )
    assert reply.status == 206
    _prefetch_idle(signed_edge)

    key = upcoming.renditions["160"].key
    ranges = [r.headers.get("range", r.headers.get("Range", "")) for r in proxy.gets(key)]
    assert ranges == [f"bytes=0-{2 * SLICE - 1}"]  # two slices of an 8 MiB track, one GET
    assert proxy.gets(upcoming.renditions["96"].key) == []  # the bitrate being played only
    assert counters.delta("encore_prefetch_issued_total", reason="next_track") == 2
    assert counters.delta("encore_next_track_hints_total", outcome="accepted") == 1
    next_url = _signed(f"/v1/tracks/{upcoming.track_id}/160")
    first = signed_edge.get(next_url, Range=f"bytes=0-{2 * SLICE - 1}")
    assert (first.header("X-Cache"), first.body) == ("HIT", big[: 2 * SLICE])

    # A path hint names its rendition: that one is warmed.
    signed_edge.get(
        url, Range="bytes=0-0", X_Encore_Next=_signed(f"/v1/tracks/{upcoming.track_id}/96")
    )
    _prefetch_idle(signed_edge)
    assert len(proxy.gets(upcoming.renditions["96"].key)) == 1


def test_one_connection_cannot_flood_hints(
    catalog: Catalog, proxy: TcpProxy, signed_edge: EdgeServer, clock: ManualClock
) -> None:
    playing = catalog.publish({"160": os.urandom(SLICE)})
    url = _signed(f"/v1/tracks/{playing.track_id}/160")
    hinted = [catalog.publish({"160": os.urandom(SLICE)}) for _ in range(12)]
    hints = [_signed(f"/v1/tracks/{manifest.track_id}") for manifest in hinted]
    counters = Counters(signed_edge)
    conn = http.client.HTTPConnection("127.0.0.1", signed_edge.port, timeout=15)
    try:
        for _ in range(5):  # a player repeats its hint with every range request
            _get(conn, url, hints[0])
        for hint in hints[1:-1]:
            _get(conn, url, hint)
        clock.advance(REFILL_S)  # one more hint's worth
        _get(conn, url, hints[-1])
    finally:
        conn.close()
    _prefetch_idle(signed_edge)

    assert counters.delta("encore_next_track_hints_total", outcome="repeat") == 4
    assert counters.delta("encore_next_track_hints_total", outcome="accepted") == BURST + 1
    assert counters.delta("encore_next_track_hints_total", outcome="rate_limited") == (
        len(hinted) - BURST - 1
    )
    warmed = [m for m in hinted if proxy.gets(m.renditions["160"].key)]
    assert warmed == [*hinted[:BURST], hinted[-1]]
    accepted = BURST + 1
    # Another connection has a budget of its own.
    reply = signed_edge.get(
        url, Range="bytes=0-0", X_Encore_Next=_signed(f"/v1/tracks/{hinted[-1].track_id}")
    )
    assert reply.status == 206
    assert counters.delta("encore_next_track_hints_total", outcome="accepted") == accepted + 1


def _get(conn: http.client.HTTPConnection, url: str, hint: str) -> None:
    conn.request("GET", url, headers={"Range": "bytes=0-0", "X-Encore-Next": hint})
    response = conn.getresponse()
    response.read()
    assert response.status == 206


# --- on an open edge ---------------------------------------------------------------------------


def test_an_unknown_hinted_id_reaches_the_origin_once_per_negative_ttl(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    edge = start_edge(origin_url=proxy.url, edge={"negative_ttl_s": 3600.0})
    playing = catalog.publish({"160": os.urandom(SLICE)})
    path = f"/v1/tracks/{playing.track_id}/160"
    unknown = f"unknown-{uuid.uuid4().hex[:12]}"
    for _ in range(20):  # each on a connection of its own: no per-connection limit applies
        edge.get(path, Range="bytes=0-0", X_Encore_Next=unknown)
        _prefetch_idle(edge)
    assert _manifest_gets(proxy, unknown) == 1
    for value in ("../../etc", "x" * 200, "/v1/tracks/../admin"):  # malformed: nothing at all
        edge.get(path, Range="bytes=0-0", X_Encore_Next=value)
    _prefetch_idle(edge)
    assert not [r for r in proxy.requests if "etc" in r.path or "admin" in r.path]


def test_hints_are_off_with_next_track_slices_zero(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    edge = start_edge(origin_url=proxy.url, cache={"next_track_slices": 0})
    playing = catalog.publish({"160": os.urandom(SLICE)})
    upcoming = catalog.publish({"160": os.urandom(SLICE)})
    counters = Counters(edge)
    edge.get(
        f"/v1/tracks/{playing.track_id}/160", Range="bytes=0-0", X_Encore_Next=upcoming.track_id
    )
    _prefetch_idle(edge)
    assert _manifest_gets(proxy, upcoming.track_id) == 0
    assert counters.delta("encore_next_track_hints_total", outcome="off") == 1


def test_a_hint_dropped_under_origin_trouble_is_taken_when_repeated(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    edge = start_edge(origin_url=proxy.url, origin={"retries": 0})
    playing = catalog.publish({"160": os.urandom(SLICE)})
    upcoming = catalog.publish({"160": os.urandom(SLICE)})
    path = f"/v1/tracks/{playing.track_id}/160"
    assert edge.get(path).status == 200  # cached: it plays on while the origin fails
    counters = Counters(edge)
    conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=15)
    try:
        proxy.set_down(True)
        assert edge.get(f"/v1/tracks/{uuid.uuid4().hex[:12]}").status >= 500  # trouble
        _get(conn, path, upcoming.track_id)  # prefetch is paused: the hint is dropped
        proxy.set_down(False)
        assert edge.get(f"/v1/tracks/{upcoming.track_id}").status == 200  # the origin is back
        _get(conn, path, upcoming.track_id)  # the player repeats it: taken now
    finally:
        conn.close()
    _prefetch_idle(edge)
    assert counters.delta("encore_next_track_hints_total", outcome="dropped") == 1
    assert counters.delta("encore_next_track_hints_total", outcome="accepted") == 1
    assert len(proxy.gets(upcoming.renditions["160"].key)) == 1
