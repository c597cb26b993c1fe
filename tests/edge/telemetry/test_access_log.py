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
    assert lines[1].endswith(' - "- - HTTP/-" 400 78 - - 0.000000 -')
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
