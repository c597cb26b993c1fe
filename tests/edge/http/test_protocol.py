"""HTTP/1.1 conformance of the public listener (RFC 9110/9112), byte by byte on raw sockets:
keep-alive, pipelining in order, HTTP/1.0, ``Connection: close``, HEAD, the CORS preflight,
absolute-form targets, no bodies on GET/HEAD, strict parsing, versions, limits, timeouts.
Every refusal is a JSON error with a stable code, and the connection closed after it."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from edge.http import request_head
from tests.conftest import TEST_SLICE_BYTES, Catalog, S3Target, make_settings
from tests.support.edge_server import EdgeServer

LINE_LIMIT = 1024
HEADER_LIMIT = 512
HEADER_COUNT = 16


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Wire:
    """A raw connection that parses responses itself, by Content-Length."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return False
        self.buffer += chunk
        return bool(chunk)

    def answer(self, *, head: bool = False) -> Answer:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"closed before a whole head: {self.buffer!r}"
        raw, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        assert status_line.startswith("HTTP/1.1 "), status_line
        headers: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            assert sep, line
            assert name == name.strip(), line
            assert name.lower() not in headers, f"{name} sent twice"
            headers[name.lower()] = value.strip()
        length = 0 if head else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._fill(), "closed inside a body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Answer(int(status_line.split(" ")[1]), headers, body)

    def closed(self, wait_s: float = 5) -> bool:
        """True once the server has closed (EOF or reset) with nothing more sent."""
        self.sock.settimeout(wait_s)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def node(s3: S3Target) -> Iterator[EdgeServer]:
    server_limits = {
        "max_request_line_bytes": LINE_LIMIT,
        "max_header_bytes": HEADER_LIMIT,
        "max_headers": HEADER_COUNT,
        "idle_timeout_s": 1.0,
        "request_head_timeout_s": 1.0,
    }
    edge = EdgeServer(make_settings(s3.endpoint_url, s3.bucket, server=server_limits)).start()
    yield edge
    edge.stop()


@pytest.fixture(scope="module")
def audio(catalog: Catalog) -> tuple[str, bytes]:
    data = os.urandom(3 * TEST_SLICE_BYTES)
    track_id = catalog.publish({"160": data}).track_id
    return f"/v1/tracks/{track_id}/160", data


@pytest.fixture
def wire(node: EdgeServer) -> Iterator[Wire]:
    connection = Wire(node.port)
    yield connection
    connection.close()


def get(target: str, *headers: str, method: str = "GET", version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {target} {version}", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def refused(wire: Wire, status: int, code: str, *, head: bool = False) -> None:
    answer = wire.answer(head=head)
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["connection"] == "close"
    if not head:
        assert json.loads(answer.body)["error"] == code
    assert wire.closed()


def test_keep_alive_serves_requests_one_after_another(wire: Wire, audio: tuple[str, bytes]) -> None:
    path, data = audio
    for start in (0, 100, 5000):
        wire.send(get(path, f"Range: bytes={start}-{start + 99}"))
        answer = wire.answer()
        assert answer.status == 206
        assert answer.body == data[start : start + 100]
        assert "connection" not in answer.headers


def test_header_names_are_read_in_any_case_while_their_memo_stays_bounded(
    wire: Wire, audio: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(request_head, "MAX_HEADER_KEYS", 4)
    path, data = audio
    for number, name in enumerate(["Range", "RANGE", "range", "rAnGe", "Range"]):
        noise = [f"X-Noise-{number}-{other}: 1" for other in range(3)]  # fills the memo
        wire.send(get(path, *noise, f"{name}: bytes=10-19"))
        answer = wire.answer()
        assert (answer.status, answer.body) == (206, data[10:20])
        assert len(request_head._HEADER_KEYS) <= 4


def test_pipelined_requests_are_answered_in_order(wire: Wire, audio: tuple[str, bytes]) -> None:
    path, data = audio
    ranges = [(0, 9), (len(data) - 10, len(data) - 1), (TEST_SLICE_BYTES - 5, TEST_SLICE_BYTES + 4)]
    wire.send(b"".join(get(path, f"Range: bytes={a}-{b}") for a, b in ranges) + get("/healthz"))
    for a, b in ranges:
        answer = wire.answer()
        assert answer.headers["content-range"] == f"bytes {a}-{b}/{len(data)}"
        assert answer.body == data[a : b + 1]
    assert json.loads(wire.answer().body) == {"status": "ok"}


def test_a_whole_object_pipelined_behind_a_miss_keeps_its_place(
    wire: Wire, catalog: Catalog
) -> None:
    data = os.urandom(5 * TEST_SLICE_BYTES)
    path = f"/v1/tracks/{catalog.publish({'96': data}).track_id}/96"
    wire.send(get(path) + get(path, "Range: bytes=0-0") + get("/healthz"))
    first = wire.answer()
    assert (first.status, first.headers["x-cache"], first.body) == (200, "MISS", data)
    assert wire.answer().body == data[:1]
    assert wire.answer().status == 200


def test_http_1_0_closes_unless_kept_alive(wire: Wire, node: EdgeServer) -> None:
    wire.send(get("/healthz", "Connection: keep-alive", version="HTTP/1.0"))
    assert wire.answer().headers["connection"] == "keep-alive"
    wire.send(get("/healthz", version="HTTP/1.0"))
    answer = wire.answer()
    assert (answer.status, answer.headers["connection"]) == (200, "close")
    assert wire.closed()


def test_http_1_0_needs_no_host(node: EdgeServer) -> None:
    wire = Wire(node.port)
    wire.send(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert wire.answer().status == 200
    wire.close()


def test_connection_close_is_honoured(wire: Wire) -> None:
    wire.send(get("/healthz", "Connection: close") + get("/healthz"))
    assert wire.answer().headers["connection"] == "close"
    assert wire.closed()  # the pipelined second request is not answered


def test_head_sends_the_get_headers_and_no_body(wire: Wire, audio: tuple[str, bytes]) -> None:
    path, data = audio
    wire.send(get(path, "Range: bytes=10-19", method="HEAD") + get(path, "Range: bytes=10-19"))
    head = wire.answer(head=True)
    body = wire.answer()
    assert head.status == body.status == 206
    for name in ("content-length", "content-range", "etag", "content-type", "accept-ranges"):
        assert head.headers[name] == body.headers[name], name
    assert body.body == data[10:20]


def test_the_cors_preflight(wire: Wire, audio: tuple[str, bytes]) -> None:
    wire.send(get(audio[0], "Origin: https://player.example", method="OPTIONS"))
    answer = wire.answer()
    assert answer.status == 204
    assert "content-length" not in answer.headers  # RFC 9110 8.6
    assert "Range" in answer.headers["access-control-allow-headers"]
    assert answer.headers["access-control-allow-origin"] == "*"


def test_absolute_form_targets_are_served(wire: Wire, audio: tuple[str, bytes]) -> None:
    path, data = audio
    wire.send(get(f"http://edge.example{path}", "Range: bytes=0-3"))
    assert wire.answer().body == data[:4]


@pytest.mark.parametrize(
    "headers",
    [
        ("Content-Length: 5",),
        ("Transfer-Encoding: chunked",),
        ("Transfer-Encoding: gzip",),
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_body_on_get_or_head_is_refused(
    wire: Wire, audio: tuple[str, bytes], headers: tuple[str, ...], method: str
) -> None:
    wire.send(get(audio[0], *headers, method=method) + b"hello")
    refused(wire, 400, "request_body_not_allowed", head=method == "HEAD")


def test_an_empty_content_length_is_no_body(wire: Wire) -> None:
    wire.send(get("/healthz", "Content-Length: 0") + get("/healthz"))
    assert wire.answer().status == wire.answer().status == 200


def test_a_body_on_another_method_is_not_read(wire: Wire, audio: tuple[str, bytes]) -> None:
    wire.send(get(audio[0], "Content-Length: 100000", method="POST") + b"x" * 10)
    answer = wire.answer()
    assert (answer.status, answer.headers["allow"]) == (405, "GET,HEAD,OPTIONS")
    assert answer.headers["connection"] == "close"
    assert wire.closed()


@pytest.mark.parametrize(
    "request_bytes",
    [
        get("/healthz", "Content-Length: 0", "Content-Length: 0"),
        get("/healthz", "Content-Length: 0", "Content-Length: 1"),
        get("/healthz", "X-Folded: a", " b"),  # obs-fold
        get("/healthz", "X-Space : a"),  # whitespace before the colon
        b"GET /healthz HTTP/1.1\nHost: x\n\n",  # bare LF
        get("/healthz", "X-Nul: a\x00b"),
        get("/healthz", "X-Ctl: a\x01b"),
        get("/healthz", "X-Del: a\x7fb"),
        b"get /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.2\r\nHost: x\r\n\r\n",
        b"GET /healthz\r\n\r\n",  # HTTP/0.9
        b"GET /healthz\r\n",  # HTTP/0.9, answered at once (llhttp would wait for headers)
        b"GET /healthz HTTP/1.1\r\n\r\n",  # no Host
        get("/healthz", "Host: other"),  # two Hosts
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
    ],
)
def test_malformed_requests_are_a_json_400(wire: Wire, request_bytes: bytes) -> None:
    wire.send(request_bytes)
    refused(wire, 400, "malformed_request")


def test_http_2_is_a_505(wire: Wire) -> None:
    wire.send(b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n")
    refused(wire, 505, "http_version_not_supported")


def test_an_unknown_expectation_is_a_417(wire: Wire) -> None:
    wire.send(get("/healthz", "Expect: tea"))
    refused(wire, 417, "expectation_failed")


def test_the_request_line_limit_is_on_the_whole_line(node: EdgeServer) -> None:
    fixed = len("GET  HTTP/1.1")
    at_limit = "/healthz?" + "a" * (LINE_LIMIT - fixed - len("/healthz?"))
    wire = Wire(node.port)
    wire.send(get(at_limit))
    assert wire.answer().status == 200
    wire.send(get(at_limit + "a"))
    refused(wire, 400, "request_too_large")
    wire.close()


def test_the_header_line_and_count_limits(node: EdgeServer) -> None:
    name = "X-Long"
    fits = f"{name}: " + "v" * (HEADER_LIMIT - len(name) - 2)
    for extra, status in (((fits,), 200), ((fits + "v",), 400)):
        wire = Wire(node.port)
        wire.send(get("/healthz", *extra))
        if status == 200:
            assert wire.answer().status == 200
        else:
            refused(wire, 400, "request_too_large")
        wire.close()
    many = tuple(f"X-{n}: v" for n in range(HEADER_COUNT))  # with Host: one too many
    wire = Wire(node.port)
    wire.send(get("/healthz", *many))
    refused(wire, 400, "request_too_large")
    wire.close()


def test_an_idle_connection_is_closed(wire: Wire) -> None:
    wire.send(get("/healthz"))
    assert wire.answer().status == 200
    started = time.monotonic()
    assert wire.closed(wait_s=5)
    assert 0.5 < time.monotonic() - started < 4  # idle_timeout_s = 1


def test_a_head_that_trickles_in_is_cut_with_a_408(wire: Wire) -> None:
    """Slowloris: bytes now and then keep no head open past request_head_timeout_s (the
    idle timeout, also 1 s, would be reset by each byte; this one is not)."""
    started = time.monotonic()
    for byte in b"GET /healthz HTTP/1.1\r\nHo":
        wire.send(bytes([byte]))
        time.sleep(0.03)  # about 0.8 s in all: under the timeout, each gap far under it
    refused(wire, 408, "request_timeout")
    assert time.monotonic() - started < 3
