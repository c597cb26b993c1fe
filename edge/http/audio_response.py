"""A streamed audio response whose head leaves with its first body bytes, in one write.

``prepare()`` works out and renders the head, but sends nothing: until the first body bytes
are in hand, a failure can still be answered with a JSON error (the handler raises, and
aiohttp sends a fresh error response through the untouched writer). :meth:`send_now` then
writes the head and the first bytes straight to the client's transport, synchronously. That
is what lets a slice fill hand the origin's bytes to every reader of a crowd in one pass,
the moment they land, rather than wake each reader's task to write its own (see
:meth:`edge.cache.fills.SliceFill.push`). Later bytes take aiohttp's usual ``write()`` with its
flow control.

This reaches into aiohttp at one point: it replaces ``StreamResponse._write_headers``, the
step that ends ``prepare()``. The writer's byte counts (``output_size``, ``length``,
``buffer_size``) are public attributes of aiohttp's ``AbstractStreamWriter``; they are kept
true, so the access log, keep-alive and Content-Length enforcement see every byte.
tests/edge/test_audio_response.py pins the bytes on the wire.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest
from multidict import istr

from edge.http.server import MAX_WRITE_BYTES

DRAIN_ABOVE_BYTES = 64 * 1024  # aiohttp's own threshold for waiting on a slow client
# Unsent bytes past which a fill stops writing to this client itself and the handler goes on
# with flow control (about one slice; each reader of a crowd may hold this much in memory).
CONGESTED_ABOVE_BYTES = 256 * 1024
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # tab is the one allowed
JOIN_BELOW_BYTES = 2048  # smaller first bytes are copied after the head, larger ones not


def render_head(
    version: tuple[int, int], status: int, reason: str, headers: Mapping[str, str]
) -> bytes:
    """The status line and header block, as aiohttp would serialize them (UTF-8)."""
    lines = [f"HTTP/{version[0]}.{version[1]} {status} {reason}"]
    for name, value in headers.items():
        if _CONTROL.search(name) or _CONTROL.search(value):
            raise ValueError(f"control character in response header {name!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class AudioResponse(web.StreamResponse):
    """See the module docstring. Use it for GET responses with a body."""

    def __init__(self, *, status: int, headers: Mapping[str | istr, str]) -> None:
        super().__init__(status=status, headers=headers)
        self._head: bytes | None = None  # rendered by prepare(), sent with the first bytes
        self._writer: AbstractStreamWriter | None = None
        self._version = (1, 1)
        self.first_byte_at: float | None = None  # perf_counter() when the first bytes left
        self.body_sent = 0  # body bytes written so far by send_now
        self._head_bytes = 0

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        if self.content_length is None or self.chunked or self.compression:
            # send_now() writes bytes as they are: no chunk framing, no compression. (Checked
            # before aiohttp's prepare, which would set the writer up for them.)
            raise RuntimeError("an AudioResponse needs a Content-Length and no compression")
        self._version = (request.version.major, request.version.minor)
        self._writer = await super().prepare(request)
        return self._writer

    async def _write_headers(self) -> None:
        # aiohttp ends prepare() here, by handing the head to its writer; keep it instead.
        self._head = render_head(self._version, self.status, self.reason, self.headers)

    @property
    def body_bytes(self) -> int:
        """Body bytes written so far, however they went (for the access log)."""
        writer = self._writer
        return (
            0 if writer is None or self._head is not None else writer.output_size - self._head_bytes
        )

    @property
    def head_sent(self) -> bool:
        return self._head is None and self._writer is not None

    @property
    def congested(self) -> bool:
        """More than ``CONGESTED_ABOVE_BYTES`` wait in the transport: a slow client."""
        transport = self._writer.transport if self._writer is not None else None
        return transport is not None and transport.get_write_buffer_size() > CONGESTED_ABOVE_BYTES

    def send_now(self, data: bytes | memoryview) -> bool:
        """Write ``data`` (with the head, the first time) to the client at once. False if the
        client is gone (nothing written)."""
        writer = self._writer
        assert writer is not None, "send_now() before prepare()"
        transport = writer.transport
        if transport is None or transport.is_closing():
            return False
        size = len(data)
        if writer.length is not None:  # never past Content-Length, as aiohttp's write()
            if size > writer.length:
                raise ValueError(f"{size} bytes exceed the {writer.length} announced")
            writer.length -= size
        head = self._head
        if head is not None:
            self._head = None
            if size < JOIN_BELOW_BYTES:
                transport.write(head + data)
            else:  # no copy of a large body: one vectored write
                transport.writelines((head, data))
            writer.output_size += len(head)
            self._head_bytes = len(head)
            self.first_byte_at = time.perf_counter()
        elif size:
            transport.write(data)
        writer.output_size += size
        writer.buffer_size += size
        self.body_sent += size
        return True

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        if len(view) > MAX_WRITE_BYTES:  # a large slice: bound what one connection queues
            for start in range(0, len(view), MAX_WRITE_BYTES):
                await self._write_one(view[start : start + MAX_WRITE_BYTES])
            return
        await self._write_one(view)

    async def _write_one(self, data: memoryview) -> None:
        if self._head is None:
            await super().write(data)  # waits for a slow client past its queue bound
            return
        if not self.send_now(data):
            raise ConnectionResetError("the client went away")
        await self._catch_up()

    async def write_eof(self, data: bytes = b"") -> None:
        if self._head is not None and self._writer is not None:
            self.send_now(data)  # an empty body: the head goes alone
            data = b""
        # Bytes a fill wrote may still be queued: the connection takes no next request before
        # a slow client has caught up (aiohttp's write_eof() would not wait).
        await self._catch_up()
        await super().write_eof(data)

    async def _catch_up(self) -> None:
        """As aiohttp's write(): past ``DRAIN_ABOVE_BYTES`` sent since the last wait, wait for
        a slow client to catch up before more is queued."""
        writer = self._writer
        if writer is not None and writer.buffer_size > DRAIN_ABOVE_BYTES:
            writer.buffer_size = 0
            await writer.drain()
