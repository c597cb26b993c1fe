"""Several worker processes behind one port, as ``encore-edge serve`` runs them: one disk
tier, metrics added up, graceful drain on SIGTERM, and workers killed mid-write."""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge.cache.slice_files import _HEADER, decode
from origin.local_s3 import free_port
from tests.conftest import TEST_SLICE_BYTES, Catalog, S3Target
from tests.support.crowd import crowd
from tests.support.edge_node import Node, wait_ready
from tests.support.tcp_proxy import TcpProxy


def _valid(path: Path) -> bool:
    """A slice file that verifies against its own header (or was evicted meanwhile)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return True
    if len(raw) < _HEADER.size:
        return False
    _, _, key_length, index, length, _ = _HEADER.unpack_from(raw)
    key = raw[_HEADER.size : _HEADER.size + key_length].decode(errors="replace")
    return decode(raw, key, index, length) is not None


def test_two_workers_serve_the_same_cold_slices_correctly(
    catalog: Catalog, start_node: Callable[..., Node]
) -> None:
    node = start_node(disk_bytes=str(20 * (TEST_SLICE_BYTES + 200)))
    assert len(node.workers()) == 2
    tracks = []
    for _ in range(3):
        data = os.urandom(10 * TEST_SLICE_BYTES + 123)
        tracks.append((catalog.publish({"160": data}).track_id, data))
    requests = [random.Random(n).choice(tracks) for n in range(120)]

    def fetch(item: tuple[str, bytes]) -> bool:
        track_id, data = item
        start = random.randrange(len(data) - 1)
        end = min(start + 3 * TEST_SLICE_BYTES, len(data) - 1)
        status, body, _ = node.get(f"/v1/tracks/{track_id}/160", f"bytes={start}-{end}")
        return status == 206 and body == data[start : end + 1]

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        assert all(pool.map(fetch, requests))
    # Both workers' counters are on /metrics, whichever worker answers.
    assert node.metric("encore_requests_total", route="rendition", status="206") == len(requests)
    node.process.send_signal(signal.SIGTERM)  # which lets every pending disk write land
    assert node.process.wait(30) == 0
    files = node.slice_files()
    assert files
    assert all(_valid(path) for path in files)
    assert sum(p.stat().st_size for p in files) <= 20 * (TEST_SLICE_BYTES + 200)


def test_restart_keeps_hits_for_every_worker(
    catalog: Catalog, start_node: Callable[..., Node]
) -> None:
    data = os.urandom(12 * TEST_SLICE_BYTES)
    track_id = catalog.publish({"160": data}).track_id
    first = start_node()
    assert first.get(f"/v1/tracks/{track_id}/160")[1] == data  # one worker fetches it all
    deadline = time.monotonic() + 10
    while len(first.slice_files()) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(first.slice_files()) == 12  # whichever worker the slice hashes to
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(30) == 0

    second = start_node()
    status, body, headers = second.get(f"/v1/tracks/{track_id}/160", "bytes=0-")
    assert (status, body) == (206, data)
    assert (headers["X-Cache"], headers["X-Cache-Tier"]) == ("HIT", "disk")
    for _ in range(4):  # new connections: likely both workers answer at least once
        status, body, headers = second.get(f"/v1/tracks/{track_id}/160", "bytes=0-")
        assert (status, body, headers["X-Cache"]) == (206, data, "HIT")


def test_sigterm_drains_in_flight_requests(
    catalog: Catalog, s3: S3Target, start_node: Callable[..., Node]
) -> None:
    host, port = s3.host_port
    proxy = TcpProxy(host, port).start()
    try:
        node = start_node(origin_url=proxy.url)
        data = os.urandom(2 * TEST_SLICE_BYTES)
        track_id = catalog.publish({"160": data}).track_id
        node.get(f"/v1/tracks/{track_id}")  # manifest cached in one worker at least
        proxy.faults.latency_s = 1.5
        result: dict[str, tuple[int, bytes, dict[str, str]]] = {}

        def slow_request() -> None:
            result["reply"] = node.get(f"/v1/tracks/{track_id}/160")

        thread = threading.Thread(target=slow_request)
        thread.start()
        deadline = time.monotonic() + 10
        while not proxy.gets(".ogg"):  # the request is in flight, waiting on the slow origin
            assert time.monotonic() < deadline, "the request never reached the origin"
            time.sleep(0.01)
        node.process.send_signal(signal.SIGTERM)
        thread.join(30)
        status, body, _ = result["reply"]
        assert (status, body) == (200, data)
        assert node.process.wait(30) == 0
    finally:
        proxy.stop()


def test_workers_killed_mid_write_never_leave_a_damaged_slice(
    catalog: Catalog, start_node: Callable[..., Node]
) -> None:
    # Tiny tiers, so slices keep being evicted and written again while workers are killed.
    node = start_node(disk_bytes=str(40 * (TEST_SLICE_BYTES + 200)), memory_bytes="64KiB")
    tracks = []
    for _ in range(4):
        data = os.urandom(30 * TEST_SLICE_BYTES)
        tracks.append((catalog.publish({"160": data}).track_id, data))
    stop = threading.Event()
    wrong: list[str] = []

    def load() -> None:
        rng = random.Random(1)
        while not stop.is_set():
            track_id, data = rng.choice(tracks)
            try:
                status, body, _ = node.get(f"/v1/tracks/{track_id}/160")
            except (OSError, http.client.HTTPException):
                continue  # the worker answering was killed: the client sees a failed transfer
            if status == 200 and body != data:
                wrong.append(track_id)

    first_pids = set(node.workers())
    loaders = [threading.Thread(target=load) for _ in range(4)]
    for thread in loaders:
        thread.start()
    try:
        for _ in range(8):
            time.sleep(0.3)
            pids = node.workers()
            if pids:
                os.kill(random.choice(pids), signal.SIGKILL)
    finally:
        stop.set()
        for thread in loaders:
            thread.join(30)
    assert wrong == []  # a body that arrived whole was right
    wait_ready(node)
    for track_id, data in tracks:  # and afterwards everything served is right
        for _ in range(2):
            assert node.get(f"/v1/tracks/{track_id}/160")[1] == data
    assert all(_valid(path) for path in node.slice_files())
    deadline = time.monotonic() + 15
    while len(survivors := node.workers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the last one killed may still be being replaced
    assert len(survivors) == 2  # every killed worker was replaced
    assert set(survivors) != first_pids


def test_workers_that_cannot_start_stop_the_node_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nworkers = 2\n'
        f'[cache]\ndisk_path = "{tmp_path / "cache"}"\n'
        '[edge]\nregion = "SE"\n'
    )
    with socket.socket() as squatter:  # holds the port without SO_REUSEPORT
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = subprocess.run(
            [sys.executable, "-m", "edge", "serve", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("encore-edge: workers keep exiting right after start")
    )


def test_a_crowd_across_workers_fetches_a_slice_at_most_once_per_worker_and_counts_it(
    start_node: Callable[..., Node], catalog: Catalog, proxy: TcpProxy
) -> None:
    data = os.urandom(TEST_SLICE_BYTES)
    manifest = catalog.publish({"160": data})
    key, path = manifest.renditions["160"].key, f"/v1/tracks/{manifest.track_id}/160"
    node = start_node(origin_url=proxy.url)
    proxy.faults.stall_after, proxy.faults.stall_s = 2000, 1.0  # a slow body: both fill at once
    port = int(node.url.rsplit(":", 1)[1])

    replies = crowd(port, path, {"Range": f"bytes=0-{TEST_SLICE_BYTES - 1}"}, clients=24)

    assert all(r.status == 206 and r.body == data for r in replies)
    gets = len(proxy.gets(key))
    assert 1 <= gets <= 2
    deadline = time.monotonic() + 10  # the second worker notices at its (background) disk write
    while node.metric("encore_origin_duplicate_fetches_total") != gets - 1:
        assert time.monotonic() < deadline, (
            gets,
            node.metric("encore_origin_duplicate_fetches_total"),
        )
        time.sleep(0.05)


def test_the_access_log_is_on_by_default_and_can_be_turned_off(
    catalog: Catalog, start_node: Callable[..., Node]
) -> None:
    track_id = catalog.publish({"96": os.urandom(3 * TEST_SLICE_BYTES)}).track_id
    path = f"/v1/tracks/{track_id}/96"
    logging = start_node(workers=1, disk_bytes="0")  # served by the supervisor process itself
    quiet = start_node(workers=2, disk_bytes="0", server_toml="access_log = false\n")
    for node in (logging, quiet):
        for _ in range(4):
            assert node.get(path, "bytes=0-99")[0] == 206
    deadline = time.monotonic() + 5
    while f'"GET {path} HTTP/1.1" 206' not in logging.log.read_text():
        assert time.monotonic() < deadline, logging.log.read_text()
        time.sleep(0.05)
    assert f'"GET {path} HTTP/1.1"' not in quiet.log.read_text()
    assert "worker 1 started" in quiet.log.read_text()  # its log is there, only quieter
