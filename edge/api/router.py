"""The public routes, and the one place their errors become JSON answers.

``/v1/tracks/{track_id}`` (``edge.api.manifest``), ``/v1/tracks/{track_id}/{rendition}``
(``edge.api.rendition``), ``/healthz``, ``/readyz``, ``/metrics`` (``edge.api.probes``).
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any
from urllib.parse import unquote

from edge.api import probes
from edge.api.manifest import get_manifest
from edge.api.rendition import get_rendition
from edge.api.services import Services
from edge.http.errors import BadRequest, EncoreError, status_of
from edge.http.protocol import HttpConnection
from edge.http.request import Request
from edge.http.response import JSON, error_body, header_block
from edge.telemetry.player_reports import note_session
from origin import layout

log = logging.getLogger(__name__)

Pending = Coroutine[Any, Any, None] | None
_TRACKS = "/v1/tracks/"
_TRACK_METHODS = "GET,HEAD,OPTIONS"
_PROBE_METHODS = "GET,HEAD"
_PREFLIGHT = header_block(
    {
        "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
        "Access-Control-Allow-Headers": "Range, If-Range, If-None-Match, If-Modified-Since, "
        "If-Match, If-Unmodified-Since, X-Encore-Next",
        "Access-Control-Max-Age": "86400",
    }
)
_PROBES = {"/healthz": probes.healthz, "/readyz": probes.readyz}
MAX_KNOWN_PATHS = 16_384  # all forgotten when it fills up


class PublicApi:
    """The listener's handler: routes a request, and answers what its handler raises."""

    def __init__(self, services: Services) -> None:
        self.services = services
        # Paths whose track id and rendition name were found valid, split and decoded.
        self._track_paths: dict[str, tuple[str, str | None]] = {}

    def __call__(self, request: Request, conn: HttpConnection) -> Pending:
        try:
            pending = self._route(request, conn)
        except EncoreError as exc:
            answer_error(request, conn, exc)
            return None
        return None if pending is None else _answering_errors(request, conn, pending)

    def _route(self, request: Request, conn: HttpConnection) -> Pending:
        path = request.path
        if path.startswith(_TRACKS):
            return self._track(request, conn)
        probe = _PROBES.get(path)
        if probe is None and path != "/metrics":
            _not_found(request, conn)
            return None
        request.route = path[1:]
        if request.method not in ("GET", "HEAD"):
            _not_allowed(request, conn, _PROBE_METHODS)
            return None
        if probe is None:
            return probes.metrics(self.services, request, conn)
        probe(self.services, request, conn)
        return None

    def _track(self, request: Request, conn: HttpConnection) -> Pending:
        raw = request.raw_path
        known = self._track_paths.get(raw)
        checked = known is not None  # valid: checked once per path, not per request
        if known is None:
            known = _track_path(raw)
            if known is None:
                _not_found(request, conn)
                return None
        track_id, name = known
        request.route = "manifest" if name is None else "rendition"
        method = request.method
        if method not in ("GET", "HEAD", "OPTIONS"):
            _not_allowed(request, conn, _TRACK_METHODS)
            return None
        if not checked:
            if not layout.is_track_id(track_id):
                raise BadRequest("track ids are 1-128 of A-Z a-z 0-9 _ -", code="invalid_track_id")
            if name is not None and not layout.is_rendition_name(name):
                raise BadRequest(
                    "rendition names are 1-32 of A-Z a-z 0-9 _ -", code="invalid_rendition"
                )
            if len(self._track_paths) >= MAX_KNOWN_PATHS:
                self._track_paths.clear()
            self._track_paths[raw] = known
        if method == "OPTIONS":  # the CORS preflight of web players
            conn.respond(request, 204, _PREFLIGHT)
            return None
        if name is None:
            return get_manifest(self.services, request, conn, track_id)
        return get_rendition(self.services, request, conn, track_id, name)


def _track_path(raw: str) -> tuple[str, str | None] | None:
    """(track id, rendition name or None) of a ``/v1/tracks/...`` path as sent, each part
    decoded (an encoded "/" is part of an id); None if it has no such shape."""
    parts = raw[len(_TRACKS) :].split("/") if raw.startswith(_TRACKS) else []
    parts = [unquote(part) if "%" in part else part for part in parts]
    if not 0 < len(parts) <= 2 or not all(parts):
        return None
    return parts[0], parts[1] if len(parts) == 2 else None


async def _answering_errors(request: Request, conn: HttpConnection, pending: Pending) -> None:
    assert pending is not None
    try:
        await pending
    except EncoreError as exc:
        if conn.head_sent:  # the body's own errors are answered where it is sent
            raise
        answer_error(request, conn, exc)


def answer_error(request: Request, conn: HttpConnection, exc: EncoreError) -> None:
    note_session(request)  # a failing player session is worth following in the log
    block = b"Content-Type: %s\r\n%s" % (JSON.encode(), header_block(exc.headers))
    conn.respond(request, status_of(exc), block, error_body(exc.code, exc.message, exc.details()))


def _not_found(request: Request, conn: HttpConnection) -> None:
    block = f"Content-Type: {JSON}\r\n".encode()
    conn.respond(request, 404, block, error_body("not_found", "no such resource"))


def _not_allowed(request: Request, conn: HttpConnection, allow: str) -> None:
    block = f"Content-Type: {JSON}\r\nAllow: {allow}\r\n".encode()
    conn.respond(request, 405, block, error_body("method_not_allowed", "Method Not Allowed"))
