"""Hot hits (``edge.api.hot_hits``): an answer worked out once per (rendition, Range value)
says what the general path says, byte for byte; it is worked out again for a reloaded
manifest; a slice no longer in memory sends the request the general way, counted once; and
the look-ahead, skipped while memory loses nothing, is checked again after a removal."""

from __future__ import annotations

import os
from collections.abc import Callable

from edge.runtime.app import EdgeApp
from origin.license import License
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.clock import ManualClock
from tests.support.edge_server import Counters, EdgeServer, Reply
from tests.support.tcp_proxy import TcpProxy

SLICE = TEST_SLICE_BYTES
# Headers that say when, not what: everything else must match.
_MOMENT = {"date"}


def _answers(edge: EdgeServer) -> int:
    async def count(app: EdgeApp) -> int:
        return len(app.services.hot)

    return edge.call(count)


def _same_answer(hot: Reply, general: Reply) -> None:
    assert hot.status == general.status
    assert hot.body == general.body
    assert {k.lower(): v for k, v in hot.headers.items() if k.lower() not in _MOMENT} == {
        k.lower(): v for k, v in general.headers.items() if k.lower() not in _MOMENT
    }


def test_a_hot_hit_says_what_the_general_path_says(
    catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    data = os.urandom(3 * SLICE + 123)
    manifest = catalog.publish({"160": data})
    path = f"/v1/tracks/{manifest.track_id}/160"
    edge = start_edge(cache={"prefetch_slices": 0})
    ranges = [
        f"bytes={SLICE - 10}-{SLICE + 9}",  # across a slice boundary
        f"bytes={2 * SLICE}-",  # open-ended, to the short last slice
        "bytes=0-0",
        f"bytes=5-{10 * SLICE}",  # past the end: cut to the size
    ]
    assert edge.get(path).status == 200  # every slice into memory
    for range_ in [*ranges, None]:
        asked = {} if range_ is None else {"Range": range_}
        edge.get(path, **asked)  # worked out (a hit already)
        hot = edge.get(path, **asked)
        # A conditional that does not match takes the general path to the same answer.
        general = edge.get(path, **asked, **{"If-None-Match": '"not-this-one"'})
        _same_answer(hot, general)
        assert (hot.header("X-Cache"), hot.header("X-Cache-Tier")) == ("HIT", "memory")
        start = 0 if range_ is None else int(range_.split("=")[1].split("-")[0])
        assert hot.body == data[start : start + len(hot.body)]
    assert _answers(edge) == len(ranges) + 1


def test_a_reloaded_manifest_gets_its_own_answers(
    catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    data = os.urandom(2 * SLICE)
    manifest = catalog.publish({"160": data})
    path = f"/v1/tracks/{manifest.track_id}/160"
    clock = ManualClock()
    edge = start_edge(clock=clock, edge={"manifest_ttl_s": 60.0})
    edge.get(path, Range="bytes=0-99")
    before = edge.get(path, Range="bytes=0-99")
    assert before.header("Cache-Control") == "public, max-age=31536000, immutable"
    # The same audio, now licensed everywhere but one region: no longer shared-cacheable.
    catalog.publish({"160": data}, track_id=manifest.track_id, license=License(("*",), ("KP",)))
    clock.advance(60.0)
    after = edge.get(path, Range="bytes=0-99")
    assert after.header("Cache-Control") == "private, max-age=31536000, immutable"
    assert (after.header("X-Cache"), after.body) == ("HIT", data[:100])


def test_a_slice_gone_from_memory_is_fetched_and_counted_once(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    data = os.urandom(2 * SLICE)
    manifest = catalog.publish({"160": data})
    key, path = manifest.renditions["160"].key, f"/v1/tracks/{manifest.track_id}/160"
    edge = start_edge(origin_url=proxy.url, cache={"prefetch_slices": 0})
    asked = f"bytes=0-{SLICE - 1}"
    edge.get(path, Range=asked)
    assert edge.get(path, Range=asked).header("X-Cache") == "HIT"

    async def forget(app: EdgeApp) -> None:
        app.slices.memory.drop_objects(lambda object_key: object_key == key)

    edge.call(forget)
    counters = Counters(edge)
    reply = edge.get(path, Range=asked)
    assert (reply.status, reply.header("X-Cache"), reply.body) == (206, "MISS", data[:SLICE])
    assert len(proxy.gets(key)) == 2
    lookups = "encore_cache_lookups_total"
    assert counters.delta(lookups, tier="memory", result="miss") == 1
    assert counters.delta(lookups, tier="memory", result="hit") == 0


def test_the_look_ahead_is_checked_again_once_memory_loses_a_slice(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    data = os.urandom(3 * SLICE)
    manifest = catalog.publish({"160": data})
    key, path = manifest.renditions["160"].key, f"/v1/tracks/{manifest.track_id}/160"
    edge = start_edge(origin_url=proxy.url, cache={"prefetch_slices": 1})
    asked = f"bytes=0-{SLICE - 1}"
    assert edge.get(path).status == 200  # all three slices held
    edge.get(path, Range=asked)  # worked out; the look-ahead (slice 1) found held
    gets = len(proxy.gets(key))

    async def keep_only_the_first(app: EdgeApp) -> None:
        memory = app.slices.memory
        first = memory.peek((key, 0))
        assert first is not None
        memory.drop_objects(lambda object_key: object_key == key)
        memory.put((key, 0), first)

    edge.call(keep_only_the_first)
    assert edge.get(path, Range=asked).header("X-Cache") == "HIT"
    edge.call(lambda app: app.prefetcher.idle())
    # Slice 1 was missing: the hit queued its prefetch, one origin GET for it alone.
    assert [r.headers.get("range") for r in proxy.gets(key)[gets:]] == [
        f"bytes={SLICE}-{2 * SLICE - 1}"
    ]
