"""``/metrics``: what the counters and the TTFB histogram record, bounded label sets, the TTFB
label saying what X-Cache said, and the rendering kept off the event loop."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.edge_server import Counters, EdgeServer, MetricKey

SLICE = TEST_SLICE_BYTES


def _value(samples: dict[MetricKey, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_bytes_by_tier_origin_requests_and_ttfb(
    edge: EdgeServer, catalog: Catalog
) -> None:
    data = os.urandom(50_000)
    manifest = catalog.publish({"96": data})
    path = f"/v1/tracks/{manifest.track_id}/96"
    before = edge.metric_samples()
    assert edge.get(path).status == 200  # miss: every byte from the origin
    assert edge.get(path).status == 200  # hit: every byte from memory
    assert edge.get("/v1/tracks/never-published/96").status == 404
    after = edge.metric_samples()

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("encore_requests_total", route="rendition", method="GET", status="200") == 2
    assert delta("encore_requests_total", route="rendition", method="GET", status="404") == 1
    assert delta("encore_response_bytes_total", tier="origin") == len(data)
    assert delta("encore_response_bytes_total", tier="memory") == len(data)
    assert delta("encore_origin_requests_total", operation="get_range", outcome="ok") == 1
    assert delta("encore_origin_requests_total", operation="get", outcome="ok") == 1  # manifest
    assert delta("encore_origin_requests_total", operation="get", outcome="not_found") == 1
    assert delta("encore_ttfb_seconds_count", cache="MISS") == 1
    assert delta("encore_ttfb_seconds_count", cache="HIT") == 1


def test_hostile_methods_do_not_grow_label_sets(edge: EdgeServer) -> None:
    edge.request("PROPFIND", "/v1/tracks/x/96")
    samples = edge.metric_samples()
    methods = {
        dict(labels).get("method") for name, labels in samples if name == "encore_requests_total"
    }
    assert "PROPFIND" not in methods
    assert "other" in methods


def _until_on_disk(edge: EdgeServer, path: str, byte_range: str) -> None:
    """Until a HEAD says a GET of ``byte_range`` would be read from the disk tier alone (the
    fill's background write has landed)."""
    deadline = time.monotonic() + 10
    while True:
        reply = edge.request("HEAD", path, {"Range": byte_range})
        if (reply.header("X-Cache"), reply.header("X-Cache-Tier")) == ("HIT", "disk"):
            return
        assert time.monotonic() < deadline, f"{byte_range} never reached the disk"
        time.sleep(0.01)


def test_ttfb_of_a_partial_multirange_response_is_labelled_partial(
    catalog: Catalog, start_edge: Callable[..., EdgeServer], tmp_path: Path
) -> None:
    data = os.urandom(4 * SLICE)
    manifest = catalog.publish({"160": data})
    path = f"/v1/tracks/{manifest.track_id}/160"
    # No memory tier: a slice read from disk is held only for this response.
    edge = start_edge(
        cache={"memory_bytes": 0, "disk_bytes": 64 * 1024**2, "disk_path": str(tmp_path)}
    )
    assert edge.get(path, Range=f"bytes=0-{SLICE - 1}").status == 206  # slice 0 to disk
    _until_on_disk(edge, path, f"bytes=0-{SLICE - 1}")
    counters = Counters(edge)

    # Slice 0 from disk, slice 2 from the origin: two ranges, one response.
    reply = edge.get(path, Range=f"bytes=10-19,{2 * SLICE + 5}-{2 * SLICE + 14}")
    assert (reply.status, reply.header("X-Cache")) == (206, "PARTIAL")
    assert [payload for _, payload in reply.multipart_parts()] == [
        data[10:20],
        data[2 * SLICE + 5 : 2 * SLICE + 15],
    ]
    assert counters.delta("encore_ttfb_seconds_count", cache="PARTIAL") == 1
    assert counters.delta("encore_ttfb_seconds_count", cache="HIT") == 0
    assert counters.delta("encore_ttfb_seconds_count", cache="MISS") == 0


class _ThreadProbe(Collector):
    """A collector that notes the thread each collection runs on."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # registering does not collect

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.threads.append(threading.current_thread())
        yield GaugeMetricFamily("encore_test_thread_probe", "Collected by a test.", value=1)


def test_metrics_are_rendered_off_the_event_loop(edge: EdgeServer) -> None:
    probe = _ThreadProbe()
    REGISTRY.register(probe)
    try:
        reply = edge.get("/metrics")
    finally:
        REGISTRY.unregister(probe)
    assert reply.status == 200
    assert b"encore_test_thread_probe 1.0" in reply.body  # this rendering ran the probe
    assert probe.threads, "the probe was never collected"
    assert edge._thread not in probe.threads  # not on the thread that runs the edge's loop
