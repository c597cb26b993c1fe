"""The README's demo command, run as a newcomer would (with a small catalogue)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from origin.local_s3 import free_port


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def test_demo_serves_a_generated_catalogue_until_interrupted(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge",
            "demo",
            "--tracks",
            "1",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    edge = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, "demo exited early"
            assert time.monotonic() < deadline, "demo did not start"
            try:
                _get(edge + "/readyz")
                break
            except OSError:
                time.sleep(0.25)
        manifest = json.loads(_get(edge + "/v1/tracks/demo-001"))
        assert [r["name"] for r in manifest["renditions"]] == ["96", "160", "320"]
        audio = _get(edge + "/v1/tracks/demo-001/160")
        assert audio.startswith(b"OggS")
        assert len(audio) == manifest["renditions"][1]["size"]
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    text = output.decode()
    assert process.returncode == 0, text
    assert f"{edge}/v1/tracks/demo-001" in text  # the URLs to try were printed
    # The embedded S3 server went away with the demo.
    origin_port = int(text.split("S3 origin: http://127.0.0.1:")[1].split()[0])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", origin_port)) != 0
