"""A small TCP proxy between the edge and the S3 server: it counts requests and injects faults.

Counting happens here, at the origin side, so tests never trust the edge's own metrics for it.
Faults: added latency before each response, refusing connections (origin down), cutting
each response after a number of bytes (truncated bodies), and a per-request hook that can drop
a request's connection or act at a precise moment (stop the server mid-upload).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Faults:
    latency_s: float = 0.0  # added before each request reaches the S3 server
    refuse: bool = False
    truncate_response_at: int | None = None  # bytes of the whole response, headers included
    # After this many bytes of a response (headers included), hold the rest for stall_s: a
    # slow origin body, so readers can be seen reading while it is written.
    stall_after: int | None = None
    stall_s: float = 0.0
    # The stall lasts until TcpProxy.release() instead of stall_s: a slow origin body that
    # ends when the test says so, not after some time (then every stall passes at once).
    stall_until_released: bool = False
    # Called with each request before it is forwarded: True forwards it, False drops the
    # connection, bytes are sent back as the whole raw response instead (a canned 503).
    on_request: Callable[[SeenRequest], bool | bytes] | None = None


@dataclass
class TcpProxy:
    upstream_host: str
    upstream_port: int
    faults: Faults = field(default_factory=Faults)
    requests: list[SeenRequest] = field(default_factory=list)
    port: int = 0

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Short in hypothesis's reports, which would otherwise print every request seen.
        printer.text(f"TcpProxy(port={self.port}, requests={len(self.requests)})")

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()  # client-side connections now open
        self._released = asyncio.Event()  # see Faults.stall_until_released

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def gets(self, path_suffix: str = "") -> list[SeenRequest]:
        return [r for r in self.requests if r.method == "GET" and r.path.endswith(path_suffix)]

    def start(self) -> TcpProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def set_down(self, down: bool) -> None:
        """An origin outage: refuse new connections and cut the open ones (pooled keep-alive
        connections included), or end it."""
        self.faults.refuse = down
        if down:
            self._loop.call_soon_threadsafe(self._cut_all)

    def release(self) -> None:
        """End the stalls of ``Faults.stall_until_released``: held bodies go on, and later
        ones are not held."""
        self._loop.call_soon_threadsafe(self._released.set)

    def _cut_all(self) -> None:
        for writer in list(self._live):
            writer.transport.abort()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.faults.refuse:
            writer.transport.abort()
            return
        self._live.add(writer)
        try:
            await self._forward(reader, writer)
        finally:
            self._live.discard(writer)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            writer.transport.abort()
            return
        # Bytes of the current response so far: reset as each request goes upstream (clients
        # here do not pipeline), so stall and truncate limits apply per response.
        sent = [0]
        upstream = asyncio.ensure_future(self._pump_responses(up_reader, writer, sent))
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                seen = SeenRequest(method, path, headers)
                self.requests.append(seen)
                hook = self.faults.on_request
                verdict = True if hook is None else hook(seen)
                if verdict is False:
                    writer.transport.abort()
                    break
                if isinstance(verdict, bytes):
                    await _copy_body(reader, headers, None)
                    writer.write(verdict)
                    await writer.drain()
                    continue
                if self.faults.latency_s:
                    await asyncio.sleep(self.faults.latency_s)
                sent[0] = 0
                # The head goes first on its own: a client that sent "Expect: 100-continue"
                # holds its body back until the server answers.
                up_writer.write(head)
                await _copy_body(reader, headers, up_writer)
                await up_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            up_writer.close()
            await asyncio.gather(upstream, return_exceptions=True)
            writer.close()

    async def _pump_responses(
        self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sent: list[int]
    ) -> None:
        try:
            while True:
                chunk = await up_reader.read(65536)
                if not chunk:
                    break
                done = sent[0]
                stall = self.faults.stall_after
                if stall is not None and done < stall <= done + len(chunk):
                    writer.write(chunk[: stall - done])
                    await writer.drain()
                    if self.faults.stall_until_released:
                        await self._released.wait()
                    else:
                        await asyncio.sleep(self.faults.stall_s)
                    chunk = chunk[stall - done :]
                    done = sent[0] = stall
                limit = self.faults.truncate_response_at
                if limit is not None and done + len(chunk) >= limit:
                    writer.write(chunk[: limit - done])
                    await writer.drain()
                    writer.transport.abort()
                    return
                sent[0] = done + len(chunk)
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def _copy_body(
    reader: asyncio.StreamReader, headers: dict[str, str], out: asyncio.StreamWriter | None
) -> None:
    """Read a request's body (Content-Length bytes) and pass it to ``out``, or drop it."""
    remaining = int(headers.get("content-length", "0"))
    while remaining:
        chunk = await reader.read(min(remaining, 65536))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", remaining)
        remaining -= len(chunk)
        if out is not None:
            out.write(chunk)


def canned_response(status: int, reason: str, body: bytes = b"") -> bytes:
    """A raw HTTP/1.1 response, for ``Faults.on_request`` to answer in the server's stead."""
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
        "Content-Type: application/xml\r\n\r\n"
    )
    return head.encode() + body
