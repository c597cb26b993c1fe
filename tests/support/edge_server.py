"""A real edge (the production app factory) on a loopback socket, in a thread of its own.

Tests talk to it over real TCP with http.client, which sends paths and headers verbatim.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import http.client
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from edge.runtime.app import EdgeApp
from edge.runtime.worker import Serving
from edge.telemetry.access_log import AccessLog
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
        self._serving: Serving | None = None
        # The access log, in a file of its own (read with access_lines()).
        self._log_dir = tempfile.TemporaryDirectory(prefix="encore-access-")
        self.access_log_path = Path(self._log_dir.name) / "access.log"
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
        if self._serving is not None:
            self._loop.run_until_complete(self._serving.stop(drain_s=1.0))
        self._log_dir.cleanup()
        self._loop.run_until_complete(self._loop.shutdown_default_executor())
        self._loop.close()

    async def _start(self) -> None:
        access_log = None
        if self.settings.server.access_log:
            log_format = self.settings.server.access_log_format
            access_log = AccessLog(str(self.access_log_path), log_format)
        self._serving = Serving(EdgeApp(self.settings, clock=self.clock), access_log)
        self.port = await self._serving.start("127.0.0.1", 0)

    def _access_log(self) -> list[str]:
        path = self.access_log_path
        return path.read_text().splitlines() if path.exists() else []

    def access_mark(self) -> int:
        """Where the access log is now: pass it to :meth:`access_lines` (after a short wait,
        so lines of answers already given have been flushed)."""
        time.sleep(0.25)  # the log flushes every 0.1 s
        return len(self._access_log())

    def access_lines(self, count: int, since: int = 0, timeout_s: float = 10) -> list[str]:
        """The first ``count`` access log lines after ``since`` (a mark), waiting for them
        (a line is written once its response is finished, and flushed within 0.1 s)."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = self._access_log()[since:]
            if len(lines) >= count:
                return lines[:count]
            assert time.monotonic() < deadline, f"{len(lines)} access log lines, not {count}"
            time.sleep(0.02)

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
    def app(self) -> EdgeApp:
        """The running edge app; read its state (``app.slices``...) on the edge's loop,
        through :meth:`call`."""
        assert self._serving is not None, "the edge is not started"
        return self._serving.app

    def call(self, factory: Callable[[EdgeApp], Awaitable[T]], timeout: float = 30) -> T:
        """Run ``factory(app)`` on the edge's event loop and return what it gives, e.g. a
        drain hook: ``edge.call(lambda app: app.prefetcher.idle())``."""

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
