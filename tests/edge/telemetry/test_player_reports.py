"""The player metrics (edge.telemetry.player_reports): what CMCD reports is counted by the
client's region as encore_license_denials_total names it, from the query argument and the
headers alike, never for a request refused by its checks; and a multi-worker node's /metrics
sums every worker's counts."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from edge.access.signing import signed_query
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support import cmcd
from tests.support.edge_node import Node
from tests.support.edge_server import Counters, EdgeServer

SECRET = "players-secret-0123456789"
REQUESTS = "encore_player_cmcd_requests_total"


def test_reports_are_counted_by_client_region(
    catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    manifest = catalog.publish({"160": os.urandom(TEST_SLICE_BYTES)})
    path = f"/v1/tracks/{manifest.track_id}/160"
    edge = start_edge(edge={"metric_regions": ["NO"]})  # SE (the edge's) and NO are labels
    counters = Counters(edge)
    startup: cmcd.Values = {"su": True, "bl": 0, "br": 96, "mtp": 900, "sid": "s1"}
    stalled: cmcd.Values = {"bs": True, "su": True, "bl": 0, "br": 96, "mtp": 700}
    playing: cmcd.Values = {"bl": 12_300, "br": 160, "mtp": 4200}
    assert edge.get(cmcd.appended(path, startup), X_Client_Region="SE").status == 200
    assert edge.get(path, X_Client_Region="SE", **cmcd.headers(stalled)).status == 200
    assert edge.get(cmcd.appended(path, playing), X_Client_Region="NO").status == 200
    assert edge.get(cmcd.appended(path, playing), X_Client_Region="DE").status == 200
    assert edge.get(f"/v1/tracks/{manifest.track_id}", **cmcd.headers({"su": True})).status == 200
    assert edge.get(path, X_Client_Region="SE").status == 200  # no CMCD: not counted

    def delta(name: str, region: str, **labels: str) -> float:
        return counters.delta(name, client_region=region, **labels)

    assert [delta(REQUESTS, region) for region in ("SE", "NO", "other")] == [3, 1, 1]
    assert delta("encore_player_startup_requests_total", "SE") == 3  # the manifest's too
    assert delta("encore_player_stall_requests_total", "SE") == 1
    assert delta("encore_player_stall_requests_total", "NO") == 0
    buffer = "encore_player_buffer_length_seconds"
    assert delta(f"{buffer}_count", "SE") == 2
    assert delta(f"{buffer}_bucket", "SE", le="0.5") == 2  # bl=0: an empty buffer
    assert delta(f"{buffer}_sum", "NO") == pytest.approx(12.3)  # sent in ms, shown in s
    assert delta(f"{buffer}_bucket", "NO", le="10.0") == 0
    assert delta(f"{buffer}_bucket", "NO", le="15.0") == 1
    bitrate = "encore_player_requested_bitrate_kbps"
    assert delta(f"{bitrate}_bucket", "SE", le="96.0") == 2
    assert delta(f"{bitrate}_bucket", "other", le="128.0") == 0
    assert delta(f"{bitrate}_bucket", "other", le="160.0") == 1
    throughput = "encore_player_measured_throughput_kbps"
    assert delta(f"{throughput}_sum", "SE") == 1600
    assert delta(f"{throughput}_bucket", "NO", le="5000.0") == 1


def test_a_refused_request_moves_no_player_metric(
    catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    manifest = catalog.publish({"160": os.urandom(TEST_SLICE_BYTES)})
    edge = start_edge(auth={"signing_keys": {"k1": SECRET}})
    counters = Counters(edge)
    report: cmcd.Values = {"bs": True, "bl": 0, "br": 160}
    unsigned = cmcd.appended(f"/v1/tracks/{manifest.track_id}/160", report)
    assert edge.get(unsigned).status == 403
    assert edge.get(cmcd.appended("/v1/tracks/t-nosuchtrack/160", report)).status == 403
    assert counters.delta(REQUESTS, client_region="SE") == 0
    assert counters.delta("encore_player_stall_requests_total", client_region="SE") == 0


def test_every_workers_reports_are_summed(
    catalog: Catalog, start_node: Callable[..., Node]
) -> None:
    manifest = catalog.publish({"160": os.urandom(TEST_SLICE_BYTES)})
    node = start_node(workers=2, extra_toml=f'[auth]\nsigning_keys = {{k1 = "{SECRET}"}}\n')
    path = f"/v1/tracks/{manifest.track_id}/160"
    url = f"{path}?{signed_query(SECRET, 'k1', path, int(time.time()) + 600)}"
    sent = 24
    for n in range(sent):  # each on a new connection: the kernel spreads them over the workers
        assert node.status(cmcd.appended(url, {"bs": True, "bl": 100 * n})) == 200
    assert node.metric(REQUESTS, client_region="SE") == sent
    assert node.metric("encore_player_stall_requests_total", client_region="SE") == sent
    assert node.metric("encore_player_buffer_length_seconds_count", client_region="SE") == sent
    total_s = sum(0.1 * n for n in range(sent))
    assert node.metric("encore_player_buffer_length_seconds_sum") == pytest.approx(total_s)
