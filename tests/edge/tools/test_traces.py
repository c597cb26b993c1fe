"""Reading traces: the plain trace format and the edge's own access log, as the edge writes it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.tools.traces import TraceError, parse_trace, read_trace
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.edge_server import EdgeServer


def _rows(text: str) -> list[tuple[str, int, int, int]]:
    trace = parse_trace(text.splitlines())
    return [
        (trace.keys[k], s, o, n)
        for k, s, o, n in zip(trace.key_ids, trace.sizes, trace.offsets, trace.lengths, strict=True)
    ]


def test_plain_format_with_ranges_commas_and_comments() -> None:
    text = (
        "# timestamp key size [offset length]\n"
        "1.0 a 1000\n"
        "2.5,b,5000,100,200\n"
        "3\ta\t1000\t900\t500\n"  # runs past the end: clipped to the object
        "\n"
    )
    assert _rows(text) == [("a", 1000, 0, 1000), ("b", 5000, 100, 200), ("a", 1000, 900, 100)]


def test_bad_lines_are_skipped_and_counted() -> None:
    trace = parse_trace(["1 a 100", "2 b", "3 c notanumber", "4 d 100 200 10", "5 e 0"])
    assert len(trace) == 1
    assert trace.skipped == 4
    assert trace.first_problem == "line 2: expected 3 or 5 fields, got 2"


_PREFIX = "2026-11-21 13:08:15,087 INFO aiohttp.access: 127.0.0.1 "
ACCESS_LOG = [
    _PREFIX + line
    for line in (
        '"GET /v1/tracks/t1/160 HTTP/1.1" 206 1000 bytes=1000-1999 HIT 0.001 bytes 1000-1999/70000',
        '"GET /v1/tracks/t1/160 HTTP/1.1" 200 70000 - MISS 0.010 -',
        '"GET /v1/tracks/t1 HTTP/1.1" 200 900 - - 0.001 -',
        '"HEAD /v1/tracks/t1/160 HTTP/1.1" 200 0 - - 0.001 -',
        '"GET /v1/tracks/t1/160 HTTP/1.1" 304 0 - - 0.001 -',
        '"GET /v1/tracks/t1/160 HTTP/1.1" 206 300 bytes=0-9,20-29 HIT 0.001 -',
        '"GET /v1/tracks/t2/96?exp=1 HTTP/1.1" 206 10 bytes=-10 MISS 0.001 bytes 4990-4999/5000',
    )
]


def test_access_log_replays_rendition_gets() -> None:
    assert _rows("\n".join(ACCESS_LOG)) == [
        ("/v1/tracks/t1/160", 70000, 1000, 1000),
        ("/v1/tracks/t1/160", 70000, 0, 70000),
        ("/v1/tracks/t2/96", 5000, 4990, 10),
    ]
    assert parse_trace(ACCESS_LOG).skipped == 4  # manifest, HEAD, 304, multipart


def test_unusable_files_say_why(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="No such file"):
        read_trace(tmp_path / "absent.txt")
    junk = tmp_path / "junk.txt"
    junk.write_text("hello world\n")
    with pytest.raises(TraceError, match=r"no replayable requests \(line 1: expected 3 or 5"):
        read_trace(junk)


def test_the_edge_s_own_access_log_lines_replay(edge: EdgeServer, catalog: Catalog) -> None:
    """The access log as edge.telemetry.access_log writes it, signed query and all, is a
    trace."""
    data = os.urandom(3 * TEST_SLICE_BYTES)
    path = f"/v1/tracks/{catalog.publish({'160': data}).track_id}/160"
    mark = edge.access_mark()  # the edge is shared with other tests
    edge.get(path + "?exp=1&kid=k1&sig=abc", Range="bytes=100-199")
    edge.get(path)
    edge.get(path, Range="bytes=0-9,20-29")
    lines = edge.access_lines(3, since=mark)  # written after each response
    trace = parse_trace(lines)
    rows = [
        (trace.keys[k], s, o, n)
        for k, s, o, n in zip(trace.key_ids, trace.sizes, trace.offsets, trace.lengths, strict=True)
    ]
    assert rows == [(path, len(data), 100, 100), (path, len(data), 0, len(data))]
    assert trace.skipped == 1  # the multipart response
