"""The access log: one line per answer, formatted once, buffered, and written in one
``write()`` at least every :data:`FLUSH_S` and on shutdown (not through ``logging``, which
costs a busy node more per line than the rest of a hit).

``server.access_log_format``: ``text`` (the default, which ``encore-edge simulate`` replays)
or ``json``, one object a line. ``server.access_log_path``: a file, appended to (several
workers share it: each flush is one ``O_APPEND`` write), or empty for stderr. SIGUSR1 makes
every worker reopen the file, as nginx does, so logrotate can move it away.

A signed URL's ``sig`` is blanked (the path and ``kid`` stay): signatures never reach a log.
A ``CMCD`` argument (``edge.telemetry.cmcd``) is logged last in the query, with any signature
URL-encoded inside it (a ``nor`` may carry one) blanked too; the player's CMCD session id is a
field of its own (``-`` when there is none), before ``Content-Range``, which stays last for
``encore-edge simulate``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import time
from datetime import UTC, datetime
from urllib.parse import quote

from edge.http.request import Request
from edge.telemetry import metrics

log = logging.getLogger(__name__)

FLUSH_S = 0.1
MAX_PENDING_LINES = 100_000  # past this (a stalled disk), lines are dropped and counted
_SIG = re.compile(r"(?<=[?&])sig=[^&]*")
# In a CMCD list: "sig=" URL-encoded once or more (dash.js encodes nor, then the whole list).
_NESTED_SIG = re.compile(r"(sig(?:=|%(?:25)*3[Dd]))[^&%]*")
FORMATS = ("text", "json")
MAX_SID_CHARS = 64  # CTA-5004's bound; the parser holds to it, the log does not rely on that


@functools.lru_cache(maxsize=1024)
def _blanked(target: str) -> str:
    """``target`` without its signature (a player sends one signed URL many times)."""
    return _SIG.sub("sig=-", target)


def _target(request: Request) -> str:
    if request.cmcd is not None:
        return _target_with_cmcd(request, request.cmcd)
    target = request.target
    return _blanked(target) if "sig=" in target else target


def _target_with_cmcd(request: Request, cmcd: str) -> str:
    """The target with its CMCD argument last: the rest is the same in each of a player's
    requests (its blanking memoised), the CMCD list new every time."""
    query = request.query_string
    target = f"{request.raw_path}?{query}" if query else request.raw_path
    if "sig=" in target:
        target = _blanked(target)
    if "sig" in cmcd:
        cmcd = _NESTED_SIG.sub(r"\1-", cmcd)
    return f"{target}{'&' if query else '?'}CMCD={cmcd}"


@functools.lru_cache(maxsize=4096)  # a player sends its session id with every request
def _text_sid(sid: str) -> str:
    """A session id as one field of a text line: no blank, quote or control character; a
    lone "-" (which says "none") encoded too."""
    return quote(sid[:MAX_SID_CHARS], safe="!#$&'()*+,/:;=?@[]^`{|}~") if sid != "-" else "%2D"


class AccessLog:
    def __init__(self, path: str = "", fmt: str = "text") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown access log format {fmt!r}")
        self.path = path
        self._json = fmt == "json"
        self._lines: list[str] = []
        self._fd = self._open()
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""  # that second, formatted once
        self._millisecond = -1
        self._moment = ""  # the time stamp of that millisecond, formatted once

    def _open(self) -> int:
        if not self.path:
            return 2  # stderr
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def reopen(self) -> None:
        """After logrotate moved the file: write on into a new one at the same path."""
        self.flush()
        if not self.path:
            return
        try:
            fd = self._open()
        except OSError as exc:
            log.warning("could not reopen the access log %s: %s", self.path, exc.strerror)
            return
        old, self._fd = self._fd, fd
        os.close(old)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = loop.call_later(FLUSH_S, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.flush()
        self._timer = loop.call_later(FLUSH_S, self._tick, loop)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        if self._fd != 2:
            os.close(self._fd)
            self._fd = 2

    def record(self, request: Request | None, status: int, body_bytes: int) -> None:
        if len(self._lines) >= MAX_PENDING_LINES:
            metrics.ACCESS_LOG_DROPPED.inc()
            return
        millisecond = int(time.time() * 1000)
        if millisecond != self._millisecond:
            self._millisecond = millisecond
            if millisecond // 1000 != self._second:
                self._second = millisecond // 1000
                self._stamp = f"{datetime.fromtimestamp(self._second, UTC):%Y-%m-%dT%H:%M:%S}"
            self._moment = f"{self._stamp}.{millisecond % 1000:03d}Z"
        if request is None:  # refused before a request could be read
            seconds = 0.0
            remote, method, target, version = "-", "-", "-", "-"
            range_, cache, content_range = "-", "-", "-"
            sid = None
        else:
            seconds = time.perf_counter() - request.started
            remote, method, target = request.remote or "-", request.method, _target(request)
            version = request.version
            range_ = request.headers.get("range", "-")
            cache, content_range = request.cache_status, request.content_range
            sid = request.cmcd_sid
        if self._json:
            line = json.dumps(
                {
                    "time": self._moment,
                    "remote": remote,
                    "method": method,
                    "target": target,
                    "version": version,
                    "status": status,
                    "bytes": body_bytes,
                    "range": range_,
                    "cache": cache,
                    "seconds": round(seconds, 6),
                    "sid": "-" if sid is None else sid[:MAX_SID_CHARS],
                    "content_range": content_range,
                }
            )
        else:
            line = (
                f'{self._moment} {remote} "{method} {target} '
                f'HTTP/{version}" {status} {body_bytes} {range_} {cache} {seconds:.6f} '
                f"{'-' if sid is None else _text_sid(sid)} {content_range}"
            )
        self._lines.append(line)

    def flush(self) -> None:
        lines = self._lines
        if not lines:
            return
        self._lines = []
        data = ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace")
        try:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        except OSError as exc:
            metrics.ACCESS_LOG_DROPPED.inc(len(lines))
            log.warning("could not write the access log: %s", exc.strerror)
