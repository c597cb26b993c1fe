"""The public listener's HTTP/1.1 connection: an ``asyncio.Protocol`` over uvloop, with the
``httptools`` parser (llhttp, strict: obs-fold, whitespace before a colon, bare LF, NUL and
control bytes, duplicate ``Content-Length`` are parse errors).

One request is answered at a time, in order: pipelined requests wait in a short queue (and
reading pauses when it fills), and the next is taken only once the current response is
queued and the client has caught up with it. A handler answers either at once (a memory hit:
no task, no coroutine) or by returning a coroutine, which runs as a task.

:class:`HttpConnection` holds the connection's lifecycle (made, bytes received, lost), the
queue of requests taking their turn, and the timeouts; its bases read each request head
(:class:`edge.http.request_head.RequestHead`) and write the responses
(:class:`edge.http.writer.ResponseWriter`).

The connection's rules (RFC 9112, and what a node on the public internet needs):

- HTTP/1.0 and 1.1 only: ``2.0`` gets ``505``, HTTP/0.9 ``400``. Responses say ``HTTP/1.1``.
- No request bodies on the public API: a body on GET or HEAD (``Transfer-Encoding``, or
  ``Content-Length`` above 0) is a ``400 request_body_not_allowed``; any other method with
  a body is answered (405, 404) and the connection closed, its body unread.
- Limits: the request line (``server.max_request_line_bytes``), each header line, name and
  value (``server.max_header_bytes``), the header count (``server.max_headers``), the whole
  head (:data:`~edge.http.request_head.HEAD_SLACK_BYTES` over the request line and one
  header line).
- Timeouts: ``server.idle_timeout_s`` between requests; ``server.request_head_timeout_s``
  for a head once begun (a slowloris client gets ``408`` and is closed); the send timeout
  (``server.send_timeout_s``, see ``edge.http.writer``): a client that stops reading is reset.
- Backpressure: a bound on what one connection queues in user space, and a kernel send
  buffer of ``server.send_buffer_bytes`` (``edge.http.writer``).
- Every refusal is a JSON error with a stable code and the connection closed, logged as one
  WARNING line that names the peer and the fault, never the request's bytes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, cast

import httptools

from edge.http.request import Request
from edge.http.request_head import (
    HEAD_SLACK_BYTES,
    Limits,
    Refusal,
    RequestHead,
    parse_refusal,
    too_large,
)
from edge.http.writer import QUEUE_HIGH_BYTES, QUEUE_LOW_BYTES, ResponseWriter

log = logging.getLogger("edge.http")

Handler = Callable[[Request, "HttpConnection"], Coroutine[Any, Any, None] | None]


class Observer(Protocol):
    """Told of every answer: the access log and the request metrics."""

    def answered(self, request: Request | None, status: int, outcome: str, body_bytes: int) -> None:
        """``status`` as sent (0: none was); ``outcome``: the status, or ``client_closed``
        (the client left) or ``aborted`` (the edge cut a body it could not complete)."""


class Connections:
    """The open connections of a listener, and whether there are none."""

    def __init__(self) -> None:
        self.open: set[HttpConnection] = set()
        self.none = asyncio.Event()
        self.none.set()

    def add(self, conn: HttpConnection) -> None:
        self.open.add(conn)
        self.none.clear()

    def discard(self, conn: HttpConnection) -> None:
        self.open.discard(conn)
        if not self.open:
            self.none.set()


class HttpConnection(RequestHead, ResponseWriter, asyncio.Protocol):
    """See the module docstring. Also the ``Client`` a slice fill writes to directly."""

    def __init__(
        self,
        handler: Handler,
        observer: Observer,
        limits: Limits,
        loop: asyncio.AbstractEventLoop,
        registry: Connections | None = None,
    ) -> None:
        self._registry = registry  # the listener's open connections
        self._handler = handler
        self._observer = observer
        self._limits = limits
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self.remote: str | None = None
        self.state: dict[str, object] = {}  # the edge's per-connection state, by feature
        self._queue: deque[Request | Refusal] = deque()
        self._current: Request | None = None
        self._pumping = False
        self._reading = True
        self._stop_parsing = False  # a refusal or a body we will not read: take no more bytes
        self._close_after = False  # close once the current response is out
        RequestHead.__init__(self)
        self._after_drain = False  # take the next request once the client catches up
        ResponseWriter.__init__(self, loop, limits.send_timeout_s)
        self._idle: asyncio.TimerHandle | None = None
        self._idle_since = 0.0
        self._head_since = 0.0
        self._head_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if self._registry is not None:
            self._registry.add(self)
        transport.set_write_buffer_limits(high=QUEUE_HIGH_BYTES, low=QUEUE_LOW_BYTES)
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            limits = self._limits
            if limits.send_buffer_bytes:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limits.send_buffer_bytes)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Bytes handed to the kernel are the kernel's to time out: unacknowledged (a zero
            # window included) for this long, the connection is reset, also after a close.
            if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux; elsewhere the watchdog alone
                timeout_ms = int(limits.send_timeout_s * 1000)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self._stop_parsing:
            return
        if self._in_head:  # a head over several reads: bound what the parser accumulates
            self._head_bytes += len(data)
            limits = self._limits
            if (
                self._head_bytes
                > limits.max_request_line + limits.max_header_line + HEAD_SLACK_BYTES
            ):
                self._refuse_parsing(too_large("the request head is over this edge's limit"))
                self._pump()
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._stop_parsing = True  # no protocol switch here: answer, then close
            self._close_after = True
        except (httptools.HttpParserCallbackError, httptools.HttpParserError) as exc:
            refusal = self._refusal or parse_refusal(exc)
            self._refuse_parsing(refusal, exc)
        else:
            # A request line without a version is HTTP/0.9, after which llhttp waits for
            # headers: refuse it now, not when the head timeout runs out. (Only 0.9 has the
            # line end right after the target; the head timeout covers what this misses.)
            if self._in_head and self._url and not self._raw_headers:
                tail = bytes(self._url[-64:])
                if data.endswith((tail + b"\r\n", tail + b"\n")):
                    refusal = Refusal(400, "malformed_request", "HTTP/0.9 requests are not served")
                    self._refuse_parsing(refusal)
        self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._registry is not None:
            self._registry.discard(self)
        for timer in (self._idle, self._head_timer):
            if timer is not None:
                timer.cancel()
        self._queue.clear()
        self.writer_lost()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._after_drain:
            self._after_drain = False
            self._pump()

    def close_when_idle(self) -> None:
        """Shutting down: close now if no request is being answered, else after it."""
        self._close_after = True
        self._stop_parsing = True
        if self._current is None and self._transport is not None:
            self._transport.close()

    def cut(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # --- taking requests in turn ---------------------------------------------------------

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._current is None and self._queue and not self.closed:
                item = self._queue.popleft()
                if isinstance(item, Refusal):
                    self.refuse(
                        None, item.status, item.code, item.message, head_only=item.head_only
                    )
                    return
                self._dispatch(item)
            if self._current is None and not self._queue and not self.closed:
                if not self._reading and self._transport is not None:
                    self._transport.resume_reading()
                    self._reading = True
                if not self._in_head:
                    self._arm_idle()
        finally:
            self._pumping = False

    def _dispatch(self, request: Request) -> None:
        self._current = request
        self.start_answer()
        try:
            pending = self._handler(request, self)
        except Exception:
            log.exception("unexpected error serving %s %s", request.method, request.path)
            self._internal_error(request)
            return
        if pending is not None:
            self._loop.create_task(self._run(request, pending))

    async def _run(self, request: Request, pending: Coroutine[Any, Any, None]) -> None:
        try:
            await pending
        except Exception:
            log.exception("unexpected error serving %s %s", request.method, request.path)
            self._internal_error(request)

    def _internal_error(self, request: Request) -> None:
        if self._current is not request:
            return  # answered already
        if self._status:  # the head is out: the body cannot be completed
            self.abort(request, client_left=False)
            return
        self.refuse(request, 500, "internal_error", "internal error; see the edge's log")

    def _refuse_parsing(self, refusal: Refusal, exc: BaseException | None = None) -> None:
        self._stop_parsing = True
        self._queue.append(refusal)
        if refusal.status != 505:
            fault = str(exc).split("\n", 1)[0][:100] if exc is not None else refusal.code
            if isinstance(exc, httptools.HttpParserCallbackError):
                fault = refusal.code
            log.warning(
                "refused a malformed request from %s: %s (%s)", self.remote, refusal.code, fault
            )

    def _head_late(self) -> None:
        """A request head begun and not finished in time: a slowloris client. (The timer is
        not moved per request: it checks when the head it watches began, and re-arms.)"""
        self._head_timer = None
        if not self._in_head or self.closed:
            return
        left = self._head_since + self._limits.head_timeout_s - self._loop.time()
        if left > 0:
            self._head_timer = self._loop.call_later(left, self._head_late)
            return
        if self._current is None:
            self._stop_parsing = True
            self.refuse(None, 408, "request_timeout", "the request head did not arrive in time")

    def _arm_idle(self) -> None:
        """The connection is idle from now. (One timer, not one per request: when it fires
        it checks how long the connection has really been idle, and re-arms.)"""
        self._idle_since = self._loop.time()
        if self._idle is None:
            self._idle = self._loop.call_later(self._limits.idle_timeout_s, self._idle_out)

    def _idle_out(self) -> None:
        self._idle = None
        if self._current is not None or self._in_head or self._transport is None or self.closed:
            return  # busy: the next _arm_idle starts the clock again
        left = self._idle_since + self._limits.idle_timeout_s - self._loop.time()
        if left > 0:
            self._idle = self._loop.call_later(left, self._idle_out)
            return
        self._transport.close()

    # --- after each answer ---------------------------------------------------------------

    def _done(self, request: Request | None, status: str, body_bytes: int) -> None:
        if request is not None and self._current is not request:
            return  # answered already
        self._current = None
        self._observer.answered(request, self._status, status, body_bytes)
        transport = self._transport
        if self._close_after or self.closed:
            self._queue.clear()
            if transport is not None and not self.closed:
                transport.close()  # after the queued bytes
            return
        if self._paused:
            self._after_drain = True  # no next request before the client has caught up
            return
        self._pump()
