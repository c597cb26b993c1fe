"""``/healthz`` (alive), ``/readyz`` (ready to serve) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import asyncio
import contextlib
import json

from prometheus_client import CONTENT_TYPE_LATEST

from edge.api.services import Services
from edge.http.protocol import HttpConnection
from edge.http.request import Request
from edge.telemetry.metrics import fold, render

PEER_FOLD_S = 1.0  # a worker slower than this to fold shows counts up to a second old
_JSON_UTF8 = b"Content-Type: application/json; charset=utf-8\r\n"
_METRICS_TYPE = f"Content-Type: {CONTENT_TYPE_LATEST}\r\n".encode()


def _json(conn: HttpConnection, request: Request, status: int, doc: dict[str, str]) -> None:
    conn.respond(request, status, _JSON_UTF8, json.dumps(doc).encode())


def healthz(services: Services, request: Request, conn: HttpConnection) -> None:
    _json(conn, request, 200, {"status": "ok"})


def readyz(services: Services, request: Request, conn: HttpConnection) -> None:
    """Ready: the origin client is open, the disk index is rebuilt, and the node is not
    shutting down. (Requests are served while the disk index is rebuilt, a few seconds.)"""
    if not services.ready[0]:
        _json(conn, request, 503, {"status": "not_ready"})
        return
    disk = services.slices.disk
    if disk is not None and not disk.rebuilt.is_set():
        _json(conn, request, 503, {"status": "rebuilding_disk_index"})
        return
    _json(conn, request, 200, {"status": "ready"})


async def metrics(services: Services, request: Request, conn: HttpConnection) -> None:
    # Rendered in a thread: with several workers it reads and merges every worker's files,
    # which would stall the requests this worker is serving.
    fold()
    if services.fold_peers is not None:  # so /metrics on any worker is up to date
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(services.fold_peers(), PEER_FOLD_S)
    body = await asyncio.to_thread(render)
    conn.respond(request, 200, _METRICS_TYPE, body)
