from __future__ import annotations

import os

from tests.conftest import Catalog
from tests.support.edge_server import EdgeServer, MetricKey


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
