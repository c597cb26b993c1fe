"""Ceilings for the hit path: the least a Python server can do to answer a range from memory.

``bench_hit_path`` measures the edge against these as well as against nginx and Varnish, so a
ratio says how far the edge is from what its own stack (uvloop, and aiohttp or httptools)
allows. Each serves one object's bytes, read into memory at startup, to single-range requests:

* ``aiohttp``: a bare aiohttp handler (on uvloop) that returns the memoryview slice, with
  aiohttp's own access log on (its default line format, through a ``logging.FileHandler``,
  which writes each line as it comes);
* ``httptools``: a minimal ``asyncio.Protocol`` on uvloop with the httptools request parser, a
  response head formatted once per distinct ``Range``, ``transport.writelines((head, view))``,
  and an access-log line per request kept in a buffer written every 100 ms (or at 64 KiB),
  as nginx's ``access_log ... buffer=64k flush=100ms`` does. This is the limit to aim at.

Both answer ``Range: bytes=a-b`` (also ``a-`` and ``-n``) with 206 and ``Content-Range``, no
``Range`` with 200 and the whole object, anything else with 416; every path serves the same
object. Keep-alive is honoured; pipelining is not a goal. ``--processes N`` forks N workers,
each with its own socket bound to the port with SO_REUSEPORT; SIGTERM stops them all.

    python -m loadtests.ceiling_servers httptools|aiohttp --port P --processes N \\
        --object PATH [--access-log FILE|-] [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import cast

import httptools
import uvloop
from aiohttp import web

FLUSH_S = 0.1
FLUSH_BYTES = 64 * 1024
CONTENT_TYPE = "audio/ogg"


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of one ``bytes=`` range, ``(0, size - 1)`` without a header, or
    None when it is not a single satisfiable range."""
    if value is None:
        return (0, size - 1) if size else None
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first_text:  # suffix: the last n bytes
            suffix = int(last_text)
            return (max(size - suffix, 0), size - 1) if suffix > 0 and size else None
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first < 0 or first > last or first >= size:
        return None
    return first, min(last, size - 1)


def response_head(span: tuple[int, int] | None, size: int, *, whole: bool) -> bytes:
    if span is None:
        return (
            "HTTP/1.1 416 Range Not Satisfiable\r\n"
            f"Content-Range: bytes */{size}\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    first, last = span
    status = "200 OK" if whole else "206 Partial Content"
    content_range = "" if whole else f"Content-Range: bytes {first}-{last}/{size}\r\n"
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nAccept-Ranges: bytes\r\n"
        f"Content-Length: {last - first + 1}\r\n{content_range}\r\n"
    ).encode()


# --- httptools ---------------------------------------------------------------------------------


class BufferedLog:
    """Access-log lines collected in memory and written with one ``os.write`` every
    ``FLUSH_S`` (or sooner at ``FLUSH_BYTES``): whole lines only, so workers can share a file
    opened with O_APPEND."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fd = fd
        self.lines: list[bytes] = []
        self.size = 0
        self._second = -1
        self._stamp = b""
        self._loop = loop
        self._timer = loop.call_later(FLUSH_S, self._tick)

    def stamp(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._stamp = time.strftime("[%d/%b/%Y:%H:%M:%S +0000]", time.gmtime(now)).encode()
        return self._stamp

    def add(self, line: bytes) -> None:
        self.lines.append(line)
        self.size += len(line)
        if self.size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            os.write(self.fd, b"".join(self.lines))
            self.lines.clear()
            self.size = 0

    def _tick(self) -> None:
        self.flush()
        self._timer = self._loop.call_later(FLUSH_S, self._tick)


class RangeProtocol(asyncio.Protocol):
    """One connection: parse with httptools, answer each request as soon as it is complete."""

    __slots__ = ("heads", "log", "parser", "peer", "range", "transport", "url", "view")

    def __init__(self, view: memoryview, heads: dict[bytes | None, bytes], log: BufferedLog):
        self.view = view
        self.heads = heads
        self.log = log
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.range: bytes | None = None
        self.peer = b"-"
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer[0]).encode()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                self.transport.close()

    def pause_writing(self) -> None:  # backpressure: stop reading requests until it drains
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    # parser callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.range = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"range":
            self.range = value

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None:
            return
        view = self.view
        key = self.range
        head = self.heads.get(key)
        span = parse_range(None if key is None else key.decode("latin-1"), len(view))
        if head is None:
            head = response_head(span, len(view), whole=key is None)
            if len(self.heads) < 4096:
                self.heads[key] = head
        if span is None:
            transport.write(head)
            status, sent = b"416", 0
        else:
            first, last = span
            transport.writelines((head, view[first : last + 1]))
            status, sent = (b"200" if key is None else b"206"), last - first + 1
        log = self.log
        log.add(
            b"%s - - %s \"%s %s HTTP/1.1\" %s %d \"%s\"\n"
            % (self.peer, log.stamp(), self.parser.get_method(), self.url, status, sent,
               key or b"-")
        )  # fmt: skip
        if not self.parser.should_keep_alive():
            transport.close()


async def serve_httptools(
    sock: socket.socket, data: bytes, log_fd: int, stopped: asyncio.Event
) -> None:
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    heads: dict[bytes | None, bytes] = {}
    log = BufferedLog(log_fd, loop)
    server = await loop.create_server(lambda: RangeProtocol(view, heads, log), sock=sock)
    try:
        await stopped.wait()
    finally:
        server.close()
        log.flush()


# --- aiohttp -----------------------------------------------------------------------------------


async def serve_aiohttp(
    sock: socket.socket, data: bytes, log_path: str, stopped: asyncio.Event
) -> None:
    view = memoryview(data)
    size = len(view)

    async def handle(request: web.Request) -> web.Response:
        value = request.headers.get("Range")
        span = parse_range(value, size)
        if span is None:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        first, last = span
        headers = {"Accept-Ranges": "bytes", "Content-Type": CONTENT_TYPE}
        if value is None:
            return web.Response(body=view, headers=headers)
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return web.Response(status=206, body=view[first : last + 1], headers=headers)

    access = logging.getLogger("aiohttp.access")
    handler: logging.Handler = (
        logging.StreamHandler(sys.stderr) if log_path == "-" else logging.FileHandler(log_path)
    )
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=access, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        await stopped.wait()
    finally:
        await runner.cleanup()
        handler.close()


# --- processes ---------------------------------------------------------------------------------


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def worker(kind: str, host: str, port: int, data: bytes, log_path: str) -> None:
    """One worker process: its own socket on the shared port, until SIGTERM or SIGINT."""
    sock = listening_socket(host, port)
    log_fd = 2 if log_path == "-" else os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    async def run() -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopped.set)
        if kind == "httptools":
            await serve_httptools(sock, data, log_fd, stopped)
        else:
            await serve_aiohttp(sock, data, log_path, stopped)

    uvloop.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("httptools", "aiohttp"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--object", type=Path, required=True, help="the file to serve")
    parser.add_argument("--access-log", default="-", help="file to append to; - is stderr")
    args = parser.parse_args(argv)
    if not 1 <= args.processes <= 64:
        parser.error("--processes must be 1 to 64")
    data = args.object.read_bytes()  # before the fork: the workers share these pages
    children: list[int] = []
    for _ in range(args.processes):
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                worker(args.kind, args.host, args.port, data, args.access_log)
            except BaseException as exc:  # report it, then leave at once
                print(f"ceiling_servers: worker failed: {exc!r}", file=sys.stderr)
                status = 1
            os._exit(status)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    while children:
        pid, code = os.wait()
        if pid in children:
            children.remove(pid)
            if code:  # one worker died: stop the rest, so the benchmark sees it
                status = 1
                stop(signal.SIGTERM, None)
    return status


if __name__ == "__main__":
    sys.exit(main())
