"""SliceFill.push: the fill writes to its readers itself, in one pass per chunk, the moment the
bytes land; each reader's end (complete, gone, failed, timed out) stays its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from edge.errors import OriginTimeout, OriginUnavailable
from edge.fills import FIRST_BYTES, Run, SliceFill, StoredObject

DATA = bytes(range(200)) * 5  # 1000 bytes


def _fill(size: int = len(DATA)) -> SliceFill:
    return SliceFill(Run(StoredObject("tracks/t/96-x.ogg", size)), 0, size, False)


class Client:
    """A sink that records what it was sent; ``leaves_after`` writes, it is gone."""

    def __init__(self, leaves_after: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.leaves_after = leaves_after

    def __call__(self, data: memoryview) -> bool:
        if self.leaves_after is not None and len(self.chunks) >= self.leaves_after:
            return False
        self.chunks.append(bytes(data))
        return True

    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)


async def _registered() -> None:
    await asyncio.sleep(0)  # the push tasks run up to their wait


async def test_every_reader_gets_each_chunk_in_the_same_pass_as_it_lands() -> None:
    fill = _fill()
    clients = [Client() for _ in range(50)]
    pushes = [asyncio.create_task(fill.push(c, 0, len(DATA), 5)) for c in clients]
    await _registered()
    fill.write(memoryview(DATA)[:10])
    # No await since the write: the fill itself wrote to all of them.
    assert all(c.chunks == [DATA[:10]] for c in clients)
    fill.write(memoryview(DATA)[10:])
    assert await asyncio.gather(*pushes) == [True] * 50
    assert all(c.received == DATA for c in clients)


async def test_when_a_large_chunk_lands_every_new_reader_gets_a_little_first() -> None:
    fill, order = _fill(), []

    def sink(name: int) -> Callable[[memoryview], bool]:
        def write(data: memoryview) -> bool:
            order.append((name, len(data)))
            return True

        return write

    pushes = [asyncio.create_task(fill.push(sink(n), 0, len(DATA), 5)) for n in range(20)]
    await _registered()
    fill.write(memoryview(DATA))  # 1000 bytes: not over FIRST_BYTES
    assert await asyncio.gather(*pushes) == [True] * 20
    assert order == [(n, len(DATA)) for n in range(20)]  # small enough: one write each

    fill, order = _fill(10 * FIRST_BYTES), []
    pushes = [asyncio.create_task(fill.push(sink(n), 0, 10 * FIRST_BYTES, 5)) for n in range(20)]
    await _registered()
    fill.write(memoryview(bytes(3 * FIRST_BYTES)))
    # Everyone's first bytes before anyone's rest: the crowd's TTFB is one pass of small writes.
    assert order[:20] == [(n, FIRST_BYTES) for n in range(20)]
    assert order[20:] == [(n, 2 * FIRST_BYTES) for n in range(20)]
    fill.write(memoryview(bytes(7 * FIRST_BYTES)))  # later chunks: one write each
    assert order[40:] == [(n, 7 * FIRST_BYTES) for n in range(20)]
    assert await asyncio.gather(*pushes) == [True] * 20


async def test_a_reader_gets_its_own_range_and_what_arrived_before_it_came() -> None:
    fill = _fill()
    fill.write(memoryview(DATA)[:300])
    early, late = Client(), Client()
    late_push = asyncio.create_task(fill.push(late, 250, 700, 5))
    await _registered()
    assert late.chunks == [DATA[250:300]]  # written at once, before any wait
    fill.write(memoryview(DATA)[300:650])
    fill.write(memoryview(DATA)[650:])
    assert await late_push
    assert late.received == DATA[250:700]
    assert await fill.push(early, 0, 100, 5)  # a complete range needs no wait at all
    assert early.received == DATA[:100]


async def test_a_reader_that_leaves_is_dropped_and_the_others_go_on() -> None:
    fill = _fill()
    staying, leaving = Client(), Client(leaves_after=1)
    pushes = [asyncio.create_task(fill.push(c, 0, len(DATA), 5)) for c in (staying, leaving)]
    await _registered()
    for start in range(0, len(DATA), 100):
        fill.write(memoryview(DATA)[start : start + 100])
    assert await asyncio.gather(*pushes) == [True, False]
    assert staying.received == DATA
    assert leaving.received == DATA[:100]  # never written to again


async def test_a_reader_whose_writes_fail_does_not_fail_the_fill(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(data: memoryview) -> bool:
        raise RuntimeError("transport exploded")

    fill, fine = _fill(), Client()
    pushes = [asyncio.create_task(fill.push(s, 0, len(DATA), 5)) for s in (broken, fine)]
    await _registered()
    with caplog.at_level(logging.ERROR, logger="edge.fills"):
        fill.write(memoryview(DATA))
    assert await asyncio.gather(*pushes) == [False, True]
    assert fine.received == DATA
    assert "writing fetched bytes to a client failed" in caplog.text


async def test_a_failed_fill_raises_its_error_in_every_reader() -> None:
    fill = _fill()
    clients = [Client() for _ in range(3)]
    pushes = [asyncio.create_task(fill.push(c, 0, len(DATA), 5)) for c in clients]
    await _registered()
    fill.write(memoryview(DATA)[:40])
    fill.fail(OriginUnavailable("origin reset", code="origin_unreachable"))
    results = await asyncio.gather(*pushes, return_exceptions=True)
    assert all(isinstance(r, OriginUnavailable) and r.code == "origin_unreachable" for r in results)
    assert all(c.received == DATA[:40] for c in clients)
    with pytest.raises(OriginUnavailable):  # a reader that comes later gets it at once
        await fill.push(Client(), 0, len(DATA), 5)


async def test_a_push_times_out_only_without_progress() -> None:
    fill, client = _fill(), Client()
    push = asyncio.create_task(fill.push(client, 0, 300, 0.1))
    for start in range(0, 300, 50):  # a byte every 60 ms: progress within each 100 ms
        await asyncio.sleep(0.06)
        fill.write(memoryview(DATA)[start : start + 50])
    assert await push
    stalled = asyncio.create_task(fill.push(Client(), 300, 600, 0.1))
    with pytest.raises(OriginTimeout) as caught:
        await asyncio.wait_for(stalled, 2)
    assert caught.value.code == "fill_wait_timeout"


async def test_a_cancelled_reader_is_written_to_no_more() -> None:
    fill, client = _fill(), Client()
    push = asyncio.create_task(fill.push(client, 0, len(DATA), 5))
    await _registered()
    fill.write(memoryview(DATA)[:10])
    push.cancel()
    with pytest.raises(asyncio.CancelledError):
        await push
    fill.write(memoryview(DATA)[10:])
    assert client.received == DATA[:10]
