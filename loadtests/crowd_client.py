"""A crowd of HTTP/1.1 clients that send the same request at the same moment, for benchmarks.

The connections are opened (and each proves itself with one small priming request, so the
server has accepted it) before anything is measured; then every client writes its request at
one agreed instant and records, against its own send time, the first body byte and the last.
The clients are plain asyncio protocols on uvloop, no HTTP library: little work per byte, so
the crowd measures the server rather than itself. They can be spread over several processes
(``spawn``ed, commanded through pipes), which share the start instant through the system-wide
monotonic clock.

    with Crowd(processes=2) as crowd:
        crowd.open("127.0.0.1", port, clients=500, prime_path="/healthz")
        samples = crowd.run(request_bytes, expected_body, status=206)
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, cast

CONNECT_CONCURRENCY = 64  # connects in flight at once: stays inside a listener's SYN backlog
MAX_HEAD_BYTES = 64 * 1024
START_DELAY_S = 0.5  # from the run command to the agreed start instant (buffers are made first)


@dataclass(frozen=True, slots=True)
class Sample:
    """One client's request; times are seconds from its own send."""

    sent_at: float  # time.monotonic() when the request was written
    ttfb_s: float | None  # to the first body byte
    last_byte_s: float | None  # to the last body byte
    status: int
    error: str  # empty when the answer was complete, had the expected status and bytes


# --- the client side (runs in the crowd processes) ---------------------------------------------


class _Client(asyncio.BufferedProtocol):
    """One keep-alive HTTP/1.1 connection, one request at a time, Content-Length bodies only.

    The kernel copies each answer straight into a buffer this client keeps (head and body
    together): no bytes object per read and no copy into a body buffer, so reading 500 large
    bodies costs the crowd little more than the kernel's own copy.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray(MAX_HEAD_BYTES)
        self._filled = 0
        self._body_at = -1  # offset of the body in the buffer, once the head is read
        self._length = 0  # the body's Content-Length
        self._done: asyncio.Future[None] | None = None
        self.status = 0
        self.error = ""
        self.sent_at = self.first_at = self.last_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transports are not registered as asyncio.Transport: no isinstance check.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail("connection closed by the server")

    def make_room(self, body_bytes: int) -> None:
        """Size the buffer for an answer with ``body_bytes`` of body, and touch every page of it
        now: faulting in a crowd's worth of fresh memory (500 x 320 KiB) during the send burst
        or the reads would be the client's own delay, measured as the server's."""
        if len(self._buffer) < MAX_HEAD_BYTES + body_bytes:
            self._buffer = bytearray(b"\x01") * (MAX_HEAD_BYTES + body_bytes)

    def send(self, request: bytes) -> asyncio.Future[None]:
        """Write ``request``; the future is done when its answer is complete or has failed."""
        self._filled, self._body_at, self._length = 0, -1, 0
        self.status, self.error = 0, ""
        self.first_at = self.last_at = 0.0
        self._done = self._loop.create_future()
        self.sent_at = time.monotonic()
        if self._transport is None or self._transport.is_closing():
            self._fail("connection not open")
        else:
            self._transport.write(request)
        return self._done

    def body_equals(self, expected: bytes) -> bool:
        return self._length == len(expected) and self._buffer.startswith(expected, self._body_at)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, reason: str) -> None:
        if self._done is not None and not self._done.done():
            self.error = reason
            self._done.set_result(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._filled == len(self._buffer):  # more than the expected answer: keep reading
            self._buffer = self._buffer + bytearray(max(sizehint, 64 * 1024))
        return memoryview(self._buffer)[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        now = time.monotonic()
        if self._done is None or self._done.done():
            self._fail("data outside a response")
            return
        before, self._filled = self._filled, self._filled + nbytes
        if self._body_at < 0:
            end = self._buffer.find(b"\r\n\r\n", 0, self._filled)
            if end < 0:
                if self._filled >= MAX_HEAD_BYTES:
                    self._fail("response head too long")
                return
            if not self._parse_head(self._buffer[:end].decode("latin-1")):
                return
            self._body_at = before = end + 4
        if self._filled > before and not self.first_at:
            self.first_at = now
        received = self._filled - self._body_at
        if received >= self._length:
            self.last_at = now
            if received > self._length:
                self._fail(f"body longer than Content-Length {self._length}")
            else:
                self._done.set_result(None)

    def _parse_head(self, head: str) -> bool:
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            self._fail(f"bad status line {lines[0]!r}")
            return False
        self.status = int(parts[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                self._length = int(value.strip())
                return True
        self._fail("response without Content-Length")
        return False


async def _open(host: str, port: int, count: int, prime: bytes) -> list[_Client]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> _Client:
        async with gate:
            _, client = await asyncio.wait_for(loop.create_connection(_Client, host, port), 10)
            await asyncio.wait_for(client.send(prime), 10)
            if client.error or client.status != 200:
                raise RuntimeError(f"priming request failed: {client.status} {client.error}")
            return client

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    clients = [r for r in results if isinstance(r, _Client)]
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        for client in clients:
            client.abort()
        raise RuntimeError(f"{len(failures)} of {count} connections failed: {failures[0]!r}")
    return clients


async def _crowd(
    clients: list[_Client],
    request: bytes,
    expected: bytes,
    status: int,
    start_at: float,
    timeout_s: float,
) -> list[Sample]:
    for client in clients:
        client.make_room(len(expected))
    pause = start_at - time.monotonic() - 0.005
    if pause > 0:
        await asyncio.sleep(pause)
    while time.monotonic() < start_at:
        pass  # the last milliseconds: libuv's timers have a resolution of one
    # At normal priority: the server may start on the first requests while later ones are
    # still being sent, as it would with its clients on other machines. (Real-time priority
    # for the burst kept it to ~2 ms, but held the server off both cores until it was over.)
    waits = [client.send(request) for client in clients]
    if waits:  # a process may have no clients (fewer clients than processes)
        await asyncio.wait(waits, timeout=timeout_s)
    samples = []
    for client in clients:
        error = client.error
        if not error and not client.last_at:
            error = f"no complete answer in {timeout_s:g} s"
            client.abort()  # unusable for the next request
        elif not error and client.status != status:
            error = f"status {client.status}"
        elif not error and not client.body_equals(expected):
            error = "wrong bytes"
        samples.append(
            Sample(
                sent_at=client.sent_at,
                ttfb_s=client.first_at - client.sent_at if client.first_at else None,
                last_byte_s=client.last_at - client.sent_at if client.last_at else None,
                status=client.status,
                error=error,
            )
        )
    return samples


def _serve(pipe: Connection) -> None:
    """A crowd process: run commands from ``pipe`` until told to stop."""
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    clients: list[_Client] = []
    try:
        while True:
            command, args = pipe.recv()
            try:
                if command == "open":
                    clients += loop.run_until_complete(_open(*args))
                    reply: object = len(clients)
                elif command == "run":
                    reply = loop.run_until_complete(_crowd(clients, *args))
                elif command == "close":
                    for client in clients:
                        client.abort()
                    clients = []
                    loop.run_until_complete(asyncio.sleep(0))
                    reply = 0
                else:
                    break
            except Exception as exc:  # reported to the parent, which stops the run
                reply = RuntimeError(f"crowd process: {type(exc).__name__}: {exc}")
            pipe.send(reply)
    except (KeyboardInterrupt, EOFError):
        pass
    finally:
        for client in clients:
            client.abort()
        loop.close()


# --- the controlling side ----------------------------------------------------------------------


class Crowd:
    """Clients spread evenly over ``processes`` crowd processes."""

    def __init__(self, processes: int = 1) -> None:
        self.processes = processes
        self._pipes: list[Connection] = []
        self._children: list[BaseProcess] = []

    def start(self) -> Crowd:
        context = multiprocessing.get_context("spawn")  # the parent runs threads: no fork
        for _ in range(self.processes):
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(child,), daemon=True)
            process.start()
            child.close()
            self._pipes.append(parent)
            self._children.append(process)
        return self

    def _command(self, command: str, args: list[tuple[Any, ...]], timeout_s: float) -> list[Any]:
        for pipe, arg in zip(self._pipes, args, strict=True):
            pipe.send((command, arg))
        deadline = time.monotonic() + timeout_s
        replies = []
        for pipe in self._pipes:
            try:
                if not pipe.poll(max(deadline - time.monotonic(), 0)):
                    raise TimeoutError(f"crowd process did not answer {command!r} in {timeout_s} s")
                reply = pipe.recv()
            except (EOFError, OSError):
                raise RuntimeError(f"a crowd process exited during {command!r}") from None
            if isinstance(reply, Exception):
                raise reply
            replies.append(reply)
        return replies

    def _shares(self, clients: int) -> list[int]:
        base, extra = divmod(clients, self.processes)
        return [base + (1 if n < extra else 0) for n in range(self.processes)]

    def open(self, host: str, port: int, clients: int, prime_path: str) -> None:
        """Open ``clients`` keep-alive connections; each first GETs ``prime_path`` (a 200)."""
        prime = f"GET {prime_path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        self._command("open", [(host, port, n, prime) for n in self._shares(clients)], timeout_s=60)

    def run(
        self, request: bytes, expected: bytes, status: int, timeout_s: float = 30
    ) -> list[Sample]:
        """Every open connection sends ``request`` at the same instant; one Sample each."""
        start_at = time.monotonic() + START_DELAY_S
        args = (request, expected, status, start_at, timeout_s)
        replies = self._command("run", [args] * self.processes, timeout_s=timeout_s + 30)
        return [sample for reply in replies for sample in reply]

    def close(self) -> None:
        """Close every connection (the processes stay, for the next crowd)."""
        self._command("close", [()] * self.processes, timeout_s=30)

    def stop(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(("stop", ()))
        for process in self._children:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        for pipe in self._pipes:
            pipe.close()
        self._pipes, self._children = [], []

    def __enter__(self) -> Crowd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
