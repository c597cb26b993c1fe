"""CMCD's prefetch hints (edge.cache.player_hints) on a real edge: ``nrr`` prefetches the slices
of the next range that neither memory nor the request's own look-ahead has, at most
``cache.prefetch_slices`` of them, on the hot path as on the general one; ``nor`` naming
another track is a next-track hint, with its signature, licence and repeat rules; and what
becomes of each hint is counted."""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable

import pytest

from edge.access.signing import signed_query
from origin import layout
from origin.license import License
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support import cmcd
from tests.support.edge_server import Counters, EdgeServer
from tests.support.tcp_proxy import TcpProxy

SLICE = TEST_SLICE_BYTES
SECRET = "player-hints-secret-0123456789"
HINTS = "encore_player_hints_total"
RANGE = {"Range": "bytes=0-9"}


def _signed(path: str) -> str:
    return f"{path}?{signed_query(SECRET, 'k1', path, int(time.time()) + 600)}"


def _ranges(proxy: TcpProxy, key: str, since: int = 0) -> list[str | None]:
    return [r.headers.get("range") for r in proxy.gets(key)[since:]]


def _slices(first: int, last: int) -> str:
    return f"bytes={first * SLICE}-{(last + 1) * SLICE - 1}"


@pytest.fixture
def hinted_edge(proxy: TcpProxy, start_edge: Callable[..., EdgeServer]) -> EdgeServer:
    return start_edge(
        origin_url=proxy.url,
        auth={"signing_keys": {"k1": SECRET}},
        cache={"prefetch_slices": 2, "next_track_slices": 2},
    )


def test_a_next_range_prefetches_what_the_look_ahead_does_not(
    catalog: Catalog, proxy: TcpProxy, hinted_edge: EdgeServer
) -> None:
    data = os.urandom(12 * SLICE)
    manifest = catalog.publish({"160": data})
    key = manifest.renditions["160"].key
    url = _signed(f"/v1/tracks/{manifest.track_id}/160")
    counters = Counters(hinted_edge)
    # Slice 0 (its GET brings the look-ahead, slices 1-2, along), and the player says it
    # asks for slices 6-7 next: one more GET, for those.
    hinted = cmcd.appended(url, {"nrr": f"{6 * SLICE}-{8 * SLICE - 1}", "sid": "s1"})
    assert hinted_edge.get(hinted, Range="bytes=0-99").status == 206
    hinted_edge.call(lambda app: app.prefetcher.idle())
    assert _ranges(proxy, key) == [_slices(0, 2), _slices(6, 7)]
    reply = hinted_edge.get(url, Range=f"bytes={6 * SLICE}-{8 * SLICE - 1}")
    assert (reply.header("X-Cache"), reply.body) == ("HIT", data[6 * SLICE : 8 * SLICE])
    assert counters.delta(HINTS, hint="nrr", outcome="accepted") == 1
    assert counters.delta("encore_prefetch_issued_total", reason="next_range") == 2
    # An open range is held to cache.prefetch_slices slices; the look-ahead's are not asked
    # twice, nor what memory holds.
    gets = len(proxy.gets(key))
    open_ended = cmcd.appended(url, {"nrr": f"{3 * SLICE + 5}-"})
    assert hinted_edge.get(open_ended, Range="bytes=0-99").status == 206  # a hot hit
    for within in (f"{SLICE}-{3 * SLICE - 1}", f"{6 * SLICE}-{7 * SLICE}"):
        assert hinted_edge.get(cmcd.appended(url, {"nrr": within}), Range="bytes=0-9").status == 206
    hinted_edge.call(lambda app: app.prefetcher.idle())
    assert _ranges(proxy, key, since=gets) == [_slices(3, 4)]
    assert counters.delta(HINTS, hint="nrr", outcome="accepted") == 2
    assert counters.delta(HINTS, hint="nrr", outcome="held") == 2


def test_what_a_next_range_cannot_have(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    manifest = catalog.publish({"160": os.urandom(4 * SLICE)})
    key, path = manifest.renditions["160"].key, f"/v1/tracks/{manifest.track_id}/160"
    edge = start_edge(origin_url=proxy.url, cache={"prefetch_slices": 1})
    counters = Counters(edge)
    past_the_end = cmcd.appended(path, {"nrr": f"{4 * SLICE}-"})
    assert edge.get(past_the_end, Range="bytes=0-9").status == 206
    assert edge.request("HEAD", cmcd.appended(path, {"nrr": f"{3 * SLICE}-"})).status == 200
    edge.call(lambda app: app.prefetcher.idle())
    assert _ranges(proxy, key) == [_slices(0, 1)]  # the request and its look-ahead alone
    assert counters.delta(HINTS, hint="nrr", outcome="out_of_range") == 1
    assert sum(counters.delta(HINTS, hint="nrr", outcome=o) for o in ("accepted", "held")) == 0
    off = start_edge(origin_url=proxy.url, cache={"prefetch_slices": 0})
    counters = Counters(off)
    assert off.get(cmcd.appended(path, {"nrr": f"{2 * SLICE}-"}), Range="bytes=0-9").status == 206
    off.call(lambda app: app.prefetcher.idle())
    assert counters.delta(HINTS, hint="nrr", outcome="off") == 1
    assert _ranges(proxy, key)[1:] == [_slices(0, 0)]  # this edge's own miss, no more


def test_a_next_object_of_another_track_is_a_next_track_hint(
    catalog: Catalog, proxy: TcpProxy, hinted_edge: EdgeServer
) -> None:
    playing = catalog.publish({"160": os.urandom(SLICE)})
    following = catalog.publish({"160": os.urandom(4 * SLICE)})
    elsewhere = catalog.publish({"160": os.urandom(SLICE)}, license=License(("NO",)))
    url = _signed(f"/v1/tracks/{playing.track_id}/160")
    counters = Counters(hinted_edge)

    def hint(nor: str) -> None:
        reply = hinted_edge.request("GET", cmcd.appended(url, {"nor": nor}), RANGE)
        assert reply.status == 206

    next_path = f"/v1/tracks/{following.track_id}/160"
    hint(f"../{following.track_id}/160")  # unsigned: with signed URLs on, not honoured
    hint(f"../{following.track_id}/160?exp=9999999999&kid=k1&sig=AAAA")
    hint("//elsewhere.example/v1/tracks/x/160")
    hint("http://[::1")
    hinted_edge.call(lambda app: app.prefetcher.idle())
    assert proxy.gets(layout.manifest_key(following.track_id)) == []
    signed_next = _signed(next_path).replace(f"/v1/tracks/{following.track_id}", "..", 1)
    signed_next = signed_next.replace("..", f"../{following.track_id}", 1)
    player = http.client.HTTPConnection("127.0.0.1", hinted_edge.port, timeout=15)
    try:  # one player's connection: the same hint again is acted on once
        for _ in range(2):
            player.request("GET", cmcd.appended(url, {"nor": signed_next}), headers=RANGE)
            response = player.getresponse()
            assert (response.status, len(response.read())) == (206, 10)
    finally:
        player.close()
    hint(_signed(f"/v1/tracks/{elsewhere.track_id}/160").replace("/v1/tracks", "..", 1))
    hinted_edge.call(lambda app: app.prefetcher.idle())
    key = following.renditions["160"].key
    assert _ranges(proxy, key) == [_slices(0, 1)]  # its first cache.next_track_slices
    assert proxy.gets(elsewhere.renditions["160"].key) == []  # not licensed in SE
    expected = {"unsigned": 1, "bad_signature": 1, "malformed": 2, "accepted": 2, "repeat": 1}
    seen = {o: counters.delta(HINTS, hint="nor", outcome=o) for o in expected}
    assert seen == expected
    assert counters.delta("encore_license_denials_total", reason="region", region="SE") == 1
    assert counters.delta("encore_next_track_hints_total", outcome="accepted") == 0


def test_a_next_object_naming_this_rendition_leaves_the_range_to_nrr(
    catalog: Catalog, proxy: TcpProxy, hinted_edge: EdgeServer
) -> None:
    manifest = catalog.publish({"160": os.urandom(8 * SLICE)})
    key = manifest.renditions["160"].key
    url = _signed(f"/v1/tracks/{manifest.track_id}/160")
    counters = Counters(hinted_edge)
    same = {"nor": "160", "nrr": f"{5 * SLICE}-{5 * SLICE + 99}"}
    assert hinted_edge.get(cmcd.appended(url, same), Range="bytes=0-9").status == 206
    hinted_edge.call(lambda app: app.prefetcher.idle())
    assert _ranges(proxy, key) == [_slices(0, 2), _slices(5, 5)]
    assert counters.delta(HINTS, hint="nrr", outcome="accepted") == 1
    assert counters.delta(HINTS, hint="nor", outcome="accepted") == 0
