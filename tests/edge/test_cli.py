"""``encore-edge`` as an operator runs it: a real process, a config file, signals; ``sign``
keeping to the node's longest URL lifetime."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from origin.local_s3 import free_port
from tests.conftest import Catalog, S3Target

EDGE = [sys.executable, "-m", "edge"]


def _run(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EDGE, *args], capture_output=True, text=True, timeout=timeout_s, env=env, check=False
    )


def test_bad_config_stops_startup_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('[cache]\nmemory_bytes = "plenty"\n[edge]\nregion = "SE"\n')
    result = _run("serve", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "encore-edge: config error: cache.memory_bytes: expected a size such as 256KiB "
        "or 20GB, got 'plenty'"
    ]


def test_missing_config_and_missing_region(tmp_path: Path) -> None:
    result = _run("serve", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2
    assert "config file not found" in result.stderr
    config = tmp_path / "edge.toml"
    config.write_text("[server]\nport = 8080\n")
    result = _run("serve", "--config", str(config))
    assert result.returncode == 2
    assert "edge.region: required" in result.stderr
    env = {**os.environ, "ENCORE_SERVER__PORT": "99999"}
    result = _run("serve", "--config", str(config), env=env)
    assert "ENCORE_SERVER__PORT (server.port): must be between 0 and 65535" in result.stderr


def test_a_short_admin_token_stops_startup_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {free_port()}\nworkers = 1\n'
        f'[edge]\nregion = "SE"\n[admin]\nport = {free_port()}\ntoken = "fifteen-chars.."\n'
    )
    # A node that (wrongly) starts would serve until killed: the timeout ends it.
    result = _run("serve", "--config", str(config), timeout_s=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("encore-edge: config error: admin.token: ")
    assert "shorter than 16 characters" in lines[0]
    assert "fifteen-chars" not in lines[0]  # the token itself is not printed


def _sign_config(tmp_path: Path, name: str, auth: str = "") -> Path:
    config = tmp_path / name
    config.write_text(
        f'[edge]\nregion = "SE"\n[auth]\nsigning_keys = {{ k1 = "0123456789abcdef-k1" }}\n{auth}'
    )
    return config


def _signed_exp(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stderr
    query = result.stdout.strip().partition("?")[2]
    return int(dict(pair.split("=", 1) for pair in query.split("&"))["exp"])


def test_sign_keeps_to_max_ttl_s(tmp_path: Path) -> None:
    path = "/v1/tracks/demo-001/160"
    week = 7 * 86_400
    for config, longest in (
        (_sign_config(tmp_path, "default.toml"), week),
        (_sign_config(tmp_path, "hour.toml", "max_ttl_s = 3600\n"), 3600),
    ):
        refused = _run("sign", "--config", str(config), path, "--ttl", str(longest + 1))
        assert (refused.returncode, refused.stdout) == (1, "")
        assert refused.stderr.splitlines() == [
            f"encore-edge sign: --ttl must be 1 to {longest} seconds (auth.max_ttl_s), "
            f"got {longest + 1}"
        ]
        started = time.time()
        exp = _signed_exp(_run("sign", "--config", str(config), path, "--ttl", str(longest)))
        assert started + longest - 1 <= exp <= time.time() + longest


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "edge exited early"
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("edge did not become ready")


def test_serve_runs_from_a_config_file_and_stops_on_sigterm(
    tmp_path: Path, s3: S3Target, catalog: Catalog
) -> None:
    data = os.urandom(70_000)
    manifest = catalog.publish({"160": data})
    port = free_port()
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nworkers = 1\n'
        f'[origin]\nendpoint_url = "{s3.endpoint_url}"\nbucket = "{s3.bucket}"\n'
        f'[cache]\ndisk_path = "{tmp_path / "cache"}"\n'
        '[edge]\nregion = "SE"\n'
    )
    process = subprocess.Popen([*EDGE, "serve", "--config", str(config)], stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process)
        request = urllib.request.Request(
            f"{url}/v1/tracks/{manifest.track_id}/160", headers={"Range": "bytes=1000-1999"}
        )
        for _ in range(2):
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 206
                assert response.read() == data[1000:2000]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()
    # The access log it wrote is a trace `encore-edge simulate` replays.
    log = tmp_path / "access.log"
    log.write_bytes(stderr)
    replay = _run("simulate", "--trace", str(log), "--cache-size", "1MiB", "--json")
    assert replay.returncode == 0, replay.stderr
    doc = json.loads(replay.stdout)
    assert doc["requests"] == 2
    assert doc["footprint_bytes"] == 70_000  # one 256 KiB slice covers the whole object
    assert {r["object_hit_ratio"] for r in doc["results"]} == {0.5}
