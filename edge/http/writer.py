"""The writing half of a public connection: whole responses, bodies held in memory (written
as fast as the client takes them, continued from ``resume_writing``, without a coroutine),
streamed bodies whose head leaves with their first bytes, flow control with a bound on what
one connection queues, and the send timeout that resets a client that stops reading.

:class:`edge.http.request_head.RequestHead` is the reading half and
:class:`edge.http.protocol.HttpConnection` the whole connection; this class holds the state and
calls it back through ``_done`` after every answer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Sequence

from edge.http.request import Request
from edge.http.response import COMMON_HEADERS, JSON, DateHeader, error_body, status_line
from edge.telemetry import metrics

log = logging.getLogger("edge.http")

# Per connection: past this many bytes queued in user space, writers wait for the client.
QUEUE_HIGH_BYTES = 64 * 1024
QUEUE_LOW_BYTES = 16 * 1024
# What a paused connection must take per send timeout to count as making progress.
MIN_PROGRESS_BYTES = QUEUE_LOW_BYTES
# The longest single write the edge makes to one connection (a larger chunk is split).
MAX_WRITE_BYTES = 256 * 1024
# Unsent bytes past which a fill stops writing to this client itself (see edge.cache.fills).
CONGESTED_ABOVE_BYTES = 256 * 1024
JOIN_BELOW_BYTES = 2048  # smaller first bytes are copied after the head, larger ones not
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
_NO_LENGTH = frozenset({204, 304})  # RFC 9110: no Content-Length (204), or the 200's (304)
_DATE = DateHeader()


class ClientGone(ConnectionResetError):
    """The client left (or was cut for not reading) while its response was being written."""


class ResponseWriter:
    """See the module docstring. Also the ``Client`` a slice fill writes to directly."""

    _transport: asyncio.Transport | None
    _close_after: bool

    def __init__(self, loop: asyncio.AbstractEventLoop, send_timeout_s: float) -> None:
        self._loop = loop
        self._send_timeout_s = send_timeout_s
        self._pending_head: bytes | None = None  # a streamed head, sent with its first bytes
        self._rest: deque[bytes | memoryview] = deque()  # of a body in memory, still to write
        self._rest_of: Request | None = None  # the request those bytes answer
        self._status = 0
        self.body_sent = 0
        self.first_byte_at: float | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._queued_at_check = 0
        self.closed = False

    def _done(self, request: Request | None, status: str, body_bytes: int) -> None:
        """An answer is complete (``status``: its outcome): the connection goes on."""
        raise NotImplementedError

    def start_answer(self) -> None:
        """A new request is being answered."""
        self._status = 0
        self.body_sent = 0
        self.first_byte_at = None
        self._pending_head = None

    def pause_writing(self) -> None:
        self._paused = True
        self._arm_watchdog()

    def resume_writing(self) -> None:
        self._paused = False
        self._disarm_watchdog()
        self._wake_writers()
        if self._rest_of is not None:
            self._push_rest()

    def writer_lost(self) -> None:
        """The connection is gone: wake what waits on it, and end an answer in progress."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._wake_writers()
        if self._rest_of is not None:
            self._push_rest()  # counts it: the client left

    # --- answering: whole responses ------------------------------------------------------

    def respond(
        self,
        request: Request | None,
        status: int,
        block: bytes,
        body: bytes | memoryview = b"",
        *,
        length: int | None = None,
    ) -> None:
        """Answer with the whole response: ``block`` (header lines), and ``body``, unless
        the request is a HEAD (``length`` then gives the Content-Length a GET would have)."""
        transport = self._transport
        if transport is None or self.closed:
            self._done(request, "client_closed", 0)
            return
        head_only = request is not None and request.method == "HEAD"
        size = len(body) if length is None else length
        head = self._head(request, status, block, size)
        self._status = status
        if head_only or not body:
            transport.write(head)
            sent = 0
        elif len(body) < JOIN_BELOW_BYTES:
            transport.write(head + body)
            sent = len(body)
        else:
            transport.writelines((head, body))
            sent = len(body)
        self.first_byte_at = time.perf_counter()
        self._done(request, str(status), sent)

    def respond_views(
        self,
        request: Request,
        status: int,
        block: bytes,
        views: Sequence[bytes | memoryview],
        length: int,
    ) -> None:
        """Answer with a body held in memory as ``views`` (slices, pinned): written as fast
        as the client takes it, at most :data:`MAX_WRITE_BYTES` at a time past the queue
        bound, continued from :meth:`resume_writing`: flow control without a coroutine."""
        if self._transport is None or self.closed:
            self._done(request, "client_closed", 0)
            return
        self._pending_head = self._head(request, status, block, length)
        self._status = status
        self._rest.extend(views)
        self._rest_of = request
        self._push_rest()

    def _push_rest(self) -> None:
        rest = self._rest
        gone = self.closed
        while rest and not self._paused and not gone:
            view = rest.popleft()
            if len(view) > MAX_WRITE_BYTES:
                rest.appendleft(memoryview(view)[MAX_WRITE_BYTES:])
                view = memoryview(view)[:MAX_WRITE_BYTES]
            gone = not self.send_now(view)
        request = self._rest_of
        if request is not None and (not rest or gone):
            self._rest_of = None
            rest.clear()
            outcome = "client_closed" if gone else str(self._status)
            self._done(request, outcome, self.body_sent)

    def refuse(
        self,
        request: Request | None,
        status: int,
        code: str,
        message: str,
        *,
        head_only: bool = False,
    ) -> None:
        """A JSON error, and the connection closed after it."""
        self._close_after = True
        body = error_body(code, message)
        block = f"Content-Type: {JSON}\r\n".encode()
        if head_only:
            self.respond(request, status, block, length=len(body))
        else:
            self.respond(request, status, block, body)

    def _head(self, request: Request | None, status: int, block: bytes, length: int) -> bytes:
        if request is None or not request.keep_alive or self._close_after:
            self._close_after = True
            fate = b"Connection: close\r\n"
        elif request.version == "1.0":
            fate = b"Connection: keep-alive\r\n"
        else:
            fate = b""
        return b"".join(
            (
                status_line(status),
                COMMON_HEADERS,
                _DATE.line(),
                block,
                b"" if status in _NO_LENGTH else b"Content-Length: %d\r\n" % length,
                fate,
                b"\r\n",
            )
        )

    # --- answering: streamed bodies --------------------------------------------------------

    def begin(self, request: Request, status: int, block: bytes, length: int) -> None:
        """Start a streamed response; its head leaves with the first body bytes, so a
        failure before them can still be answered with a JSON error."""
        self._pending_head = self._head(request, status, block, length)
        self._status = status

    @property
    def head_sent(self) -> bool:
        return self._status != 0 and self._pending_head is None

    @property
    def congested(self) -> bool:
        transport = self._transport
        return transport is not None and transport.get_write_buffer_size() > CONGESTED_ABOVE_BYTES

    def send_now(self, data: bytes | memoryview) -> bool:
        """Write ``data`` (with the head, the first time) at once, without waiting for a
        slow client. False if the client is gone (nothing written)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        head = self._pending_head
        if head is not None:
            self._pending_head = None
            if len(data) < JOIN_BELOW_BYTES:
                transport.write(head + data)
            else:  # no copy of a large body: one vectored write
                transport.writelines((head, data))
            self.first_byte_at = time.perf_counter()
        elif data:
            transport.write(data)
        self.body_sent += len(data)
        return True

    async def write(self, data: bytes | memoryview) -> None:
        """Write ``data``, waiting while the client is behind (``ClientGone`` if it left)."""
        view = memoryview(data)
        for start in range(0, len(view), MAX_WRITE_BYTES):
            if not self.send_now(view[start : start + MAX_WRITE_BYTES]):
                raise ClientGone("the client went away")
            if self._paused:
                await self._drain()

    async def _drain(self) -> None:
        while self._paused and not self.closed:
            if self._drained is None:
                self._drained = self._loop.create_future()
            await self._drained
        if self.closed:
            raise ClientGone("the client went away")

    def _wake_writers(self) -> None:
        waiter, self._drained = self._drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def end(self, request: Request) -> None:
        """The streamed response is complete."""
        if self._pending_head is not None:
            self.send_now(b"")  # an empty body: the head goes alone
        self._done(request, str(self._status), self.body_sent)

    def abort(self, request: Request, *, client_left: bool) -> None:
        """Cut the connection: the body cannot be completed (or nobody reads it)."""
        if self._transport is not None:
            self._transport.abort()
        self._close_after = True
        self._done(request, "client_closed" if client_left else "aborted", self.body_sent)

    # --- the send timeout ----------------------------------------------------------------

    def _arm_watchdog(self) -> None:
        transport = self._transport
        if transport is None or self._watchdog is not None:
            return
        self._queued_at_check = transport.get_write_buffer_size()
        self._watchdog = self._loop.call_later(self._send_timeout_s, self._check_progress)

    def _disarm_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _check_progress(self) -> None:
        """Writing has been paused for the send timeout: cut the connection unless the
        client took a fair share of the queued bytes meanwhile (one that takes a byte now
        and then would otherwise hold its connection and buffers for ever)."""
        self._watchdog = None
        transport = self._transport
        if transport is None or self.closed:
            return
        queued = transport.get_write_buffer_size()
        if self._queued_at_check - queued >= min(MIN_PROGRESS_BYTES, self._queued_at_check):
            self._arm_watchdog()  # slow, but reading
            return
        metrics.SEND_TIMEOUTS.inc()
        log.debug("cutting a client that read nothing for %g s", self._send_timeout_s)
        # Reset, not close: a closed socket would keep trying to deliver its queued bytes
        # (orphaned, in FIN-WAIT-1), holding the kernel memory this is meant to free.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        transport.abort()
