"""The HTTP server's per-connection limits, for every listener the edge opens."""

from __future__ import annotations

from typing import Any

from edge.settings import Settings


def http_limits(settings: Settings) -> dict[str, Any]:
    """aiohttp's per-connection limits, from ``[server]``: the request line and header sizes,
    and the idle timeout, which also closes a connection still short of a whole request head
    when it runs out (a slowloris client), since aiohttp only stops that clock at a request."""
    server = settings.server
    return {
        "keepalive_timeout": server.idle_timeout_s,
        "max_line_size": server.max_request_line_bytes,
        "max_field_size": server.max_header_bytes,
        "max_headers": server.max_headers,
    }
