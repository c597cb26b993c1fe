"""What the public listener is told of every answer: counted (in plain numbers, see
``edge.telemetry.metrics.CountedSeries``) and written to the access log."""

from __future__ import annotations

from edge.http.request import Request
from edge.telemetry import metrics
from edge.telemetry.access_log import AccessLog

_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"})


class Answers:
    """The listener's ``Observer``."""

    def __init__(self, access_log: AccessLog | None) -> None:
        self.access_log = access_log

    def answered(self, request: Request | None, status: int, outcome: str, body_bytes: int) -> None:
        if request is None:
            metrics.requests("unmatched", "other", outcome).inc()
        else:
            method = request.method if request.method in _METHODS else "other"  # bounded labels
            metrics.requests(request.route, method, outcome).inc()
        if self.access_log is not None:
            self.access_log.record(request, status, body_bytes)
