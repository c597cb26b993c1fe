"""The admin app's cross-cutting behaviour on aiohttp: JSON errors and request metrics."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from edge.admin.listener import REFUSAL, json_error
from edge.http.errors import EncoreError, status_of
from edge.telemetry import metrics

log = logging.getLogger(__name__)

_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"})
# Codes for the errors aiohttp raises itself (routing, body limits): fixed here, not derived
# from reason phrases, which change between Python versions (413 did in 3.13).
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def error_response(exc: EncoreError) -> web.Response:
    return json_error(status_of(exc), exc.code, exc.message, exc.headers, exc.details())


def _route(request: web.Request) -> str:
    name = request.match_info.route.resource.name if request.match_info.route.resource else None
    return name or "unmatched"


@web.middleware
async def handle_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes ``{"error", "message"}`` JSON; never a traceback in a body."""
    refusal = request.get(REFUSAL)
    if refusal is not None:  # refused at the protocol level (edge.admin.listener)
        status, code, message = refusal
        response = json_error(status, code, message)
        response.force_close()
        return response
    try:
        return await handler(request)
    except EncoreError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, f"http_{exc.status}")
        message = "no such resource" if exc.status == 404 else exc.reason
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return json_error(exc.status, code, message, headers)
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return json_error(500, "internal_error", "internal error; see the edge's log")


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    status = "500"
    try:
        response = await handler(request)
        status = str(response.status)
        return response
    finally:
        method = request.method if request.method in _METHODS else "other"  # bounded labels
        metrics.requests(_route(request), method, status).inc()


MIDDLEWARES = [count_requests, handle_errors]
