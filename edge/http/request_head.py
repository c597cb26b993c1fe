"""The reading half of a public connection: the request head, parsed by the ``httptools``
callbacks into a :class:`~edge.http.request.Request` queued for its turn, or refused
(:class:`Refusal`) by the head's rules: HTTP/1.0 and 1.1 only, exactly one ``Host`` in 1.1,
no body on GET or HEAD, no expectation but ``100-continue``, and the limits on the request
line, header lines and header count (:class:`Limits`, the connection's limits).

:class:`edge.http.protocol.HttpConnection` is the whole connection; this class holds the state
of the head being parsed, and arms the connection's head timer (``_head_late``) when a head
begins.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from dataclasses import dataclass

import httptools

from edge.http.request import Request

HEAD_SLACK_BYTES = 32 * 1024  # a whole head may exceed one line of each limit by this much
MAX_PIPELINED = 16  # parsed requests waiting their turn before reading pauses
_BODYLESS = frozenset({"GET", "HEAD"})
# Header names as sent -> lower-case str: clients send the same few names in every request.
# Bounded: all forgotten when it fills up (a client inventing names gains nothing).
_HEADER_KEYS: dict[bytes, str] = {}
MAX_HEADER_KEYS = 1024


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_line: int
    max_header_line: int
    max_headers: int
    idle_timeout_s: float
    head_timeout_s: float
    send_timeout_s: float
    send_buffer_bytes: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request refused before it reaches a handler."""

    status: int
    code: str
    message: str
    head_only: bool = False  # refusing a HEAD: no body


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the refusal is on the connection."""


class RequestHead:
    """See the module docstring."""

    _limits: Limits
    _loop: asyncio.AbstractEventLoop
    _parser: httptools.HttpRequestParser
    _transport: asyncio.Transport | None
    remote: str | None
    _queue: deque[Request | Refusal]
    _reading: bool
    _stop_parsing: bool
    _head_since: float
    _head_timer: asyncio.TimerHandle | None

    def __init__(self) -> None:
        # The request being parsed.
        self._url = bytearray()
        self._raw_headers: list[tuple[bytes, bytes]] = []  # as parsed, read at the head's end
        self._head_bytes = 0
        self._in_head = False
        self._refusal: Refusal | None = None

    def _head_late(self) -> None:
        """The head timer fired: a head begun and not finished in time is refused."""
        raise NotImplementedError

    # --- parser callbacks (httptools) ------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url.clear()
        self._raw_headers = []
        self._refusal = None
        self._head_since = self._loop.time()
        if self._head_timer is None:
            self._head_timer = self._loop.call_later(self._limits.head_timeout_s, self._head_late)

    def on_url(self, url: bytes) -> None:
        self._url += url
        # The whole line: method, target, version ("HTTP/1.1") and the two spaces.
        if len(self._url) + len(self._parser.get_method()) + 10 > self._limits.max_request_line:
            self._refusal = too_large(
                f"the request line is over {self._limits.max_request_line} bytes"
            )
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        raw = self._raw_headers
        raw.append((name, value))
        if len(raw) > self._limits.max_headers:
            self._refusal = too_large("the request has more headers than this edge takes")
            raise _Refused

    def _decoded_headers(self) -> tuple[dict[str, str], dict[str, list[str]] | None]:
        """The head's headers by lower-case name (the first value of each), and every value
        of those sent more than once."""
        headers: dict[str, str] = {}
        repeated: dict[str, list[str]] | None = None
        max_line = self._limits.max_header_line
        for name, value in self._raw_headers:
            if len(name) + len(value) + 2 > max_line:
                self._refusal = too_large(f"a header line is over {max_line} bytes")
                raise _Refused
            key = _HEADER_KEYS.get(name)
            if key is None:
                if len(_HEADER_KEYS) >= MAX_HEADER_KEYS:
                    _HEADER_KEYS.clear()
                key = _HEADER_KEYS[name] = name.decode("latin-1").lower()
            if key in headers:
                if repeated is None:
                    repeated = {}
                repeated.setdefault(key, [headers[key]]).append(value.decode("latin-1"))
            else:
                headers[key] = value.decode("latin-1")
        return headers, repeated

    def on_headers_complete(self) -> None:
        try:
            self._take_head()
        except _Refused:
            if self._refusal is not None and self._parser.get_method() == b"HEAD":
                self._refusal = dataclasses.replace(self._refusal, head_only=True)
            raise

    def _take_head(self) -> None:
        self._in_head = False
        self._head_bytes = 0  # (the head timer, if any, finds no head when it fires)
        parser = self._parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            if version.startswith("0"):
                self._refusal = Refusal(
                    400, "malformed_request", "HTTP/0.9 requests are not served"
                )
            else:
                self._refusal = Refusal(
                    505, "http_version_not_supported", "this edge speaks HTTP/1.1 (and 1.0)"
                )
            raise _Refused
        method = parser.get_method().decode("ascii")
        headers, repeated = self._decoded_headers()
        # RFC 9112 3.2: an HTTP/1.1 request has exactly one Host (a 1.0 one may have none).
        repeated_host = repeated is not None and "host" in repeated
        if repeated_host or (version == "1.1" and "host" not in headers):
            self._refusal = Refusal(400, "malformed_request", "send exactly one Host header")
            raise _Refused
        has_body = "transfer-encoding" in headers or headers.get("content-length", "0") != "0"
        if has_body and method in _BODYLESS:
            self._refusal = Refusal(
                400, "request_body_not_allowed", f"a {method} request carries no body"
            )
            raise _Refused
        expect = headers.get("expect")
        if expect is not None and expect.lower() != "100-continue":
            self._refusal = Refusal(
                417, "expectation_failed", "the only expectation this edge meets is 100-continue"
            )
            raise _Refused
        keep_alive = parser.should_keep_alive() and not has_body
        if has_body:  # its body is not read: answer, then close
            self._stop_parsing = True
        request = Request(
            method,
            _origin_form(self._url.decode("latin-1")),
            version=version,
            headers=headers,
            repeated=repeated,
            remote=self.remote,
            keep_alive=keep_alive,
            started=time.perf_counter(),
        )
        self._queue.append(request)
        if len(self._queue) >= MAX_PIPELINED and self._transport is not None:
            self._transport.pause_reading()
            self._reading = False


def too_large(message: str) -> Refusal:
    return Refusal(400, "request_too_large", message)


_REQUEST_LINE_FAULTS = ("method", "version", "url", "request line", "expected http/")


def parse_refusal(exc: BaseException) -> Refusal:
    fault = str(exc).lower()
    if isinstance(exc, httptools.HttpParserInvalidMethodError) or any(
        word in fault for word in _REQUEST_LINE_FAULTS
    ):
        return Refusal(400, "malformed_request", "the request line is not valid HTTP/1.1")
    return Refusal(400, "malformed_request", "the request is not valid HTTP/1.1")


def _origin_form(target: str) -> str:
    """An absolute-form target (``http://host/path``) as the origin-form ``/path``, without
    a fragment (which a client should not send)."""
    if "#" in target:
        target = target.split("#", 1)[0]
    if target.startswith("/"):
        return target
    lowered = target[:8].lower()
    if lowered.startswith(("http://", "https://")):
        slash = target.find("/", target.index("//") + 2)
        return target[slash:] if slash >= 0 else "/"
    return target  # "*" or garbage: no route matches it
