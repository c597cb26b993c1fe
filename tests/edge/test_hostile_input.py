"""Hostile input: fuzzed paths, query strings, Range, date and other header values
(hypothesis), oversized request lines and headers, hint floods, deeply nested admin bodies,
CMCD reports (query and headers), and slow clients: those that send slowly and those that
read slowly. Every answer is a well-formed 4xx (or a 2xx/3xx where the request is in fact
fine): never a 5xx, never a traceback or an ERROR log line, and never an origin request for
an id that is not valid.
(tests/edge/http/test_server.py and test_protocol.py have the listener's own cases: parser
errors, HTTP versions, clients that stop reading; tests/edge/cache/test_next_track.py the
hint's rules.)"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.access.signing import signed_query
from origin.layout import RENDITION_PATTERN, TRACK_ID_PATTERN
from origin.local_s3 import free_port
from tests.conftest import TEST_SLICE_BYTES, Catalog, S3Target, make_settings
from tests.support.admin_client import admin_request
from tests.support.edge_node import Node
from tests.support.edge_server import EdgeServer
from tests.support.raw_http import RawReply, raw_request, request_bytes
from tests.support.tcp_proxy import TcpProxy

SECRET = "fuzz-secret-0123456789"
ADMIN_TOKEN = "fuzz-admin-token-0123456789"
# What the edge may ask the origin for: manifests of valid ids and the published audio.
VALID_ORIGIN_KEY = re.compile(
    rf"/[^/]+/tracks/{TRACK_ID_PATTERN}/(manifest\.json|{RENDITION_PATTERN}-[0-9a-f]{{64}}\.ogg)"
)


@pytest.fixture(scope="module")
def origin_proxy(s3: S3Target) -> Iterator[TcpProxy]:
    running = TcpProxy(*s3.host_port).start()
    yield running
    running.stop()


@pytest.fixture(scope="module", params=["open", "signed"])
def hostile_edge(
    request: pytest.FixtureRequest, s3: S3Target, origin_proxy: TcpProxy
) -> Iterator[EdgeServer]:
    auth = {"signing_keys": {"k1": SECRET}} if request.param == "signed" else {}
    edge = EdgeServer(make_settings(origin_proxy.url, s3.bucket, auth=auth)).start()
    yield edge
    edge.stop()


@pytest.fixture(scope="module")
def track(catalog: Catalog) -> tuple[str, str]:
    manifest = catalog.publish({"160": os.urandom(3 * TEST_SLICE_BYTES)})
    return manifest.track_id, "160"


def _check(reply: RawReply, proxy: TcpProxy, seen: int) -> None:
    assert reply.status != 0, "the edge closed the connection without an answer"
    assert reply.status < 500, (reply.status, reply.body[:300])
    assert b"Traceback" not in reply.body
    assert b'File "' not in reply.body
    if (
        reply.body
        and reply.status >= 400
        and reply.headers.get("content-type") == "application/json"
    ):
        body = json.loads(reply.body)
        assert isinstance(body["error"], str)
        assert isinstance(body["message"], str)
    for request in list(proxy.requests)[seen:]:
        assert VALID_ORIGIN_KEY.fullmatch(request.path.split("?")[0]), request.path


_NASTY = [
    "..",
    ".",
    "%2e%2e",
    "%2F",
    "a%2Fb",
    "%00",
    "%",
    "%zz",
    "%25",
    "a b",
    "ä",
    "\u202e",
    "x" * 300,
    "-",
    "_a",
    "A" * 129,
    "1" * 33,
    "manifest.json",
    "%252e",
    "\\",
    "a;b",
    "a?b",
    "a#b",
]
segments = st.one_of(
    st.sampled_from(_NASTY),
    st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40),
    st.from_regex(TRACK_ID_PATTERN, fullmatch=True),
)
header_values = st.one_of(
    st.sampled_from(["", " ", "bytes=", "bytes=0-", "bytes=-0", "bytes=5-1", "bytes=0-0,-1,1-"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=120),
    st.from_regex(r"bytes=([0-9]{0,20}-[0-9]{0,20},?){1,40}", fullmatch=True),
)
# Dates as a client may mangle them: huge or negative fields overflowed the parser once.
huge = st.one_of(st.integers(-(10**25), 10**25), st.sampled_from([0, 99, 2026, 10**20]))
dates = st.one_of(
    st.builds(
        lambda day, month, year, hour, zone: f"Mon, {day} {month} {year} {hour}:00:00 {zone}",
        huge,
        st.sampled_from(["Jan", "Feb", "Foo", ""]),
        huge,
        huge,
        st.sampled_from(["GMT", "+0000", "-9999", "+99999999999", "UTC", ""]),
    ),
    st.sampled_from(["Mon, 01 Jan 2026 00:00:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "0"]),
)
DATE_HEADERS = [b"If-Modified-Since", b"If-Unmodified-Since", b"If-Range"]
HEADER_NAMES = [
    b"Range",
    b"If-Range",
    b"If-None-Match",
    b"If-Modified-Since",
    b"If-Unmodified-Since",
    b"If-Match",
    b"X-Client-Region",
    b"X-Encore-Next",
    b"CMCD-Request",
    b"CMCD-Object",
    b"CMCD-Status",
    b"CMCD-Session",
    b"Authorization",
    b"Accept-Encoding",
]
queries = st.one_of(
    st.just(""),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80),
    st.builds(
        lambda exp, kid, sig: f"exp={exp}&kid={kid}&sig={sig}",
        st.one_of(st.integers(-(10**30), 10**30).map(str), st.text(max_size=10).map(quote)),
        st.sampled_from(["k1", "k2", "", "%00", "k1&kid=k1"]),
        st.text(max_size=50).map(quote),
    ),
    # CMCD as players send it (URL-encoded), mangled, or raw.
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120).map(
        lambda text: "CMCD=" + quote(text, safe="")
    ),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80).map(
        lambda text: "exp=1&CMCD=" + text.replace("&", "")
    ),
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(
    first=segments,
    second=st.one_of(st.none(), segments),
    query=queries,
    encode=st.booleans(),
)
def test_fuzzed_paths_and_queries(
    hostile_edge: EdgeServer,
    origin_proxy: TcpProxy,
    first: str,
    second: str | None,
    query: str,
    encode: bool,
) -> None:
    parts = [first] if second is None else [first, second]
    path = "/v1/tracks/" + "/".join(quote(p, safe="") if encode else p for p in parts)
    target = (path + ("?" + query if query else "")).encode("utf-8", "surrogateescape")
    seen = len(origin_proxy.requests)
    _check(raw_request(hostile_edge.port, request_bytes(target, [])), origin_proxy, seen)


@FUZZ
@given(
    headers=st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=4),
    method=st.sampled_from([b"GET", b"HEAD", b"OPTIONS", b"POST", b"DELETE", b"PATCH", b"BREW"]),
    manifest=st.booleans(),
)
def test_fuzzed_headers_on_a_real_track(
    hostile_edge: EdgeServer,
    origin_proxy: TcpProxy,
    track: tuple[str, str],
    headers: list[tuple[bytes, str]],
    method: bytes,
    manifest: bool,
) -> None:
    track_id, rendition = track
    target = f"/v1/tracks/{track_id}" + ("" if manifest else f"/{rendition}")
    raw = [(name, value.encode("latin-1")) for name, value in headers]
    seen = len(origin_proxy.requests)
    reply = raw_request(
        hostile_edge.port, request_bytes(target.encode(), raw, method), head=method == b"HEAD"
    )
    _check(reply, origin_proxy, seen)


@FUZZ
@given(
    headers=st.lists(st.tuples(st.sampled_from(DATE_HEADERS), dates), min_size=1, max_size=3),
    ranged=st.booleans(),
    manifest=st.booleans(),
)
def test_fuzzed_date_headers_are_ignored_when_invalid(
    hostile_edge: EdgeServer,
    origin_proxy: TcpProxy,
    track: tuple[str, str],
    headers: list[tuple[bytes, str]],
    ranged: bool,
    manifest: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    track_id, rendition = track
    target = f"/v1/tracks/{track_id}" + ("" if manifest else f"/{rendition}")
    raw = [(name, value.encode()) for name, value in headers]
    if ranged:
        raw.append((b"Range", b"bytes=0-9"))
    seen = len(origin_proxy.requests)
    with caplog.at_level(logging.ERROR):
        reply = raw_request(
            hostile_edge.port, request_bytes(_signed_target(hostile_edge, target), raw)
        )
    _check(reply, origin_proxy, seen)
    assert reply.status in {200, 206, 304, 412}, (reply.status, reply.body[:200])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def _signed_target(edge: EdgeServer, path: str) -> bytes:
    """``path``, signed if the edge wants signatures."""
    if not edge.settings.auth.signing_keys:
        return path.encode()
    return f"{path}?{signed_query(SECRET, 'k1', path, int(time.time()) + 600)}".encode()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(hints=st.lists(st.one_of(segments, st.text(max_size=300)), min_size=20, max_size=60))
def test_a_flood_of_hints_on_one_connection_reaches_no_invalid_origin_key(
    hostile_edge: EdgeServer,
    origin_proxy: TcpProxy,
    track: tuple[str, str],
    hints: list[str],
) -> None:
    track_id, rendition = track
    target = _signed_target(hostile_edge, f"/v1/tracks/{track_id}/{rendition}").decode()
    seen = len(origin_proxy.requests)
    conn = http.client.HTTPConnection("127.0.0.1", hostile_edge.port, timeout=15)
    try:
        for hint in hints:
            value = hint.encode("utf-8", "surrogateescape").decode("latin-1")
            value = value.replace("\r", "").replace("\n", "")
            try:
                conn.putrequest("GET", target)
                conn.putheader("Range", "bytes=0-0")
                conn.putheader("X-Encore-Next", value)
                conn.endheaders()
            except ValueError:  # http.client refuses what no header may hold
                conn.close()
                continue
            response = conn.getresponse()
            response.read()
            assert response.status in {206, 400}, (response.status, value[:80])
            if response.status == 400:  # the parser refused a byte: a fresh connection
                conn.close()
    finally:
        conn.close()
    _wait_prefetch_idle(hostile_edge)
    fetched = [r.path for r in list(origin_proxy.requests)[seen:]]
    if hostile_edge.settings.auth.signing_keys:
        assert fetched == []  # none of these is a signed hint: not one origin request
    for path in fetched:
        assert VALID_ORIGIN_KEY.fullmatch(path.split("?")[0]), path


def _wait_prefetch_idle(edge: EdgeServer) -> None:
    edge.call(lambda app: app.prefetcher.idle())


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"tracks": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"tracks": ["a"], "renditions": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
    ],
    ids=["list", "tracks", "object"],
)
def test_deeply_nested_admin_bodies_are_a_400(
    start_edge: Callable[..., EdgeServer], body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    start_edge(admin={"token": ADMIN_TOKEN, "port": port})
    with caplog.at_level(logging.ERROR):
        for path in ("/admin/warm", "/admin/purge"):
            status, answer = admin_request(port, path, body, ADMIN_TOKEN)
            assert (status, answer["error"]) == (400, "bad_body"), (path, status, answer)
    assert [r.getMessage() for r in caplog.records] == []


def test_clients_that_read_a_trickle_are_cut_as_well(s3: S3Target, catalog: Catalog) -> None:
    """A client that takes a few bytes now and then is as good as one that takes none."""
    edge = EdgeServer(
        make_settings(
            s3.endpoint_url,
            s3.bucket,
            server={"send_timeout_s": 1.0, "send_buffer_bytes": 16 * 1024},
        )
    ).start()
    try:
        data = os.urandom(2 * 1024 * 1024)
        path = f"/v1/tracks/{catalog.publish({'160': data}).track_id}/160"
        assert edge.get(path).body == data
        readers = []
        for _ in range(5):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", edge.port))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sock.settimeout(5)
            readers.append(sock)
        taken = [0] * len(readers)
        deadline = time.monotonic() + 20
        open_readers = set(range(len(readers)))
        while open_readers:
            assert time.monotonic() < deadline, "trickling readers were never cut"
            for n in list(open_readers):
                try:
                    chunk = readers[n].recv(64)  # ~640 bytes a second: far below any player
                except (ConnectionResetError, TimeoutError):
                    chunk = b""
                if not chunk:
                    open_readers.discard(n)
                taken[n] += len(chunk)
            time.sleep(0.1)
        assert all(n < len(data) for n in taken)
        for sock in readers:
            sock.close()
        assert edge.get(path, Range="bytes=0-9").body == data[:10]
    finally:
        edge.stop()


@pytest.mark.parametrize(
    ("request_text", "status"),
    [
        (b"GET /v1/tracks/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 400),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(100))
            + b"\r\n",
            400,
        ),
        (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),  # TLS hello
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ],
)
def test_oversized_and_malformed_requests_get_a_4xx(
    hostile_edge: EdgeServer, request_text: bytes, status: int
) -> None:
    reply = raw_request(hostile_edge.port, request_text)
    assert reply.status == status, (reply.status, reply.body[:200])
    assert b"Traceback" not in reply.body


def test_slow_and_silent_clients_are_disconnected(s3: S3Target) -> None:
    server = {"idle_timeout_s": 1.0, "request_head_timeout_s": 1.0}
    edge = EdgeServer(make_settings(s3.endpoint_url, s3.bucket, server=server))
    edge.start()
    try:
        silent = socket.create_connection(("127.0.0.1", edge.port))
        trickle = socket.create_connection(("127.0.0.1", edge.port))
        started = time.monotonic()
        closed_at = None
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 100:
            try:
                trickle.sendall(bytes([byte]))  # one byte every 0.1 s: never a whole head
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic() - started
                break
            time.sleep(0.1)
        assert closed_at is not None, "the slow client was never cut off"
        # The silent one is closed; the slow one is told why first (a JSON 408).
        for sock, expected in ((silent, b""), (trickle, b"HTTP/1.1 408 Request Timeout\r\n")):
            sock.settimeout(5)
            received = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(65536):
                    received += chunk
            assert received.startswith(expected), received[:100]
            assert expected or not received, "the connection was left open"
            sock.close()
        assert time.monotonic() - started < 5
        # A client that sends its request in time is served as before.
        assert edge.get("/healthz").status == 200
    finally:
        edge.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_served_node_applies_the_request_limits(
    start_node: Callable[..., Node], workers: int
) -> None:
    node = start_node(workers=workers, disk_bytes="0")
    port = int(node.url.rsplit(":", 1)[1])
    many = [(b"X-H%d" % i, b"v") for i in range(100)]  # over server.max_headers (64)
    assert raw_request(port, request_bytes(b"/healthz", many)).status == 400
    assert raw_request(port, request_bytes(b"/healthz", many[:20])).status == 200
