"""The admin API's bearer token: compared in constant time, with a backoff per peer.

A peer (client address) may send :data:`FREE_FAILURES` wrong tokens; after that, each further
failure makes it wait before it is heard again: :data:`FIRST_BACKOFF_S`, doubling with every
failure up to :data:`MAX_BACKOFF_S`. While it waits, its requests are refused unread with
``429 too_many_failures`` and ``Retry-After`` (the right token too: otherwise guessing would go
on at full speed). A right token clears the peer's record. Failures are counted in
``encore_admin_auth_failures_total``. The record is per worker process, in a bounded table.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cachetools import LRUCache

from edge.admin.listener import json_error
from edge.telemetry import metrics

FREE_FAILURES = 5
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
PEERS_TRACKED = 10_000


@dataclass(slots=True)
class _Record:
    failures: int = 0
    wait_until: float = 0.0


class FailureBackoff:
    """Who sent wrong tokens lately, and until when each must wait."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._peers: LRUCache[str, _Record] = LRUCache(PEERS_TRACKED)

    def wait_s(self, peer: str) -> float:
        """How long ``peer`` must still wait before it is heard (0: not at all)."""
        record = self._peers.get(peer)
        return 0.0 if record is None else max(record.wait_until - self._clock(), 0.0)

    def failed(self, peer: str) -> None:
        record = self._peers.get(peer)
        if record is None:
            record = self._peers[peer] = _Record()
        record.failures += 1
        beyond = record.failures - FREE_FAILURES
        if beyond > 0:
            backoff = min(FIRST_BACKOFF_S * 2 ** min(beyond - 1, 32), MAX_BACKOFF_S)
            record.wait_until = self._clock() + backoff

    def succeeded(self, peer: str) -> None:
        self._peers.pop(peer, None)


def require_token(token: str, backoff: FailureBackoff) -> Middleware:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request.remote or "-"
        wait = backoff.wait_s(peer)
        if wait > 0:
            metrics.ADMIN_AUTH_FAILURES.labels("backoff").inc()
            return json_error(
                429,
                "too_many_failures",
                "too many wrong admin tokens from this address; wait before trying again",
                {"Retry-After": str(math.ceil(wait))},
            )
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, expected):
            backoff.failed(peer)
            metrics.ADMIN_AUTH_FAILURES.labels("refused").inc()
            return json_error(
                401,
                "unauthorized",
                "this needs the admin token: Authorization: Bearer <admin.token>",
                {"WWW-Authenticate": 'Bearer realm="encore-admin"'},
            )
        backoff.succeeded(peer)
        return await handler(request)

    return check
