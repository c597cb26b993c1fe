"""Cache policies on small hand-made traces whose answers are known."""

from __future__ import annotations

import random

import pytest

from edge.cache.policies import S3FifoCache, make_cache
from origin.settings import POLICIES


def _hits(cache: object, keys: list[str], size: int = 1) -> int:
    hits = 0
    for key in keys:
        try:
            cache[key]  # type: ignore[index]
            hits += 1
        except KeyError:
            cache[key] = size  # type: ignore[index]
    return hits


def test_lru_is_the_textbook_one() -> None:
    cache = make_cache("lru", 3, getsizeof=int)
    # a b c fill; a hit (b is now oldest); d evicts b; b misses, evicting c; a hits
    assert _hits(cache, list("abcadba")) == 2


def test_s3fifo_keeps_the_hot_set_through_a_scan_of_one_hit_wonders() -> None:
    hot = [f"hot{n}" for n in range(5)]
    scan = [f"once{n}" for n in range(200)]
    trace = hot + hot + scan + hot  # the hot set is used twice, then a scan, then again
    lru = make_cache("lru", 10, getsizeof=int)
    s3fifo: S3FifoCache[str, int] = S3FifoCache(10, getsizeof=int)
    assert _hits(lru, trace) == 5  # only the second round; the scan flushed everything
    assert _hits(s3fifo, trace) == 10  # second round and the round after the scan


def test_s3fifo_ghost_sends_a_returning_key_straight_to_main() -> None:
    cache: S3FifoCache[str, int] = S3FifoCache(10, getsizeof=int)
    _hits(cache, ["x"] + [f"filler{n}" for n in range(12)])  # x leaves small unused -> ghost
    assert "x" not in cache
    _hits(cache, ["x"])
    assert "x" in cache._main


@pytest.mark.parametrize("policy", POLICIES)
def test_byte_bound_holds_under_random_sizes_and_deletes(policy: str) -> None:
    rng = random.Random(7)
    cache = make_cache(policy, 1000, getsizeof=int)
    for step in range(20_000):
        key = rng.randrange(300)
        if step % 17 == 0 and key in cache:
            del cache[key]
            continue
        try:
            cache[key]
        except KeyError:
            cache[key] = rng.randrange(1, 120)
        assert cache.currsize <= 1000
    if isinstance(cache, S3FifoCache):
        queued = set(cache._small) | set(cache._main)
        assert queued == set(cache)  # the queues and the cache agree on what is held
        assert cache._small_bytes == sum(cache._small.values())


def test_replacing_a_value_keeps_one_entry() -> None:
    cache: S3FifoCache[str, bytes] = S3FifoCache(100, getsizeof=len)
    cache["k"] = b"x" * 10
    cache["k"] = b"y" * 20
    assert cache["k"] == b"y" * 20
    assert cache.currsize == 20
    assert len(cache._small) + len(cache._main) == 1


def test_a_value_larger_than_the_cache_is_refused() -> None:
    cache: S3FifoCache[str, bytes] = S3FifoCache(10, getsizeof=len)
    with pytest.raises(ValueError, match="too large"):
        cache["big"] = b"x" * 11


def test_unknown_policy() -> None:
    with pytest.raises(ValueError, match="unknown cache policy 'arc'"):
        make_cache("arc", 10)
