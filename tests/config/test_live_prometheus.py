"""A real Prometheus scrapes a real two-worker edge in front of the real S3 server while a
bounded load runs hits, misses, 404s, 416s, 451s, 403s, a worker kill and an origin outage; then
every dashboard query and every recording rule is evaluated through Prometheus's HTTP API, and
the origin alert must be pending or firing."""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.access.signing import signed_query
from origin.license import License
from tests.config import artifacts
from tests.config.prometheus_server import Prometheus, binary
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.edge_node import Node, wait_ready
from tests.support.tcp_proxy import TcpProxy

KID = "live"
SECRET = "live-test-signing-secret-0123456789"
# Substituted for Grafana's variables: one region, every node, and a rate window of several
# scrapes at the test's 1 s scrape interval.
GRAFANA_VARIABLES = {
    "$__rate_interval": "10s",
    "$__range": "1h",
    "$region": "SE",
    "$instance": ".*",
}

# Panel queries that return nothing in this scenario, and why; any other must return data.
# Keys are parts of the panel's expression.
EMPTY_BY_DESIGN = {
    "encore_next_track_hints_total": "the load sends no X-Encore-Next hints",
    "encore_admin_auth_failures_total": "the admin API is off (no admin token configured)",
    'tier="disk"}': "the disk tier refuses no write here (the series starts at the first)",
}


def signed(path: str) -> str:
    return f"{path}?{signed_query(SECRET, KID, path, int(time.time()) + 600)}"


def prometheus_config(tmp_path: Path, node: Node) -> Path:
    """The shipped scrape config with the test's target, intervals and rules."""
    config = yaml.safe_load((artifacts.REPO / "config/prometheus/prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(path) for path in artifacts.rule_files()]
    config.pop("alerting")  # no Alertmanager here: the alert's state is read from Prometheus
    edge = next(job for job in config["scrape_configs"] if job["job_name"] == "encore-edge")
    target = node.url.removeprefix("http://")
    edge["static_configs"] = [{"targets": [target], "labels": {"region": "SE"}}]
    edge["scrape_interval"] = "1s"
    config["scrape_configs"] = [edge]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[Node], Prometheus]]:
    started: list[Prometheus] = []

    def start(node: Node) -> Prometheus:
        workdir = tmp_path / "prometheus"
        workdir.mkdir()
        server = Prometheus(prometheus_config(tmp_path, node), workdir).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _node(
    start_node: Callable[..., Node], proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch
) -> Node:
    # A short open breaker, so the outage keeps producing origin errors (half-open probes)
    # within the test's few seconds; the node inherits the environment.
    monkeypatch.setenv("ENCORE_ORIGIN__BREAKER_OPEN_S", "0.3")
    return start_node(
        origin_url=proxy.url,
        extra_toml=(
            "manifest_ttl_s = 1\nmanifest_stale_while_revalidate_s = 0\n"
            f'[auth]\nsigning_keys = {{{KID} = "{SECRET}"}}\n'
        ),
    )


def _healthy_load(node: Node, tracks: list[str], denied: str, ahead: str) -> None:
    """Misses, then hits, ranges, 404s, 416s, 451s and 403s; bounded in count. The first read
    of ``ahead`` is its first bytes only, so the next slices are prefetched."""
    ahead_path = signed(f"/v1/tracks/{ahead}/160")
    assert node.status(ahead_path, {"Range": "bytes=0-99"}) == 206
    jobs: list[tuple[str, dict[str, str] | None]] = []
    for track in tracks:
        jobs.append((signed(f"/v1/tracks/{track}"), None))
        jobs.append((signed(f"/v1/tracks/{track}/160"), None))  # the miss
    for round_ in range(6):
        for track in tracks:
            start = (round_ * 5000) % (6 * TEST_SLICE_BYTES)
            jobs.append((signed(f"/v1/tracks/{track}/160"), {"Range": f"bytes={start}-"}))
            jobs.append((signed(f"/v1/tracks/{track}/160"), None))
        jobs.append((signed("/v1/tracks/t-nosuchtrack/160"), None))  # 404
        jobs.append((signed(f"/v1/tracks/{denied}"), None))  # 451
        jobs.append((signed(f"/v1/tracks/{denied}/160"), None))  # 451
        jobs.append((f"/v1/tracks/{tracks[0]}/160?exp=9999999999&kid={KID}&sig=AAAA", None))
        jobs.append((signed(f"/v1/tracks/{tracks[1]}/160"), {"Range": "bytes=99999999-"}))
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        seen = set(pool.map(lambda job: node.status(*job), jobs))
    assert {200, 206, 403, 404, 416, 451} <= seen, seen


def _replace_a_worker(node: Node) -> None:
    """Kill one worker: the supervisor starts another (encore_worker_starts_total 2 -> 3)."""
    os.kill(node.workers()[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if node.metric("encore_worker_starts_total") >= 3:
                break
        except OSError:
            pass
        time.sleep(0.2)
    wait_ready(node)
    assert node.metric("encore_worker_starts_total") >= 3


def _outage_load(
    node: Node, tracks: list[str], cold: list[str], ahead: str, seconds: float
) -> set[int]:
    """Origin down: manifests past their TTL are served stale-if-error; cold audio fails; a hit
    on prefetched slices whose look-ahead is not cached has its prefetch skipped."""
    four = 4 * TEST_SLICE_BYTES  # the last slice prefetched in the healthy phase
    statuses: set[int] = set()
    deadline = time.monotonic() + seconds
    for _ in range(400):  # bounded in count as well as in time
        if time.monotonic() > deadline:
            break
        for track in tracks[:2]:
            statuses.add(node.status(signed(f"/v1/tracks/{track}")))
        for track in cold:
            statuses.add(node.status(signed(f"/v1/tracks/{track}/160")))
        path = signed(f"/v1/tracks/{ahead}/160")
        statuses.add(node.status(path, {"Range": f"bytes={four}-{four + 99}"}))
        time.sleep(0.05)
    return statuses


def _wait_for_alert(prometheus: Prometheus, name: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for alert in prometheus.alerts():
            if alert["labels"]["alertname"] == name and alert["state"] in ("pending", "firing"):
                return alert
        time.sleep(0.5)
    rules = prometheus.api("rules")
    raise AssertionError(f"{name} neither pending nor firing; rules: {rules}")


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def test_prometheus_evaluates_every_panel_and_rule_on_a_real_edge_and_the_outage_alerts(
    catalog: Catalog,
    start_node: Callable[..., Node],
    proxy: TcpProxy,
    prometheus_for: Callable[[Node], Prometheus],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = os.urandom(8 * TEST_SLICE_BYTES + 321)
    tracks = [catalog.publish({"160": data}).track_id for _ in range(4)]
    cold = [catalog.publish({"160": data}).track_id for _ in range(2)]  # first asked in the outage
    denied = catalog.publish({"160": data}, license=License(allow=("NO",))).track_id
    # Read from its start only: its next slices are prefetched, the rest never read.
    ahead = catalog.publish({"160": os.urandom(20 * TEST_SLICE_BYTES)}).track_id
    node = _node(start_node, proxy, monkeypatch)
    prometheus = prometheus_for(node)

    _healthy_load(node, tracks, denied, ahead)
    _replace_a_worker(node)
    _healthy_load(node, tracks, denied, ahead)
    time.sleep(2)  # a couple of scrapes of the healthy state

    proxy.set_down(True)
    statuses = _outage_load(node, tracks, cold, ahead, seconds=8)
    assert statuses & {502, 503, 504}, statuses
    alert = _wait_for_alert(prometheus, "EncoreOriginErrorRate", timeout_s=20)
    assert alert["labels"]["region"] == "SE"
    assert alert["labels"]["severity"] == "warning"
    assert alert["annotations"]["runbook_url"].endswith("/EncoreOriginErrorRate.md")
    # The outage's other causes: the breaker keeps opening, manifests go stale-if-error.
    _wait_for_alert(prometheus, "EncoreOriginCircuitOpen", timeout_s=10)
    _wait_for_alert(prometheus, "EncoreManifestsStaleIfError", timeout_s=10)

    # The dashboards' variables: regions and nodes come from up{job="encore-edge"}.
    (up,) = prometheus.query('up{job="encore-edge"}')
    assert up["metric"]["region"] == "SE"
    # The client region of a 451 is `client_region`; `region` stays the node's.
    denials = prometheus.query("encore_license_denials_total")
    assert denials, "no licence denials scraped"
    assert {d["metric"].get("client_region") for d in denials} <= {"SE", "other"}, denials
    assert all(d["metric"]["region"] == "SE" for d in denials)

    empty: list[str] = []
    for query in artifacts.panel_queries():
        expr = grafana_to_promql(query.expr)
        if prometheus.query(expr):
            continue
        if not any(metric in expr for metric in EMPTY_BY_DESIGN):
            empty.append(f"{query.dashboard} / {query.panel}: {expr}")
    for rule in artifacts.recordings():
        if not prometheus.query(rule["record"]):
            empty.append(f"recording rule {rule['record']}")
    assert not empty, "no data for:\n" + "\n".join(empty)


def test_a_real_metrics_page_passes_promtool_check_metrics(
    catalog: Catalog, start_node: Callable[..., Node]
) -> None:
    track = catalog.publish({"160": os.urandom(3 * TEST_SLICE_BYTES)}).track_id
    node = start_node()
    for target in (f"/v1/tracks/{track}/160", f"/v1/tracks/{track}/160", "/v1/tracks/t-nope"):
        node.status(target)
    with urllib.request.urlopen(node.url + "/metrics", timeout=10) as response:
        page = response.read()
    assert b"encore_build_info{" in page
    assert re.search(rb"^encore_requests_total\{", page, re.MULTILINE)
    result = subprocess.run(
        [binary("promtool"), "check", "metrics"],
        input=page,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert not result.stdout.strip(), result.stdout
    assert not result.stderr.strip(), result.stderr


def test_prometheus_loads_the_shipped_rules(tmp_path: Path) -> None:
    """promtool check config on the shipped scrape config, with the rules where compose puts them
    (/etc/prometheus/rules is swapped for the repo's folder)."""
    config = yaml.safe_load((artifacts.REPO / "config/prometheus/prometheus.yml").read_text())
    config["rule_files"] = [str(artifacts.RULES / "*.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [binary("promtool"), "check", "config", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output
    assert output.count("rules found") == len(artifacts.rule_files()), output
