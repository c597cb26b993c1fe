"""The admin listener on aiohttp's server, with the public listener's rules where they matter:

- A request aiohttp cannot parse gets a JSON ``400`` with a stable code and a closed
  connection, and one WARNING line naming the peer and the kind of fault, never the bytes
  (they may hold a token). aiohttp itself would echo up to 128 KB of them.
- Only HTTP/1.0 and 1.1 are served: another version gets ``505`` (HTTP/0.9 ``400``).
- ``server.max_header_bytes`` bounds a whole header line, name and value together.
- ``Server: encore``, without versions; an access log line per request, ``sig`` blanked.

aiohttp has no public hook for the protocol class, so :class:`EdgeRunner` builds aiohttp's
``Server`` itself from the application's handler (the one place that reaches into aiohttp).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http import HttpVersion10, HttpVersion11
from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import ERROR, RequestHandler

from edge.http.response import SERVER_HEADER, error_body
from edge.telemetry import metrics
from origin.settings import Settings

log = logging.getLogger("edge.admin.http")

# A request the app must refuse before routing (see _checked_request): (status, code, message).
REFUSAL = web.RequestKey("encore_refusal", tuple)


def json_error(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    details: Mapping[str, str] | None = None,
) -> web.Response:
    body = error_body(code, message, details)
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


_SIG = re.compile(r"(?<=[?&])sig=[^&]*")
_FIRST_LINE_CHARS = 100  # of a parser error's message, in the log


class Connection(RequestHandler):
    """aiohttp's protocol, answering requests it cannot parse with JSON."""

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

    def __call__(self) -> RequestHandler:
        return Connection(self, loop=self._loop, **self._kwargs)


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


def _body_bytes(request: web.BaseRequest, response: web.StreamResponse) -> int:
    # aiohttp's body_length counts the head too: the access log is for body bytes.
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
            app._handle,  # type: ignore[arg-type]  # aiohttp's own pairing, as in AppRunner
            request_factory=_checked_request(app._make_request, self._max_header_line),
            loop=loop,
            **self._kwargs,
        )


async def _add_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """An ``on_response_prepare`` hook: aiohttp would announce its and Python's versions."""
    response.headers["Server"] = SERVER_HEADER
