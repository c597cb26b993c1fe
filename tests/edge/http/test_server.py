"""The listener's own rules (edge.http.protocol), byte by byte on raw sockets: JSON answers to
requests the parser refuses, logged in one short line without the request's bytes; HTTP/1.0
and 1.1 only; the header line limit; ``Server: encore``; an access log without signatures;
the send timeout that cuts clients that stop reading; clients that leave mid-body counted,
not logged as errors; and SIGTERM that lets pending disk writes land."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.access.signing import signed_query
from tests.conftest import TEST_SLICE_BYTES, Catalog, S3Target, make_settings
from tests.support.edge_node import Node
from tests.support.edge_server import EdgeServer

SECRET = "listener-secret-0123456789"
TOKEN = "sekrit-token-abcdef"  # must never reach a log or a body


def _exchange(port: int, request: bytes, *, limit: int = 1 << 20) -> bytes:
    """Send ``request`` raw and read what comes back until the server closes (or ``limit``)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(request)
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while len(received) < limit:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
    return received


def _split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status_line, headers, body


@pytest.fixture(scope="module")
def track(catalog: Catalog) -> tuple[str, bytes]:
    data = os.urandom(3 * TEST_SLICE_BYTES)
    return catalog.publish({"160": data}).track_id, data


def test_every_response_says_server_encore_and_nothing_more(
    edge: EdgeServer, track: tuple[str, bytes]
) -> None:
    track_id, _ = track
    for method, path in [
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", f"/v1/tracks/{track_id}"),
        ("GET", f"/v1/tracks/{track_id}/160"),
        ("HEAD", f"/v1/tracks/{track_id}/160"),
        ("OPTIONS", f"/v1/tracks/{track_id}/160"),
        ("GET", "/v1/tracks/no-such-track"),
        ("GET", "/nowhere"),
    ]:
        reply = edge.request(method, path)
        assert reply.header("Server") == "encore", (method, path, reply.header("Server"))
    _, headers, _ = _split(_exchange(edge.port, b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert headers["server"] == "encore"


_REFUSED = [
    pytest.param(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\x01\r\n\r\n",
        "malformed_request",
        id="control-byte-in-a-token",
    ),
    pytest.param(b"x" * 200_000, "malformed_request", id="200KB-without-CRLF"),
    pytest.param(
        b"GET /healthz?" + b"q" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "request_too_large",
        id="long-request-line",
    ),
    pytest.param(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Token: " + TOKEN.encode() * 600 + b"\r\n\r\n",
        "request_too_large",
        id="long-header",
    ),
    pytest.param(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: %s\r\n" % (i, TOKEN.encode()) for i in range(100))
        + b"\r\n",
        "request_too_large",
        id="too-many-headers",
    ),
    pytest.param(
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
        "malformed_request",
        id="tls-hello",
    ),
]


@pytest.mark.parametrize(("request_bytes", "code"), _REFUSED)
def test_a_request_the_parser_refuses_gets_json_and_one_short_warning(
    edge: EdgeServer, caplog: pytest.LogCaptureFixture, request_bytes: bytes, code: str
) -> None:
    with caplog.at_level(logging.DEBUG):
        response = _exchange(edge.port, request_bytes)
    status_line, headers, body = _split(response)
    assert status_line == "HTTP/1.1 400 Bad Request"
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert json.loads(body)["error"] == code
    assert len(response) < 1024  # nothing of the request is echoed
    assert TOKEN.encode() not in response
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage()[:200] for r in warnings]
    (warning,) = warnings
    assert warning.levelno == logging.WARNING
    assert warning.exc_info is None  # no traceback
    assert len(warning.getMessage()) < 300
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert TOKEN not in logged
    assert "xxxxxxxxxx" not in logged


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"GET /healthz HTTP/2.0", "HTTP/1.1 505 HTTP Version Not Supported"),
        (b"GET /healthz HTTP/3.0", "HTTP/1.1 400 Bad Request"),  # the parser knows no 3.0
        (b"GET /healthz HTTP/1.2", "HTTP/1.1 400 Bad Request"),  # no such version: malformed
        (b"GET /healthz", "HTTP/1.1 400 Bad Request"),  # HTTP/0.9: no version at all
    ],
)
def test_only_http_1_0_and_1_1_are_served(
    edge: EdgeServer, request_line: bytes, status: str
) -> None:
    status_line, headers, body = _split(_exchange(edge.port, request_line + b"\r\nHost: x\r\n\r\n"))
    assert status_line == status
    assert json.loads(body)["error"] in {"http_version_not_supported", "malformed_request"}
    assert headers["connection"] == "close"


def test_http_1_0_is_served(edge: EdgeServer) -> None:
    status_line, _, body = _split(_exchange(edge.port, b"GET /healthz HTTP/1.0\r\n\r\n"))
    assert status_line.endswith(" 200 OK")
    assert json.loads(body) == {"status": "ok"}


def test_the_header_limit_is_on_the_whole_line(edge: EdgeServer) -> None:
    limit = edge.settings.server.max_header_bytes
    name = b"X-" + b"n" * 4000
    fits = name + b": " + b"v" * (limit - len(name) - 2)
    over = fits + b"v"
    for line, expected in ((fits, " 200 OK"), (over, " 400 Bad Request")):
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + line + b"\r\nConnection: close\r\n\r\n"
        status_line, _, body = _split(_exchange(edge.port, request))
        assert status_line.endswith(expected), (len(line), status_line)
    assert json.loads(body)["error"] == "request_too_large"


def test_the_access_log_carries_the_key_id_but_never_the_signature(
    start_edge: Callable[..., EdgeServer],
    track: tuple[str, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    edge = start_edge(auth={"signing_keys": {"k1": SECRET}})
    track_id, _ = track
    path = f"/v1/tracks/{track_id}/160"
    query = signed_query(SECRET, "k1", path, int(time.time()) + 600)
    sig = query.rsplit("sig=", 1)[1]
    assert edge.get(f"{path}?{query}", Range="bytes=0-9").status == 206
    assert edge.get(f"{path}?exp=1&kid=k1&sig=forged-signature-value").status == 403
    lines = edge.access_lines(2)  # written after each response
    assert all("kid=k1" in line and "sig=-" in line for line in lines), lines
    assert not any(sig in line or "forged-signature-value" in line for line in lines)


def _server_side_tcp(port: int) -> list[tuple[int, int]]:
    """(state, bytes queued to send) of this machine's TCP sockets whose local port is
    ``port``, from /proc/net/tcp (the server's side of its connections, and its listener)."""
    sockets = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port:
            tx_queue = int(fields[4].split(":")[0], 16)
            sockets.append((int(fields[3], 16), tx_queue))
    return sockets


ESTABLISHED = 1


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def _stuck_readers(port: int, path: str, count: int) -> Iterator[list[socket.socket]]:
    """``count`` clients that ask for ``path`` with a 4 KiB receive buffer and never read."""
    clients = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            clients.append(sock)
        yield clients
    finally:
        for sock in clients:
            sock.close()


def test_clients_that_stop_reading_are_cut_after_the_send_timeout(
    catalog: Catalog, start_node: Callable[..., Node]
) -> None:
    send_buffer = 64 * 1024
    node = start_node(
        workers=1,
        disk_bytes="0",
        memory_bytes="16MiB",
        server_toml=f'send_timeout_s = 1\nsend_buffer_bytes = "{send_buffer}"\n',
    )
    port = int(node.url.rsplit(":", 1)[1])
    data = os.urandom(1_400_000)
    path = f"/v1/tracks/{catalog.publish({'160': data}).track_id}/160"
    assert node.get(path)[1] == data  # warm: the stuck clients read from memory
    rss_before = _rss_bytes(node.process.pid)
    count = 100

    with _stuck_readers(port, path, count):
        deadline = time.monotonic() + 5
        while sum(state == ESTABLISHED for state, _ in _server_side_tcp(port)) < count:
            assert time.monotonic() < deadline, "the clients did not all connect"
            time.sleep(0.02)
        queued = sum(tx for _, tx in _server_side_tcp(port))
        rss_held = _rss_bytes(node.process.pid)
        # A client that reads keeps its time to first byte meanwhile.
        started = time.monotonic()
        status, body, _ = node.get(path, "bytes=0-999")
        ttfb_s = time.monotonic() - started
        assert (status, body) == (206, data[:1000])

        cut_by = time.monotonic() + 15  # the timeout is 1 s; the bound is generous for CI
        while any(state == ESTABLISHED for state, _ in _server_side_tcp(port)):
            assert time.monotonic() < cut_by, "clients that do not read were never cut"
            time.sleep(0.05)
        assert sum(tx for _, tx in _server_side_tcp(port)) == 0

    # Kernel memory: at most the send buffer each (Linux doubles SO_SNDBUF for bookkeeping);
    # autotuned, it was about 2.6 MB each. User space: a queue bound each, plus slack.
    assert queued <= count * 2 * send_buffer, queued
    assert rss_held - rss_before < count * 512 * 1024 + 32 * 1024**2, rss_held - rss_before
    assert ttfb_s < 2.0, ttfb_s
    assert node.metric("encore_send_timeouts_total") >= count
    assert node.metric("encore_requests_total", route="rendition", status="client_closed") >= count


def _wait_until_the_edge_waits_on(port: int) -> None:
    """Until the edge has bytes queued that its client does not take."""
    deadline = time.monotonic() + 10
    while not any(state == ESTABLISHED and tx for state, tx in _server_side_tcp(port)):
        assert time.monotonic() < deadline, "the edge never filled the client's window"
        time.sleep(0.01)


def test_a_client_leaving_mid_body_is_counted_and_logged_at_debug_only(
    s3: S3Target, catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    edge = EdgeServer(make_settings(s3.endpoint_url, s3.bucket)).start()
    try:
        data = os.urandom(4 * 1024 * 1024)
        path = f"/v1/tracks/{catalog.publish({'160': data}).track_id}/160"
        assert edge.get(path).body == data
        before = edge.metric_samples()
        with caplog.at_level(logging.DEBUG):
            for _ in range(5):  # a player that pauses, then closes mid-body
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", edge.port))
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert sock.recv(1024)
                _wait_until_the_edge_waits_on(edge.port)  # the player has paused
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # a reset, as when a player is killed
            key = ("encore_requests_total", frozenset(
                {"route": "rendition", "method": "GET", "status": "client_closed"}.items()
            ))  # fmt: skip
            deadline = time.monotonic() + 10
            while edge.metric_samples().get(key, 0) - before.get(key, 0) < 5:
                assert time.monotonic() < deadline, "the clients leaving were not counted"
                time.sleep(0.02)
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    finally:
        edge.stop()


def test_sigterm_lets_pending_disk_writes_land(
    catalog: Catalog, start_node: Callable[..., Node]
) -> None:
    """A whole rendition read, then SIGTERM at once: its slices are on disk when the node
    has exited, so the request after a restart is a disk hit."""
    for workers in (1, 2):
        node = start_node(workers=workers, disk_bytes="64MiB")
        for _ in range(3):
            data = os.urandom(6 * TEST_SLICE_BYTES + 7)
            path = f"/v1/tracks/{catalog.publish({'160': data}).track_id}/160"
            known = set(node.slice_files())
            assert node.get(path)[1] == data
            node.process.send_signal(signal.SIGTERM)
            assert node.process.wait(30) == 0
            assert len(set(node.slice_files()) - known) == 7, "slices were lost at shutdown"
            node = start_node(workers=workers, disk_bytes="64MiB")
            status, body, headers = node.get(path)
            assert (status, body, headers["X-Cache"]) == (200, data, "HIT")


def test_responses_small_enough_for_the_buffers_are_not_held_either(
    catalog: Catalog, start_node: Callable[..., Node]
) -> None:
    """A response that fits in the socket buffers never makes the edge wait; a client that
    never reads it still holds no kernel memory past the send timeout."""
    node = start_node(
        workers=1,
        disk_bytes="0",
        server_toml='send_timeout_s = 1\nsend_buffer_bytes = "64KiB"\nidle_timeout_s = 2\n',
    )
    port = int(node.url.rsplit(":", 1)[1])
    data = os.urandom(6 * TEST_SLICE_BYTES)
    path = f"/v1/tracks/{catalog.publish({'160': data}).track_id}/160"
    assert node.get(path)[1] == data
    with _stuck_readers(port, path, 50):
        deadline = time.monotonic() + 5
        while sum(tx > 0 for _, tx in _server_side_tcp(port)) < 50:
            assert time.monotonic() < deadline, "the responses never reached the kernel"
            time.sleep(0.02)
        freed_by = time.monotonic() + 20
        while sum(tx for _, tx in _server_side_tcp(port)):
            assert time.monotonic() < freed_by, "the kernel kept the unread responses"
            time.sleep(0.05)
