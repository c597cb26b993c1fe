"""Response heads, rendered to bytes: status lines, header blocks, the cached ``Date``, and
the JSON bodies of errors.

A handler hands the listener a *header block*: ``Name: value\\r\\n`` lines already encoded.
What is static about a rendition is rendered once (``edge.api.rendition_heads``); the
listener adds the status line, ``Server``, ``Date``, CORS, the body's length and the
connection's fate.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from email.utils import formatdate
from http import HTTPStatus

SERVER_HEADER = "encore"
EXPOSED_HEADERS = "Content-Range, Content-Length, Accept-Ranges, ETag, X-Cache, X-Cache-Tier"
# Sent on every public response: web players read ranges cross-origin.
COMMON_HEADERS = (
    f"Server: {SERVER_HEADER}\r\n"
    "Access-Control-Allow-Origin: *\r\n"
    f"Access-Control-Expose-Headers: {EXPOSED_HEADERS}\r\n"
).encode()
JSON = "application/json"
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # tab is the one control allowed

STATUS_LINES: dict[int, bytes] = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus
}


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    return line if line is not None else f"HTTP/1.1 {status} Unknown\r\n".encode()


def header_block(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    """``headers`` as header lines; a value with a control character is a bug, refused."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    lines = []
    for name, value in items:
        if _CONTROL.search(name) or _CONTROL.search(value):
            raise ValueError(f"control character in response header {name!r}")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


class DateHeader:
    """``Date: ...\\r\\n``, rendered at most once a second."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = f"Date: {formatdate(now, usegmt=True)}\r\n".encode()
        return self._line


def error_body(code: str, message: str, details: Mapping[str, str] | None = None) -> bytes:
    """``{"error": code, ..., "message": message}``: the body of every refusal."""
    return json.dumps({"error": code, **(details or {}), "message": message}).encode()
