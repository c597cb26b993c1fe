"""The admin token's backoff per peer (``edge.admin.auth``): five wrong tokens are free, then
each failure makes the peer wait 1 s, doubling to 60 s, while every request from it is a
``429 too_many_failures`` (the right token too); the right token afterwards clears the record.
``FailureBackoff`` and the middleware on an injected clock, then a real admin listener."""

from __future__ import annotations

import http.client
import math
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from edge.admin.auth import PEERS_TRACKED, FailureBackoff, require_token
from edge.admin.middleware import MIDDLEWARES
from origin.local_s3 import free_port
from tests.support.clock import ManualClock
from tests.support.edge_server import Counters, EdgeServer

TOKEN = "the-right-admin-token"
PEER = "192.0.2.1"


def test_five_failures_are_free_then_each_one_doubles_the_wait_up_to_60_s() -> None:
    clock = ManualClock()
    backoff = FailureBackoff(clock)
    for _ in range(5):
        backoff.failed(PEER)
        assert backoff.wait_s(PEER) == 0.0
    waits = []
    for _ in range(10):  # failures 6 to 15, each heard once the last wait is over
        backoff.failed(PEER)
        waits.append(backoff.wait_s(PEER))
        clock.advance(waits[-1])
        assert backoff.wait_s(PEER) == 0.0
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0]
    for _ in range(2000):  # no overflow however many
        backoff.failed(PEER)
    assert backoff.wait_s(PEER) == 60.0


def test_the_wait_runs_down_on_the_clock() -> None:
    clock = ManualClock()
    backoff = FailureBackoff(clock)
    for _ in range(7):
        backoff.failed(PEER)
    assert backoff.wait_s(PEER) == 2.0
    clock.advance(0.5)
    assert backoff.wait_s(PEER) == 1.5
    clock.advance(1.5)
    assert backoff.wait_s(PEER) == 0.0
    backoff.failed(PEER)  # the 8th
    assert backoff.wait_s(PEER) == 4.0


def test_peers_are_apart_and_a_success_clears_the_record() -> None:
    clock = ManualClock()
    backoff = FailureBackoff(clock)
    for _ in range(8):
        backoff.failed(PEER)
    assert backoff.wait_s(PEER) == 4.0
    assert backoff.wait_s("192.0.2.2") == 0.0  # another peer is not held back
    clock.advance(4.0)
    backoff.succeeded(PEER)
    # A clean record: five free failures again, then 1 s (not 8 s).
    for _ in range(5):
        backoff.failed(PEER)
    assert backoff.wait_s(PEER) == 0.0
    backoff.failed(PEER)
    assert backoff.wait_s(PEER) == 1.0


def test_the_table_of_peers_is_bounded() -> None:
    backoff = FailureBackoff(ManualClock())
    for _ in range(6):
        backoff.failed("first")
    assert backoff.wait_s("first") == 1.0
    for n in range(PEERS_TRACKED):
        backoff.failed(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    # The oldest record made room; the table holds no more than PEERS_TRACKED peers.
    assert backoff.wait_s("first") == 0.0
    last = PEERS_TRACKED - 1
    latest = f"10.{last >> 16 & 255}.{last >> 8 & 255}.{last & 255}"
    for _ in range(5):
        backoff.failed(latest)  # its first failure is still on record: this is its 6th
    assert backoff.wait_s(latest) == 1.0


# --- the middleware, on a real aiohttp server with the injected clock ------------------------


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@pytest.fixture
async def guarded() -> AsyncIterator[tuple[str, ManualClock]]:
    """A server whose one route needs TOKEN through ``require_token`` on a test clock."""
    clock = ManualClock()
    app = web.Application(middlewares=[*MIDDLEWARES, require_token(TOKEN, FailureBackoff(clock))])
    app.router.add_get("/admin/stats", _ok)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/admin/stats", clock
    await runner.cleanup()


def _failures(outcome: str) -> float:
    return REGISTRY.get_sample_value("encore_admin_auth_failures_total", {"outcome": outcome}) or 0


async def test_while_a_peer_waits_even_the_right_token_is_a_429(
    guarded: tuple[str, ManualClock],
) -> None:
    url, clock = guarded
    refused, held = _failures("refused"), _failures("backoff")

    async with aiohttp.ClientSession() as session:

        async def ask(token: str) -> tuple[int, str | None, str]:
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(url, headers=headers) as response:
                doc = await response.json()
                return response.status, response.headers.get("Retry-After"), doc.get("error", "")

        for _ in range(6):  # five free, and the sixth, which starts the wait
            assert await ask("wrong") == (401, None, "unauthorized")
        assert await ask(TOKEN) == (429, "1", "too_many_failures")
        clock.advance(0.75)
        assert await ask("wrong") == (429, "1", "too_many_failures")  # not heard: no failure
        clock.advance(0.25)
        assert await ask("wrong") == (401, None, "unauthorized")  # the 7th failure: 2 s
        clock.advance(0.5)
        assert await ask(TOKEN) == (429, "2", "too_many_failures")  # 1.5 s left, rounded up
        clock.advance(1.5)
        assert (await ask(TOKEN))[0] == 200  # heard again, and the record is cleared
        for _ in range(6):
            assert (await ask("wrong"))[0] == 401
        assert await ask("wrong") == (429, "1", "too_many_failures")

    assert _failures("refused") - refused == 13
    assert _failures("backoff") - held == 4


# --- a real admin listener ----------------------------------------------------------------


def test_a_flood_of_wrong_tokens_is_held_back(start_edge: Callable[..., EdgeServer]) -> None:
    port = free_port()
    edge = start_edge(admin={"token": TOKEN, "port": port})
    counters = Counters(edge)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)  # one keep-alive connection

    def ask(token: str) -> tuple[int, str | None]:
        conn.request("GET", "/admin/stats", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Retry-After")

    try:
        replies = [ask("wrong-token-guess") for _ in range(6)]
        started = time.monotonic()  # the 6th failure: the first wait (1 s) begins
        right = ask(TOKEN)
        replies += [ask("wrong-token-guess") for _ in range(2000 - 6)]
        elapsed = time.monotonic() - started
    finally:
        conn.close()

    assert replies[:6] == [(401, None)] * 6
    assert right == (429, "1")  # the right token too, while the peer waits
    statuses = [status for status, _ in replies]
    heard = statuses.count(401)
    # After the first six, a wrong token is heard only once each wait (1, 2, 4... s) is over.
    assert 6 <= heard <= 6 + int(math.log2(elapsed + 1)), (heard, elapsed)
    assert statuses.count(429) == 2000 - heard
    assert all(1 <= int(after or 0) <= 60 for status, after in replies if status == 429)
    assert counters.delta("encore_admin_auth_failures_total", outcome="refused") == heard
    assert counters.delta("encore_admin_auth_failures_total", outcome="backoff") == 2001 - heard
