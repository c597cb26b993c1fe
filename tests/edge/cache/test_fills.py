"""SliceFill.push: the fill writes to its readers itself, in one pass per chunk, the moment the
bytes land; each reader's end (complete, gone, congested, failed, timed out) stays its own."""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar

import pytest

from edge.cache.fills import FIRST_BYTES, Pushed, Run, SliceFill, StoredObject
from edge.http.errors import OriginUnavailable
from edge.http.writer import MAX_WRITE_BYTES

DATA = bytes(range(200)) * 5  # 1000 bytes


def _fill(size: int = len(DATA)) -> SliceFill:
    return SliceFill(Run(StoredObject("tracks/t/96-x.ogg", size)), 0, size, False)


class Client:
    """Records what it was sent. After ``leaves_after`` writes it is gone; after
    ``congested_after`` bytes it reports congestion (a slow reader)."""

    log: ClassVar[list[tuple[int, int]]] = []  # (name, bytes) in write order, all clients

    def __init__(
        self, name: int = 0, leaves_after: int | None = None, congested_after: int | None = None
    ) -> None:
        self.name = name
        self.chunks: list[bytes] = []
        self.leaves_after = leaves_after
        self.congested_after = congested_after

    def send_now(self, data: memoryview) -> bool:
        if self.leaves_after is not None and len(self.chunks) >= self.leaves_after:
            return False
        self.chunks.append(bytes(data))
        Client.log.append((self.name, len(data)))
        return True

    @property
    def congested(self) -> bool:
        return self.congested_after is not None and len(self.received) >= self.congested_after

    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)


def _complete(results: list[Pushed], stop: int = len(DATA)) -> bool:
    return all(r.position == stop and not r.gone and r.error is None for r in results)


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
    assert _complete(await asyncio.gather(*pushes))
    assert all(c.received == DATA for c in clients)


async def test_when_a_large_chunk_lands_every_new_reader_gets_a_little_first() -> None:
    Client.log = []
    fill = _fill()
    pushes = [asyncio.create_task(fill.push(Client(n), 0, len(DATA), 5)) for n in range(20)]
    await _registered()
    fill.write(memoryview(DATA))  # 1000 bytes: not over FIRST_BYTES, one write each
    assert _complete(await asyncio.gather(*pushes))
    assert Client.log == [(n, len(DATA)) for n in range(20)]

    Client.log, size = [], 10 * FIRST_BYTES
    fill = _fill(size)
    pushes = [asyncio.create_task(fill.push(Client(n), 0, size, 5)) for n in range(20)]
    await _registered()
    fill.write(memoryview(bytes(3 * FIRST_BYTES)))
    # Everyone's first bytes before anyone's rest: the crowd's TTFB is one pass of small writes.
    assert Client.log[:20] == [(n, FIRST_BYTES) for n in range(20)]
    assert Client.log[20:] == [(n, 2 * FIRST_BYTES) for n in range(20)]
    fill.write(memoryview(bytes(7 * FIRST_BYTES)))  # later chunks: one write each
    assert Client.log[40:] == [(n, 7 * FIRST_BYTES) for n in range(20)]
    assert _complete(await asyncio.gather(*pushes), size)


async def test_a_reader_gets_its_own_range_and_what_arrived_before_it_came() -> None:
    fill = _fill()
    fill.write(memoryview(DATA)[:300])
    early, late = Client(), Client()
    late_push = asyncio.create_task(fill.push(late, 250, 700, 5))
    await _registered()
    assert late.chunks == [DATA[250:300]]  # written at once, before any wait
    fill.write(memoryview(DATA)[300:650])
    fill.write(memoryview(DATA)[650:])
    assert _complete([await late_push], 700)
    assert late.received == DATA[250:700]
    assert _complete([await fill.push(early, 0, 100, 5)], 100)  # no wait at all
    assert early.received == DATA[:100]


async def test_a_late_reader_is_written_one_bounded_write_and_handed_back() -> None:
    """A reader that joins a large slice already in memory gets at most MAX_WRITE_BYTES from
    the fill: the rest is its own to write, with flow control."""
    size = 3 * MAX_WRITE_BYTES
    fill = _fill(size)
    fill.write(memoryview(bytes(size)))
    late = Client()
    pushed = await fill.push(late, 0, size, 5)
    assert (pushed.position, pushed.gone, pushed.error) == (MAX_WRITE_BYTES, False, None)
    assert [len(chunk) for chunk in late.chunks] == [MAX_WRITE_BYTES]


async def test_a_reader_that_leaves_is_dropped_and_the_others_go_on() -> None:
    fill = _fill()
    staying, leaving = Client(), Client(leaves_after=1)
    pushes = [asyncio.create_task(fill.push(c, 0, len(DATA), 5)) for c in (staying, leaving)]
    await _registered()
    for start in range(0, len(DATA), 100):
        fill.write(memoryview(DATA)[start : start + 100])
    stayed, left = await asyncio.gather(*pushes)
    assert _complete([stayed])
    assert left.gone
    assert left.position == 100
    assert staying.received == DATA
    assert leaving.received == DATA[:100]  # never written to again


async def test_a_congested_reader_is_handed_back_where_it_stopped() -> None:
    fill = _fill()
    fast, slow = Client(), Client(congested_after=250)
    pushes = [asyncio.create_task(fill.push(c, 0, len(DATA), 5)) for c in (fast, slow)]
    await _registered()
    for start in range(0, len(DATA), 100):
        fill.write(memoryview(DATA)[start : start + 100])
    done, handed_back = await asyncio.gather(*pushes)
    assert _complete([done])
    # The fill stopped writing to it once it was congested: the rest is the reader's to read
    # with flow control (SliceStore reads it through futures and the handler drains).
    assert (handed_back.position, handed_back.gone, handed_back.error) == (300, False, None)
    assert slow.received == DATA[:300]
    congested_from_start = Client(congested_after=0)
    assert (await fill.push(congested_from_start, 0, 500, 5)).position == 500  # all there


async def test_a_reader_whose_writes_fail_does_not_fail_the_fill(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Client):
        def send_now(self, data: memoryview) -> bool:
            raise RuntimeError("transport exploded")

    fill, fine = _fill(), Client()
    pushes = [asyncio.create_task(fill.push(c, 0, len(DATA), 5)) for c in (Broken(), fine)]
    await _registered()
    with caplog.at_level(logging.ERROR, logger="edge.cache.fills"):
        fill.write(memoryview(DATA))
    broken, ok = await asyncio.gather(*pushes)
    assert broken.gone
    assert _complete([ok])
    assert fine.received == DATA
    assert "writing fetched bytes to a client failed" in caplog.text


async def test_a_failed_fill_ends_every_push_with_its_error() -> None:
    fill = _fill()
    clients = [Client() for _ in range(3)]
    pushes = [asyncio.create_task(fill.push(c, 0, len(DATA), 5)) for c in clients]
    await _registered()
    fill.write(memoryview(DATA)[:40])
    error = OriginUnavailable("origin reset", code="origin_unreachable")
    fill.fail(error)
    results = await asyncio.gather(*pushes)
    assert all(r.error is error and r.position == 40 and not r.gone for r in results)
    assert all(c.received == DATA[:40] for c in clients)
    later = await fill.push(Client(), 0, len(DATA), 5)  # a reader that comes later: at once
    assert later.error is error


async def test_a_push_times_out_only_when_the_fill_makes_no_progress() -> None:
    wait_s = 0.05
    fill, near, far = _fill(), Client(), Client()
    loop = asyncio.get_running_loop()
    start = loop.time()
    # 50 bytes every wait_s / 2, on the loop's own clock, like the pushes' wait bounds. The
    # loop runs due timers in the order of their time, however late it gets to them, so every
    # wait_s a push waits holds a write: it always sees progress, whatever the load.
    for n, offset in enumerate(range(0, 800, 50)):
        chunk = memoryview(DATA)[offset : offset + 50]
        loop.call_at(start + (n + 1) * wait_s / 2, fill.write, chunk)
    pushes = [
        asyncio.create_task(fill.push(near, 0, 300, wait_s)),  # its last bytes: at 3 wait_s
        # Its bytes come at 7.5 wait_s, after 700 others: those arriving are progress too.
        asyncio.create_task(fill.push(far, 700, 800, wait_s)),
    ]
    assert _complete([await pushes[0]], 300)
    assert _complete([await pushes[1]], 800)
    assert fill.filled == 800  # every write ran
    stalled = await asyncio.wait_for(fill.push(Client(), 800, 900, wait_s), 10)
    assert stalled.error is not None
    assert stalled.error.code == "fill_wait_timeout"
    assert stalled.position == 800


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
