"""A client for the edge's admin listener, for tests."""

from __future__ import annotations

import http.client
import json
from typing import Any


def admin_request(
    port: int, path: str, body: bytes | dict[str, Any] | None, token: str | None
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` (a dict is sent as JSON, bytes as they are) to ``path`` on the admin port,
    or GET it when ``body`` is None; ``token`` None sends no Authorization. (status, JSON)."""
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET" if body is None else "POST", path, body=raw, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()
