"""AudioResponse renders its head itself and sends it with the first body bytes: the head must
be the one aiohttp would have sent, keep-alive must hold, and a failure before the first byte
must still reach the client as an error response. Real aiohttp server, raw sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from edge.api import tracks
from edge.http.audio_response import CONGESTED_ABOVE_BYTES, AudioResponse, render_head
from edge.http.middleware import MIDDLEWARES

BODY = b"hello, audio"
HEADERS = {
    "Content-Type": "audio/ogg",
    "Content-Range": f"bytes 0-{len(BODY) - 1}/100",
    "ETag": '"0123abcd"',
    "Cache-Control": "public, max-age=31536000, immutable",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _plain(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=206, headers=HEADERS)
    response.content_length = len(BODY)
    await response.prepare(request)
    await response.write(BODY)
    return response


async def _written(request: web.Request) -> web.StreamResponse:
    """The head leaves with the first write(), as a cache hit sends it."""
    response = AudioResponse(status=206, headers=HEADERS)
    response.content_length = len(BODY)
    await response.prepare(request)
    await response.write(memoryview(BODY)[:5])
    await response.write(BODY[5:])
    return response


async def _pushed(request: web.Request) -> web.StreamResponse:
    """The bytes go out through send_now(), as a slice fill sends them."""
    response = AudioResponse(status=206, headers=HEADERS)
    response.content_length = len(BODY)
    await response.prepare(request)
    assert not response.head_sent
    assert response.send_now(memoryview(BODY)[:3])
    assert response.head_sent
    assert response.first_byte_at is not None
    assert response.send_now(memoryview(BODY)[3:])
    assert response.body_sent == len(BODY)
    return response


async def _fails_before_the_first_byte(request: web.Request) -> web.StreamResponse:
    response = AudioResponse(status=206, headers=HEADERS)
    response.content_length = len(BODY)
    await response.prepare(request)
    raise web.HTTPBadGateway(text="the origin failed")


async def _refuses_too_many_bytes(request: web.Request) -> web.StreamResponse:
    response = AudioResponse(status=206, headers=HEADERS)
    response.content_length = len(BODY)
    await response.prepare(request)
    with pytest.raises(ValueError, match="exceed"):
        response.send_now(memoryview(BODY + b"!"))
    response.send_now(memoryview(BODY))
    return response


async def _no_length(request: web.Request) -> web.StreamResponse:
    response = AudioResponse(status=200, headers=HEADERS)
    with pytest.raises(RuntimeError, match="Content-Length"):
        await response.prepare(request)  # it would be sent chunked, which send_now cannot do
    return web.Response(text="refused")


async def _signal(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Prepared-By"] = "signal"  # as the edge's CORS headers are added


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = web.Application()
    routes: dict[str, Handler] = {
        "/plain": _plain,
        "/written": _written,
        "/pushed": _pushed,
        "/fails": _fails_before_the_first_byte,
        "/too-many": _refuses_too_many_bytes,
        "/no-length": _no_length,
    }
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    app.on_response_prepare.append(_signal)
    runner, port = await _start(app)
    yield port
    await runner.cleanup()


async def _start(app: web.Application) -> tuple[web.AppRunner, int]:
    """``app`` served on a free loopback port: (its runner, the port)."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


async def _exchange(port: int, paths: list[str], version: str = "1.1") -> list[bytes]:
    """GET each path in turn on one connection; the raw bytes of each answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    try:
        for path in paths:
            writer.write(f"GET {path} HTTP/{version}\r\nHost: test\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            answers.append(head + await asyncio.wait_for(reader.readexactly(length), 5))
    finally:
        writer.close()
    return answers


def _without_date(answer: bytes) -> list[bytes]:
    return [line for line in answer.split(b"\r\n") if not line.lower().startswith(b"date:")]


@pytest.mark.parametrize("version", ["1.1", "1.0"])
async def test_the_head_and_body_are_what_aiohttp_sends(port: int, version: str) -> None:
    # HTTP/1.0 without keep-alive: the server closes after each answer, so one connection each.
    answers = [await _exchange(port, [path], version) for path in ("/plain", "/written", "/pushed")]
    (plain,), (written,), (pushed,) = answers
    assert plain.startswith(f"HTTP/{version} 206 Partial Content\r\n".encode())
    assert plain.endswith(b"\r\n\r\n" + BODY)
    assert b"X-Prepared-By: signal" in plain
    assert _without_date(written) == _without_date(plain)
    assert _without_date(pushed) == _without_date(plain)


async def test_keep_alive_holds_after_bytes_sent_directly(port: int) -> None:
    answers = await _exchange(port, ["/pushed", "/written", "/pushed", "/plain"])
    assert [answer.endswith(BODY) for answer in answers] == [True] * 4


async def test_a_failure_before_the_first_byte_is_still_an_error_response(port: int) -> None:
    failed, after = await _exchange(port, ["/fails", "/pushed"])
    assert failed.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert failed.endswith(b"the origin failed")
    assert b"206" not in failed
    assert b"Content-Range" not in failed
    assert after.endswith(BODY)  # and the connection goes on


async def test_no_byte_past_the_announced_length(port: int) -> None:
    (answer,) = await _exchange(port, ["/too-many"])
    assert answer.endswith(b"\r\n\r\n" + BODY)


async def test_a_body_without_length_is_refused(port: int) -> None:
    (answer,) = await _exchange(port, ["/no-length"])
    assert answer.endswith(b"refused")


def test_header_values_with_line_breaks_are_refused() -> None:
    with pytest.raises(ValueError, match="control character"):
        render_head((1, 1), 200, "OK", {"X-Evil": "a\r\nSet-Cookie: b"})


async def _serve_one(handler: Handler) -> tuple[web.AppRunner, int]:
    app = web.Application(middlewares=MIDDLEWARES)
    app.router.add_get("/", handler)
    return await _start(app)


async def test_any_failure_after_the_first_byte_cuts_the_connection() -> None:
    async def body() -> AsyncGenerator[bytes | memoryview, None]:
        yield b"A" * 100
        raise OSError(5, "Input/output error")  # say, a disk slice failing to read mid-body

    async def handler(request: web.Request) -> web.StreamResponse:
        response = AudioResponse(status=200, headers={"Content-Type": "audio/ogg"})
        response.content_length = 1000
        await response.prepare(request)
        await tracks._send_body(request, response, body())
        return response

    runner, port = await _serve_one(handler)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        received = await asyncio.wait_for(reader.read(), 5)  # until the server cuts it
        writer.close()
    finally:
        await runner.cleanup()
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(b"\r\n\r\n" + b"A" * 100)  # short, then cut: no second response
    assert b"internal_error" not in received


async def test_a_client_that_does_not_read_is_congested_before_much_is_queued() -> None:
    seen: dict[str, int] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        response = AudioResponse(status=200, headers={"Content-Type": "audio/ogg"})
        response.content_length = 1024 * 65536  # more than any socket buffers take
        await response.prepare(request)
        transport = request.transport
        assert transport is not None
        while not response.congested:
            assert response.send_now(memoryview(bytes(65536)))
        seen["queued"] = transport.get_write_buffer_size()
        transport.abort()
        return response

    runner, port = await _serve_one(handler)
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")  # and never reads
        for _ in range(100):
            await asyncio.sleep(0.02)
            if seen:
                break
        sock.close()
    finally:
        await runner.cleanup()
    # Once the kernel's buffers are full, at most one chunk past the mark waits in ours: there
    # a fill stops writing to it and hands the rest to the handler's flow control.
    assert CONGESTED_ABOVE_BYTES < seen["queued"] <= CONGESTED_ABOVE_BYTES + 65536
