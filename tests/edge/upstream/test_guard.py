"""Retries, deadlines and the circuit breaker, against a real S3 server behind a faulty proxy.
Origin requests are counted at the proxy."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.clock import ManualClock
from tests.support.edge_server import EdgeServer
from tests.support.tcp_proxy import SeenRequest, TcpProxy, canned_response

SLICE = TEST_SLICE_BYTES
S3_503 = canned_response(503, "Service Unavailable", b"<Error><Code>SlowDown</Code></Error>")
S3_403 = canned_response(403, "Forbidden", b"<Error><Code>AccessDenied</Code></Error>")


def _track(catalog: Catalog, size: int = 2 * SLICE) -> tuple[str, str, bytes]:
    data = os.urandom(size)
    manifest = catalog.publish({"160": data})
    return f"/v1/tracks/{manifest.track_id}/160", manifest.renditions["160"].key, data


def _fail_first(proxy: TcpProxy, key: str, times: int, answer: bytes | bool) -> None:
    """The first ``times`` GETs of ``key`` get ``answer`` (a canned response, or False: the
    connection is dropped); later ones reach the server."""
    seen = 0

    def hook(request: SeenRequest) -> bool | bytes:
        nonlocal seen
        if request.method == "GET" and key in request.path:
            seen += 1
            if seen <= times:
                return answer
        return True

    proxy.faults.on_request = hook


def _error(body: bytes) -> str:
    return str(json.loads(body)["error"])


def test_a_5xx_is_retried_and_the_player_never_sees_it(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    path, key, data = _track(catalog)
    edge = start_edge(origin_url=proxy.url, origin={"retries": 2, "retry_backoff_s": 0.01})
    _fail_first(proxy, key, 2, S3_503)
    reply = edge.get(path)
    assert reply.status == 200
    assert reply.body == data
    assert len(proxy.gets(key)) == 3


def test_a_dropped_connection_is_retried(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    path, key, data = _track(catalog)
    edge = start_edge(origin_url=proxy.url, origin={"retries": 1, "retry_backoff_s": 0.01})
    _fail_first(proxy, key, 1, False)
    reply = edge.get(path)
    assert (reply.status, reply.body == data) == (200, True)
    assert len(proxy.gets(key)) == 2


def test_retries_are_bounded_and_end_in_a_json_502(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    path, key, _ = _track(catalog)
    edge = start_edge(origin_url=proxy.url, origin={"retries": 2, "retry_backoff_s": 0.01})
    _fail_first(proxy, key, 100, S3_503)
    reply = edge.get(path)
    assert reply.status == 502
    assert _error(reply.body) == "origin_error"
    assert len(proxy.gets(key)) == 3  # one try and two retries


def test_a_4xx_is_not_retried(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    path, key, _ = _track(catalog)
    edge = start_edge(origin_url=proxy.url, origin={"retries": 3, "retry_backoff_s": 0.01})
    _fail_first(proxy, key, 100, S3_403)
    reply = edge.get(path)
    assert reply.status == 502
    assert _error(reply.body) == "origin_error"
    assert len(proxy.gets(key)) == 1


def test_the_deadline_bounds_a_slow_origin_with_a_json_504(
    catalog: Catalog, proxy: TcpProxy, start_edge: Callable[..., EdgeServer]
) -> None:
    path, key, _ = _track(catalog)
    edge = start_edge(origin_url=proxy.url, origin={"deadline_s": 1.0, "retries": 3})
    assert edge.get(path.rsplit("/", 1)[0]).status == 200
    # An origin that never answers: only the deadline can end the request (without it, the
    # client's own timeout would, and the test fail).
    proxy.faults.latency_s = 3600
    reply = edge.request("GET", path, timeout=30)
    assert reply.status == 504
    assert _error(reply.body) == "origin_timeout"
    # The deadline covers the retries: the one try it cut short was the last (each try
    # reaches the proxy before the deadline can pass on it, so a retry would be counted).
    assert len(proxy.gets(key)) == 1


def test_the_breaker_fails_misses_fast_keeps_serving_hits_and_closes_on_its_own(
    catalog: Catalog,
    proxy: TcpProxy,
    start_edge: Callable[..., EdgeServer],
) -> None:
    hot_path, _, hot = _track(catalog)
    cold_path, cold_key, cold = _track(catalog)
    clock = ManualClock()  # the breaker's: its open period passes when the test says so
    edge = start_edge(
        origin_url=proxy.url,
        clock=clock,
        origin={"retries": 0, "breaker_failures": 3, "breaker_open_s": 30.0},
    )
    assert edge.get(hot_path).body == hot
    assert edge.get(cold_path.rsplit("/", 1)[0]).status == 200  # its manifest is cached

    proxy.set_down(True)
    statuses = [edge.get(cold_path).status for _ in range(3)]
    assert statuses == [502, 502, 502]  # the failures that open it
    # The origin is back, but the breaker is open: a request that asked it now would be seen
    # at the proxy (and be served). One that waited for the breaker would wait for a clock
    # that does not move: the client's timeout would show it.
    proxy.set_down(False)
    gets_while_open = len(proxy.requests)
    refused = edge.request("GET", cold_path, timeout=10)
    assert refused.status == 503
    assert _error(refused.body) == "origin_circuit_open"
    assert refused.header("Retry-After") == "30"  # all of the open period is left
    assert len(proxy.requests) == gets_while_open  # nothing was asked of the origin
    hit = edge.get(hot_path, Range="bytes=0-99")
    assert (hit.status, hit.body, hit.header("X-Cache")) == (206, hot[:100], "HIT")
    clock.advance(29.5)
    refused = edge.request("GET", cold_path, timeout=10)
    assert (refused.status, refused.header("Retry-After")) == (503, "1")
    assert len(proxy.requests) == gets_while_open

    clock.advance(0.5)  # open_s: the next miss goes as a half-open probe
    probe = edge.get(cold_path)
    assert (probe.status, probe.body == cold) == (200, True)
    assert edge.metric_samples()[("encore_origin_breaker_state", frozenset())] == 0
    assert len(proxy.gets(cold_key)) == 1  # the probe (the failures never reached it)
