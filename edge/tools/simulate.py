"""``encore-edge simulate``: replay a trace through the edge's cache policies, slice by slice.

Each request is cut into the slices that cover it, as the edge does. A slice is an object:
the object hit ratio is hits over slice lookups, the byte hit ratio is requested bytes that
hit over requested bytes (only the part of a slice a request asks for counts). ``belady`` is
the offline optimum for comparison: it evicts the slice used furthest in the future and does
not admit one that would be evicted first.
"""

from __future__ import annotations

import heapq
from array import array
from dataclasses import dataclass

from edge.cache.policies import make_cache
from edge.tools.traces import Trace

BELADY = "belady"
_NEVER = 1 << 62


@dataclass(frozen=True, slots=True)
class SliceAccesses:
    """A trace cut into slices: for each lookup, the slice's key, size and bytes asked for."""

    keys: array[int]
    sizes: array[int]
    wanted: array[int]
    footprint: int  # bytes of all distinct slices the trace touches


@dataclass(frozen=True, slots=True)
class Result:
    policy: str
    cache_bytes: int
    object_hit_ratio: float
    byte_hit_ratio: float


def slice_accesses(trace: Trace, slice_bytes: int) -> SliceAccesses:
    keys, sizes, wanted = array("q"), array("q"), array("q")
    seen: dict[int, bytearray] = {}  # per object, which slices were touched
    footprint = 0
    # Slice keys are integers: key id in the high bits, slice index in the low 24.
    for key_id, size, offset, length in zip(
        trace.key_ids, trace.sizes, trace.offsets, trace.lengths, strict=True
    ):
        end = offset + length  # exclusive
        base = key_id << 24
        touched = seen.get(key_id)
        if touched is None:
            touched = seen[key_id] = bytearray((size - 1) // slice_bytes + 1)
        for index in range(offset // slice_bytes, (end - 1) // slice_bytes + 1):
            start = index * slice_bytes
            stop = min(start + slice_bytes, size)
            keys.append(base | index)
            sizes.append(stop - start)
            wanted.append(min(stop, end) - max(start, offset))
            if not touched[index]:
                touched[index] = 1
                footprint += stop - start
    return SliceAccesses(keys, sizes, wanted, footprint)


def simulate(accesses: SliceAccesses, policy: str, cache_bytes: int) -> Result:
    if policy == BELADY:
        return _belady(accesses, cache_bytes)
    cache = make_cache(policy, max(cache_bytes, 1), getsizeof=int)  # values are the sizes
    # Bound methods and no exceptions on misses: this loop runs once per slice lookup.
    holds, use, insert = cache.__contains__, cache.__getitem__, cache.__setitem__
    hits = hit_bytes = 0
    for key, size, wanted in zip(accesses.keys, accesses.sizes, accesses.wanted, strict=True):
        if holds(key):
            use(key)
            hits += 1
            hit_bytes += wanted
        elif size <= cache_bytes:
            insert(key, size)
    return _result(policy, cache_bytes, accesses, hits, hit_bytes)


def _result(
    policy: str, cache_bytes: int, accesses: SliceAccesses, hits: int, hit_bytes: int
) -> Result:
    lookups, wanted = len(accesses.keys), sum(accesses.wanted)
    return Result(
        policy=policy,
        cache_bytes=cache_bytes,
        object_hit_ratio=hits / lookups if lookups else 0.0,
        byte_hit_ratio=hit_bytes / wanted if wanted else 0.0,
    )


def _next_uses(keys: array[int]) -> array[int]:
    following = array("q", bytes(8 * len(keys)))
    last_seen: dict[int, int] = {}
    for position in range(len(keys) - 1, -1, -1):
        key = keys[position]
        following[position] = last_seen.get(key, _NEVER)
        last_seen[key] = position
    return following


def _belady(accesses: SliceAccesses, cache_bytes: int) -> Result:
    next_uses = _next_uses(accesses.keys)
    cached: dict[int, int] = {}  # key -> its next use
    sizes: dict[int, int] = {}
    furthest: list[tuple[int, int]] = []  # (-next use, key), stale entries skipped lazily
    used = hits = hit_bytes = 0
    for position, (key, size, wanted) in enumerate(
        zip(accesses.keys, accesses.sizes, accesses.wanted, strict=True)
    ):
        next_use = next_uses[position]
        if key in cached:
            hits += 1
            hit_bytes += wanted
            cached[key] = next_use
            heapq.heappush(furthest, (-next_use, key))
            continue
        if next_use == _NEVER or size > cache_bytes:
            continue  # never needed again: not admitted
        while used + size > cache_bytes:
            negative_use, victim = furthest[0]
            if cached.get(victim) != -negative_use:
                heapq.heappop(furthest)  # stale entry
                continue
            if -negative_use < next_use:
                break  # everything cached is needed sooner than this slice: bypass it
            heapq.heappop(furthest)
            del cached[victim]
            used -= sizes.pop(victim)
        if used + size <= cache_bytes:
            cached[key] = next_use
            sizes[key] = size
            used += size
            heapq.heappush(furthest, (-next_use, key))
    return _result(BELADY, cache_bytes, accesses, hits, hit_bytes)
