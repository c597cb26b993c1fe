"""Reading what an in-process edge logged, for tests (pytest's ``caplog``)."""

from __future__ import annotations

import time

import pytest

ACCESS_LOGGER = "aiohttp.access"


def access_lines(caplog: pytest.LogCaptureFixture, count: int, timeout_s: float = 10) -> list[str]:
    """The first ``count`` access log lines, waiting for them: a line is written once its
    response is finished, which may be after the client has read the whole body. (Call it
    inside ``caplog.at_level``: INFO lines that come after it are dropped.)"""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
        if len(lines) >= count:
            return lines[:count]
        assert time.monotonic() < deadline, f"{len(lines)} access log lines, not {count}"
        time.sleep(0.01)
