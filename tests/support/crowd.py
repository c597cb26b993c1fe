"""Concurrent HTTP clients that time the first body byte, for single-flight tests."""

from __future__ import annotations

import concurrent.futures
import http.client
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Timed:
    status: int  # 0: the transfer failed (error says how)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    ttfb_s: float = 0.0  # to the first body byte
    total_s: float = 0.0
    error: str | None = None


def timed_get(port: int, path: str, headers: dict[str, str], timeout: float = 20) -> Timed:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        first = response.read(1)
        ttfb = time.perf_counter() - started
        body = first + response.read()
        return Timed(
            response.status,
            body,
            {k.lower(): v for k, v in response.getheaders()},
            ttfb,
            time.perf_counter() - started,
        )
    except (http.client.HTTPException, OSError) as exc:
        return Timed(0, error=type(exc).__name__, total_s=time.perf_counter() - started)
    finally:
        conn.close()


def crowd(port: int, path: str, headers: dict[str, str], clients: int) -> list[Timed]:
    """``clients`` GETs of the same thing, released at the same moment."""
    start = threading.Barrier(clients)

    def one() -> Timed:
        start.wait(10)
        return timed_get(port, path, headers)

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda _: one(), range(clients)))
