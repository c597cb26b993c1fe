"""The edge's Prometheus metrics, and the ``/metrics`` endpoint.

Labels stay low-cardinality: never a track id. With ``PROMETHEUS_MULTIPROC_DIR`` set, the
endpoint aggregates every worker process (prometheus-client multiprocess mode).
"""

from __future__ import annotations

import os

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "encore_requests",
    "HTTP requests answered, by route, method and status code.",
    ["route", "method", "status"],
)
RESPONSE_BYTES = Counter(
    "encore_response_bytes",
    "Audio body bytes sent to clients, by the cache tier they came from.",
    ["tier"],
)
ORIGIN_REQUESTS = Counter(
    "encore_origin_requests",
    "Requests sent to the origin bucket, by operation and outcome.",
    ["operation", "outcome"],
)
ORIGIN_BYTES = Counter("encore_origin_bytes", "Body bytes received from the origin.")
TTFB = Histogram(
    "encore_ttfb_seconds",
    "Time from request start to the first body byte written, by X-Cache result.",
    ["cache"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def _registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(_registry())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
