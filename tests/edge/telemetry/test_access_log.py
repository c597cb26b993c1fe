"""The access log writer: one line per answer in text or JSON, signatures blanked, buffered
and flushed, reopened after logrotate moved the file, and counted when lines are lost."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from edge.http.request import Request
from edge.telemetry import access_log, metrics
from edge.telemetry.access_log import AccessLog
from edge.tools.traces import parse_trace


def _request(target: str, **headers: str) -> Request:
    request = Request(
        "GET",
        target,
        version="1.1",
        headers={name.lower(): value for name, value in headers.items()},
        repeated=None,
        remote="192.0.2.7",
        keep_alive=True,
        started=time.perf_counter(),
    )
    request.cache_status, request.content_range = "HIT", "bytes 0-9/100"
    return request


def test_text_lines_replay_as_a_trace_and_never_carry_a_signature(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), "text")
    log.record(_request("/v1/tracks/t1/160?exp=9&kid=k1&sig=SECRET", Range="bytes=0-9"), 206, 10)
    log.record(None, 400, 78)  # refused before a request could be read
    assert not path.exists() or path.read_text() == ""  # buffered until a flush
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert "SECRET" not in lines[0]
    assert '"GET /v1/tracks/t1/160?exp=9&kid=k1&sig=- HTTP/1.1" 206 10 bytes=0-9 HIT' in lines[0]
    # ... seconds, the CMCD session id ("-": none), and Content-Range last.
    assert lines[1].endswith(' - "- - HTTP/-" 400 78 - - 0.000000 - -')
    trace = parse_trace(lines)
    assert (trace.offsets[0], trace.lengths[0], trace.sizes[0]) == (0, 10, 100)


def test_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), "json")
    log.record(_request("/v1/tracks/t1/160?sig=SECRET&kid=k1"), 206, 10)
    log.close()
    (line,) = path.read_text().splitlines()
    doc = json.loads(line)
    assert doc["target"] == "/v1/tracks/t1/160?sig=-&kid=k1"
    assert (doc["status"], doc["bytes"], doc["cache"], doc["remote"]) == (
        206,
        10,
        "HIT",
        "192.0.2.7",
    )
    assert doc["time"].endswith("Z")


def test_lines_are_flushed_within_the_flush_period(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), "text")

    async def scenario() -> str:
        log.start(asyncio.get_running_loop())
        log.record(_request("/healthz"), 200, 15)
        await asyncio.sleep(access_log.FLUSH_S * 3)
        return path.read_text()

    assert '"GET /healthz HTTP/1.1" 200 15' in asyncio.run(scenario())
    log.close()


def test_reopen_follows_logrotate(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), "text")
    log.record(_request("/one"), 200, 1)
    log.flush()
    path.rename(tmp_path / "access.log.1")  # logrotate moves it away, then signals
    log.record(_request("/two"), 200, 1)
    log.reopen()  # flushes /two into the old file first
    log.record(_request("/three"), 200, 1)
    log.close()
    assert "/one" in (tmp_path / "access.log.1").read_text()
    assert "/two" in (tmp_path / "access.log.1").read_text()
    assert "/three" in path.read_text()
    assert "/two" not in path.read_text()


def test_a_full_buffer_drops_lines_and_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(access_log, "MAX_PENDING_LINES", 3)
    log = AccessLog(str(tmp_path / "access.log"), "text")
    before = metrics.ACCESS_LOG_DROPPED._value.get()
    for _ in range(5):
        log.record(_request("/x"), 200, 1)
    assert metrics.ACCESS_LOG_DROPPED._value.get() - before == 2
    log.close()
    assert len((tmp_path / "access.log").read_text().splitlines()) == 3


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        AccessLog("", "xml")


# What dash.js appends to a signed URL: CMCD last, with a next object that is itself a signed
# URL (its "sig=" URL-encoded twice, once by the player for nor and once for the argument).
DASH_CMCD = (
    "CMCD=bl%3D4200%2Cnor%3D%22..%252Ft2%252F160%253Fexp%253D9%2526kid%253Dk1%2526sig%253DNEXT"
    "SECRET%22%2Csid%3D%22s-1%22"
)


def test_a_cmcd_argument_is_logged_last_with_every_signature_blanked(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), "text")
    first = _request(f"/v1/tracks/t1/160?{DASH_CMCD}&exp=9&kid=k1&sig=SECRET", Range="bytes=0-9")
    first.cmcd_sid = "s-1"
    log.record(first, 206, 10)
    log.record(_request(f"/v1/tracks/t1/160?{DASH_CMCD.replace('4200', '3900')}"), 206, 10)
    log.close()
    lines = path.read_text().splitlines()
    assert "SECRET" not in "".join(lines)
    assert "/v1/tracks/t1/160?exp=9&kid=k1&sig=-&CMCD=bl%3D4200%2Cnor%3D" in lines[0]
    assert "%2526sig%253D-%22%2Csid" in lines[0]
    assert '"GET /v1/tracks/t1/160?CMCD=bl%3D3900' in lines[1]
    trace = parse_trace(lines)  # encore-edge simulate still replays them, keyed by path
    assert trace.keys == ["/v1/tracks/t1/160"]
    assert len(trace) == 2


@pytest.mark.parametrize(
    ("sid", "text_field"),
    [
        (None, "-"),
        ("6e2fb550-c457-11e9-bb97-0800200c9a66", "6e2fb550-c457-11e9-bb97-0800200c9a66"),
        ('a b"c\\d%', "a%20b%22c%5Cd%25"),  # one field: no blank, quote or backslash
        ("-", "%2D"),  # not "none"
        ("s" * 100, "s" * access_log.MAX_SID_CHARS),
    ],
)
def test_the_cmcd_session_id_is_a_field_of_its_own(
    tmp_path: Path, sid: str | None, text_field: str
) -> None:
    request = _request("/v1/tracks/t1/160", Range="bytes=0-9")
    request.cmcd_sid = sid
    text_log, json_log = (
        AccessLog(str(tmp_path / "a.log"), "text"),
        AccessLog(str(tmp_path / "a.json"), "json"),
    )
    text_log.record(request, 206, 10)
    json_log.record(request, 206, 10)
    text_log.close()
    json_log.close()
    (line,) = (tmp_path / "a.log").read_text().splitlines()
    assert line.endswith(f" {text_field} bytes 0-9/100")  # Content-Range stays last
    assert parse_trace([line]).lengths[0] == 10
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["sid"] == ("-" if sid is None else sid[: access_log.MAX_SID_CHARS])
