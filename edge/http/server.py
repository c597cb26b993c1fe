"""The edge's HTTP listeners on aiohttp's server, with Encore's rules at the connection level.

aiohttp parses requests and runs the app; this module changes what its defaults get wrong for
a node on the public internet:

- A request aiohttp cannot parse gets a JSON ``400`` with a stable code and a closed
  connection, and one WARNING line naming the peer and the kind of fault, never the bytes
  (they may hold a token). aiohttp itself would echo up to 128 KB of them, in the body and in
  an ERROR traceback.
- Only HTTP/1.0 and 1.1 are served: another version gets ``505`` (HTTP/0.9, which has no
  version, ``400``), on an HTTP/1.1 status line rather than one naming the client's version.
- ``server.max_header_bytes`` bounds a whole header line, name and value together.
- **Send timeout.** A connection whose queued response bytes make no progress for
  ``server.send_timeout_s`` (the client took less than :data:`MIN_PROGRESS_BYTES` of them) is
  cut and counted (``encore_send_timeouts_total``): a client that stops reading cannot hold
  memory and a connection. Each connection queues at most
  :data:`QUEUE_HIGH_BYTES` in user space before its writers wait (plus one write of at most
  :data:`MAX_WRITE_BYTES`, see ``edge.http.audio_response``), and its kernel send buffer is
  ``server.send_buffer_bytes`` rather than autotuned up to megabytes. What the kernel holds is
  bounded in time by ``TCP_USER_TIMEOUT`` (the same timeout), even once the edge has closed
  the connection: a response small enough to fit in the buffers never pauses the writer.
- ``Server: encore``, without versions.
- The access log line, with a signed URL's ``sig`` blanked (the path and ``kid`` stay).
- :func:`serve`: run an app until SIGTERM or SIGINT, then shut down gracefully.

aiohttp has no public hook for the protocol class, so :class:`EdgeRunner` builds aiohttp's
``Server`` itself from the application's handler (the one place that reaches into aiohttp).
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
import struct
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http import HttpVersion10, HttpVersion11
from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import ERROR, RequestHandler

from edge.http.errors import json_error
from edge.telemetry import metrics
from origin.settings import Settings

log = logging.getLogger("edge.http")

SERVER_HEADER = "encore"
# Per connection: past this many bytes queued in user space, writers wait for the client.
QUEUE_HIGH_BYTES = 64 * 1024
QUEUE_LOW_BYTES = 16 * 1024
# What a paused connection must take per send timeout to count as making progress.
MIN_PROGRESS_BYTES = QUEUE_LOW_BYTES
# The longest single write the edge makes to one connection (a larger chunk is split).
MAX_WRITE_BYTES = 256 * 1024
# A request the app must refuse before routing (see _checked_request): (status, code, message).
REFUSAL = web.RequestKey("encore_refusal", tuple)
_SIG = re.compile(r"(?<=[?&])sig=[^&]*")
_FIRST_LINE_CHARS = 100  # of a parser error's message, in the log
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class Connection(RequestHandler):
    """One client connection: aiohttp's protocol with the send timeout, JSON parser errors,
    and per-connection state of the edge's own (the next-track hint budget)."""

    def __init__(
        self, manager: web.Server, *, send_timeout_s: float, send_buffer_bytes: int, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self.send_timeout_s = send_timeout_s
        self.send_buffer_bytes = send_buffer_bytes
        self.state: dict[str, object] = {}  # the edge's per-connection state, by feature
        self._watchdog: asyncio.TimerHandle | None = None
        self._queued_at_check = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if isinstance(transport, asyncio.WriteTransport):
            transport.set_write_buffer_limits(high=QUEUE_HIGH_BYTES, low=QUEUE_LOW_BYTES)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            if self.send_buffer_bytes:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)
            # Bytes already handed to the kernel are the kernel's to time out: unacknowledged
            # (a client that advertises a zero window included) for this long, the connection
            # is reset, also after it was closed with bytes still queued.
            if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux; elsewhere the watchdog alone
                timeout_ms = int(self.send_timeout_s * 1000)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._arm_watchdog()

    def resume_writing(self) -> None:
        self._disarm_watchdog()
        super().resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_watchdog()
        super().connection_lost(exc)

    def _arm_watchdog(self) -> None:
        transport = self.transport
        if transport is None:
            return
        self._queued_at_check = transport.get_write_buffer_size()
        self._watchdog = self._loop.call_later(self.send_timeout_s, self._check_progress)

    def _disarm_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _check_progress(self) -> None:
        """Writing has been paused for ``send_timeout_s``: cut the connection unless the client
        has taken a fair share of the queued bytes meanwhile (a client that takes a byte now
        and then would otherwise hold its connection and buffers for ever)."""
        self._watchdog = None
        transport = self.transport
        if transport is None:
            return
        queued = transport.get_write_buffer_size()
        if self._queued_at_check - queued >= min(MIN_PROGRESS_BYTES, self._queued_at_check):
            self._arm_watchdog()  # slow, but reading
            return
        metrics.SEND_TIMEOUTS.inc()
        log.debug("cutting a client that read nothing for %g s", self.send_timeout_s)
        # Reset, not close: a closed socket would keep trying to deliver its queued bytes
        # (orphaned, in FIN-WAIT-1), holding the kernel memory this is meant to free.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        transport.abort()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse (or, with 500, to a failure outside
        the app's middlewares, which is a bug)."""
        if status >= 500:
            log.error("unexpected error outside the app", exc_info=exc)
            response = json_error(500, "internal_error", "internal error; see the edge's log")
        else:
            code, text = _parse_fault(exc)
            log.warning(
                "refused a malformed request from %s: %s (%s)",
                request.remote,
                code,
                _first_line(exc),
            )
            metrics.requests("unmatched", "other", str(status)).inc()
            response = json_error(status, code, text)
        response.headers["Server"] = SERVER_HEADER
        response.force_close()
        return response


def _parse_fault(exc: BaseException | None) -> tuple[str, str]:
    if isinstance(exc, LineTooLong):
        return "request_too_large", "a request or header line is over this edge's limit"
    if isinstance(exc, HttpProcessingError) and "Too many headers" in str(exc.message):
        return "request_too_large", "the request has more headers than this edge takes"
    if isinstance(exc, BadHttpMethod | BadStatusLine):
        return "malformed_request", "the request line is not valid HTTP/1.1"
    return "malformed_request", "the request is not valid HTTP/1.1"


def _first_line(exc: BaseException | None) -> str:
    """The kind of fault in a parser error, without the request bytes it quotes: aiohttp puts
    them after the first line (``Invalid header value char:\\n\\n  b'Authorization: ...'``)."""
    if exc is None:
        return "-"
    text = str(exc.message) if isinstance(exc, HttpProcessingError) else type(exc).__name__
    first = text.split("\n", 1)[0].split(": b'", 1)[0].split(': b"', 1)[0]
    return first[:_FIRST_LINE_CHARS].encode("ascii", "backslashreplace").decode()


class _Server(web.Server):
    """aiohttp's server, making :class:`Connection` protocols and checking each request."""

    def __init__(self, *args: Any, connection: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connection = connection  # Connection's own options

    def __call__(self) -> RequestHandler:
        return Connection(self, loop=self._loop, **self._connection, **self._kwargs)


def _checked_request(
    factory: Callable[..., web.BaseRequest], max_header_line: int
) -> Callable[..., web.BaseRequest]:
    """Wrap the app's request factory: a request in another HTTP version than 1.0/1.1, or
    with a header line over ``max_header_line`` bytes, is marked for refusal (the app's first
    middleware answers it, so it is counted like any other)."""

    def make(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
        refusal = None
        version = message.version
        if message is ERROR:  # aiohttp's stand-in for a request it could not parse
            message = message._replace(version=HttpVersion11)
        elif version not in (HttpVersion11, HttpVersion10):
            if version.major == 0:
                refusal = (400, "malformed_request", "HTTP/0.9 requests are not served")
            else:
                refusal = (
                    505,
                    "http_version_not_supported",
                    "this edge speaks HTTP/1.1 (and 1.0)",
                )
            message = message._replace(version=HttpVersion11, should_close=True)
        else:
            for name, value in message.raw_headers:
                if len(name) + len(value) + 2 > max_header_line:
                    refusal = (
                        400,
                        "request_too_large",
                        f"a header line is over {max_header_line} bytes",
                    )
                    break
        request = factory(message, payload, protocol, writer, task)
        if refusal is not None:
            request[REFUSAL] = refusal
        return request

    return make


@runtime_checkable
class CountsBody(Protocol):
    """A response that counts the body bytes it wrote (``edge.http.audio_response``)."""

    @property
    def body_bytes(self) -> int: ...


def _body_bytes(request: web.BaseRequest, response: web.StreamResponse) -> int:
    # aiohttp's body_length counts the head too: the access log is for body bytes.
    if isinstance(response, CountsBody):
        return response.body_bytes
    if request.method == "HEAD":
        return 0
    return response.content_length or 0


class AccessLog(AbstractAccessLogger):
    """One line per request: peer, request line (``sig`` blanked), status, body bytes,
    ``Range``, ``X-Cache``, seconds, ``Content-Range`` (``encore-edge simulate`` replays it)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        target = request.path_qs
        if "sig=" in target:
            target = _SIG.sub("sig=-", target)
        version = request.version
        headers = response.headers
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %s %s %.6f %s',
            request.remote or "-",
            request.method,
            target,
            version.major,
            version.minor,
            response.status,
            _body_bytes(request, response),
            request.headers.get("Range", "-"),
            headers.get("X-Cache", "-"),
            time,
            headers.get("Content-Range", "-"),
        )


def runner_options(settings: Settings) -> dict[str, Any]:
    """The per-connection limits, from ``[server]``: request line and header sizes, and the
    idle timeout, which also closes a connection still short of a whole request head when it
    runs out (a slowloris client), since aiohttp only stops that clock at a request."""
    server = settings.server
    options: dict[str, Any] = {
        "keepalive_timeout": server.idle_timeout_s,
        "max_line_size": server.max_request_line_bytes,
        "max_field_size": server.max_header_bytes,
        "max_headers": server.max_headers,
        "access_log_class": AccessLog,
    }
    if not server.access_log:
        options["access_log"] = None  # a line per request costs a busy node ~15 µs of CPU
    return options


class EdgeRunner(web.AppRunner):
    """``web.AppRunner`` for an Encore app, with the settings' limits and the rules above."""

    def __init__(
        self, app: web.Application, settings: Settings, *, shutdown_timeout: float = 10.0
    ) -> None:
        super().__init__(app, shutdown_timeout=shutdown_timeout, **runner_options(settings))
        app.on_response_prepare.append(_add_server_header)  # every app this runner serves
        self._connection = {
            "send_timeout_s": settings.server.send_timeout_s,
            "send_buffer_bytes": settings.server.send_buffer_bytes,
        }
        self._max_header_line = settings.server.max_header_bytes

    async def _make_server(self) -> web.Server:
        # As web.AppRunner does, with our server class (aiohttp offers no hook for it).
        loop = asyncio.get_running_loop()
        app = self.app
        app._set_loop(loop)
        app.on_startup.freeze()
        await app.startup()
        app.freeze()
        return _Server(
            app._handle,
            request_factory=_checked_request(app._make_request, self._max_header_line),
            loop=loop,
            connection=self._connection,
            **self._kwargs,
        )


async def _add_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """An ``on_response_prepare`` hook: aiohttp would announce its and Python's versions."""
    response.headers["Server"] = SERVER_HEADER


def serve(
    app: web.Application,
    settings: Settings,
    *,
    loop: asyncio.AbstractEventLoop,
    reuse_port: bool = False,
    shutdown_timeout: float = 10.0,
    banner: str | None = None,
) -> None:
    """Serve ``app`` on ``server.host:server.port`` until SIGTERM or SIGINT; then stop
    accepting, let requests in flight finish (up to ``shutdown_timeout``), and run the app's
    cleanup (which drains what it must, such as pending disk writes)."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(
            _serve(app, settings, reuse_port=reuse_port, drain_s=shutdown_timeout, banner=banner)
        )
    finally:
        leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in leftovers:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        asyncio.set_event_loop(None)
        loop.close()


async def _serve(
    app: web.Application,
    settings: Settings,
    *,
    reuse_port: bool,
    drain_s: float,
    banner: str | None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = EdgeRunner(app, settings, shutdown_timeout=drain_s)
    try:
        await runner.setup()  # the app's startup: a failure still runs its cleanup below
        server = settings.server
        site = web.TCPSite(runner, server.host, server.port, reuse_port=reuse_port or None)
        await site.start()
        if banner is not None:
            print(banner.format(url=site.name), flush=True)
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()
