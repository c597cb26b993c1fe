"""A real edge node in its own process, with several workers, as ``encore-edge serve`` runs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from origin.local_s3 import free_port


@dataclass
class Node:
    url: str
    process: subprocess.Popen[bytes]
    cache: Path
    config: Path
    log: Path  # the node's stderr: its own log lines and the access log

    def get(self, path: str, range_: str | None = None) -> tuple[int, bytes, dict[str, str]]:
        headers = {"Range": range_} if range_ else {}
        request = urllib.request.Request(self.url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)

    def status(self, path: str, headers: dict[str, str] | None = None) -> int:
        """The status of one GET on a new connection (each lands on whichever worker the
        kernel picks), error statuses included."""
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def slice_files(self) -> list[Path]:
        """The disk tier's slice files."""
        return [p for p in (self.cache / "slices").glob("*/*") if p.is_file()]

    def workers(self) -> list[int]:
        """Pids of the worker processes (not multiprocessing's resource tracker)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [int(pid) for pid in children.read_text().split()]
        return [pid for pid in pids if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]

    def metric(self, name: str, **labels: str) -> float:
        _, body, _ = self.get("/metrics")
        total = 0.0
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total


def wait_ready(node: Node, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert node.process.poll() is None, f"edge exited early: {node.log.read_text()[-2000:]}"
        try:
            if node.get("/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("edge did not become ready")


def node_starter(
    tmp_path: Path, endpoint_url: str, bucket: str, slice_bytes: int
) -> Iterator[Callable[..., Node]]:
    """Start real ``encore-edge serve`` processes (a supervisor and its workers); each is
    stopped with SIGTERM at the end. ``extra_toml`` goes on after ``[edge]``, ``server_toml``
    inside ``[server]``."""
    started: list[Node] = []

    def start(
        origin_url: str | None = None,
        disk_bytes: str = "256MiB",
        memory_bytes: str = "8MiB",
        workers: int = 2,
        extra_toml: str = "",
        server_toml: str = "",
    ) -> Node:
        port = free_port()
        cache = tmp_path / "cache"
        config = tmp_path / f"edge-{port}.toml"
        config.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {port}\nworkers = {workers}\n{server_toml}'
            f'[origin]\nendpoint_url = "{origin_url or endpoint_url}"\nbucket = "{bucket}"\n'
            f'[cache]\nslice_bytes = "{slice_bytes}"\nmemory_bytes = "{memory_bytes}"\n'
            f'disk_path = "{cache}"\ndisk_bytes = "{disk_bytes}"\n'
            '[edge]\nregion = "SE"\n' + extra_toml
        )
        log = tmp_path / f"edge-{port}.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "edge", "serve", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        node = Node(f"http://127.0.0.1:{port}", process, cache, config, log)
        started.append(node)
        wait_ready(node)
        return node

    yield start
    for node in started:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
            try:
                node.process.wait(30)
            except subprocess.TimeoutExpired:
                node.process.kill()
