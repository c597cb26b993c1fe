"""A real edge (the production app factory) on a loopback socket, in a thread of its own.

Tests talk to it over real TCP with http.client, which sends paths and headers verbatim.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import http.client
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from edge.http.server import EdgeRunner
from edge.runtime.app import create_app
from origin.settings import Settings

T = TypeVar("T")


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def multipart_parts(self) -> list[tuple[str, bytes]]:
        """(Content-Range, payload) of each part of a multipart/byteranges body."""
        content_type = self.header("Content-Type") or ""
        assert content_type.startswith("multipart/byteranges; boundary="), content_type
        raw = b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + self.body
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        parts = []
        for part in message.iter_parts():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            parts.append((str(part["Content-Range"]), payload))
        return parts


MetricKey = tuple[str, frozenset[tuple[str, str]]]


class EdgeServer:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: the edge's own monotonic clock (see ``edge.runtime.app.CLOCK``), for tests
        that move time themselves (:class:`ManualClock`)."""
        self.settings = settings
        self.clock = clock
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> EdgeServer:
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("edge did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # surfaced in start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
        self._loop.run_until_complete(self._loop.shutdown_default_executor())
        self._loop.close()

    async def _start(self) -> None:
        self._runner = EdgeRunner(create_app(self.settings, clock=self.clock), self.settings)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Stop and clean up (the app's cleanup contexts run); a second call does nothing."""
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(20)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, timeout: float = 15
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            body = response.read()
            return Reply(response.status, response.headers, body)
        finally:
            conn.close()

    def metric_samples(self) -> dict[MetricKey, float]:
        """Every sample on /metrics, keyed by (name, frozenset of label pairs)."""
        reply = self.get("/metrics")
        assert reply.status == 200
        assert (reply.header("Content-Type") or "").startswith("text/plain")
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(reply.body.decode())
            for sample in family.samples
        }

    def get(self, path: str, **headers: str) -> Reply:
        return self.request("GET", path, {k.replace("_", "-"): v for k, v in headers.items()})

    # --- the app's state, on the edge's own loop ------------------------------------------

    @property
    def app(self) -> web.Application:
        """The running aiohttp application; read its state (``app[tracks.SLICES]``...) on
        the edge's loop, through :meth:`call`."""
        assert self._runner is not None, "the edge is not started"
        return self._runner.app

    def call(self, factory: Callable[[web.Application], Awaitable[T]], timeout: float = 30) -> T:
        """Run ``factory(app)`` on the edge's event loop and return what it gives, e.g. a
        drain hook: ``edge.call(lambda app: app[tracks.PREFETCHER].idle())``."""

        async def run() -> T:
            return await factory(self.app)

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        try:
            return future.result(timeout)
        finally:
            future.cancel()  # still running after the timeout: it stops there


class Counters:
    """Metric deltas since creation: the registry is shared by every in-process edge."""

    def __init__(self, edge: EdgeServer) -> None:
        self.edge = edge
        self.before = edge.metric_samples()

    def delta(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return self.edge.metric_samples().get(key, 0.0) - self.before.get(key, 0.0)
