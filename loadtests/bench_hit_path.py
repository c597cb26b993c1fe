"""Hit-path throughput: the edge against nginx ``proxy_cache`` (sliced) on the same objects.

Both caches sit in front of the same bucket folder and are warmed first, so every measured
request is a cache hit. Each is given one process (nginx: one worker), and wrk drives them in
alternating rounds; the result is reported as a ratio, since absolute numbers on a shared
machine mean little. nginx reads the bucket through ``rclone serve http`` (proper 206 answers,
which its slice module requires; ``rclone serve s3`` answers ranges with 200).

    python -m loadtests.bench_hit_path [--seconds 8] [--rounds 3] [--connections 32]

Needs nginx (with the slice module, e.g. Debian's nginx-light) and wrk on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from edge.settings import load_settings
from loadtests.local_origin import local_origin, need_tool, serve_folder_over_http, stop_processes
from origin.demo_catalog import generate_source
from origin.ingest import IngestJob, ingest
from origin.ladder import parse_ladder
from origin.license import LicenseChange
from origin.local_s3 import LocalS3, free_port
from origin.s3 import open_s3_client

BUCKET = "audio"
SOURCE_SECONDS = 210  # at 320 kbps, an object of about 8 MiB
SCENARIOS = {
    "64KiB range": "bytes=1048576-1114111",
    "256KiB range across slices": "bytes=3000000-3262143",
    "1MiB range": "bytes=0-1048575",
}

NGINX_CONF = """
user root;
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    proxy_cache_path {tmp}/nginx-cache levels=1:2 keys_zone=audio:64m max_size=2g inactive=1h;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            slice 256k;
            proxy_cache audio;
            proxy_cache_key $uri$slice_range;
            proxy_set_header Range $slice_range;
            proxy_cache_valid 200 206 1h;
            proxy_cache_lock on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://127.0.0.1:{origin_port};
        }}
    }}
}}
"""


def fetch(url: str, headers: dict[str, str]) -> bytes:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def wait_until_up(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            fetch(url, {})
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"benchmark: {url} did not come up")


def run_wrk(
    url: str,
    range_header: str,
    seconds: int,
    connections: int,
    extra_headers: dict[str, str] | None = None,
) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) of wrk with one thread on ``url``."""
    headers = [f"Range: {range_header}"]
    headers += [f"{name}: {value}" for name, value in (extra_headers or {}).items()]
    out = subprocess.run(
        [
            need_tool("wrk", "bench_hit_path", "nginx-light wrk"),
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            *[arg for header in headers for arg in ("-H", header)],
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99, out
    p99_ms = float(p99[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99[2]]
    if "Non-2xx" in out:
        sys.exit(f"benchmark: {url} answered errors under load:\n{out}")
    return rps, p99_ms


async def _publish(s3: LocalS3, workdir: Path) -> tuple[str, str]:
    """Ingest a generated 210 s track at 320 kbps: an Ogg object of about 8 MiB."""
    source = workdir / "bench.flac"
    await generate_source(source, SOURCE_SECONDS, random.Random(1))
    settings = load_settings(None, env={"ENCORE_ORIGIN__ENDPOINT_URL": s3.endpoint_url})
    job = IngestJob(source=source, track_id="bench", license=LicenseChange(allow=("*",)))
    async with open_s3_client(settings.origin) as client:
        result = await ingest(
            client, BUCKET, job, ladder=parse_ladder(["vorbis:320"]), part_bytes=16 * 1024**2
        )
    return result.manifest.track_id, result.manifest.renditions["320"].key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    nginx = need_tool("nginx", "bench_hit_path", "nginx-light wrk")
    need_tool("wrk", "bench_hit_path", "nginx-light wrk")
    with local_origin(BUCKET) as (tmp, s3):
        processes: list[subprocess.Popen[bytes]] = []
        try:
            plain_port = free_port()
            processes.append(serve_folder_over_http(tmp / "s3" / BUCKET, plain_port))
            track_id, key = asyncio.run(_publish(s3, tmp))

            edge_port, nginx_port = free_port(), free_port()
            config = tmp / "edge.toml"
            config.write_text(
                f'[server]\nhost = "127.0.0.1"\nport = {edge_port}\nworkers = 1\n'
                f'[origin]\nendpoint_url = "{s3.endpoint_url}"\nbucket = "{BUCKET}"\n'
                f'[cache]\nmemory_bytes = "256MiB"\ndisk_path = "{tmp / "cache"}"\n'
                '[edge]\nregion = "SE"\n'
            )
            env = {**os.environ, "PYTHONWARNINGS": "ignore"}
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "edge", "serve", "--config", str(config)],
                    stdout=subprocess.DEVNULL,
                    stderr=(tmp / "edge.log").open("wb"),
                    env=env,
                )
            )
            (tmp / "nginx.conf").write_text(
                NGINX_CONF.format(tmp=tmp, port=nginx_port, origin_port=plain_port)
            )
            processes.append(
                subprocess.Popen([nginx, "-c", str(tmp / "nginx.conf")], stderr=subprocess.DEVNULL)
            )
            edge_url = f"http://127.0.0.1:{edge_port}/v1/tracks/{track_id}/320"
            nginx_url = f"http://127.0.0.1:{nginx_port}/{key}"
            wait_until_up(f"http://127.0.0.1:{edge_port}/readyz")
            wait_until_up(nginx_url)

            results = {}
            for name, range_header in SCENARIOS.items():
                edge_body = fetch(edge_url, {"Range": range_header})  # warm both
                nginx_body = fetch(nginx_url, {"Range": range_header})
                if edge_body != nginx_body:
                    sys.exit(f"bench_hit_path: edge and nginx disagree on {range_header}")
                samples: dict[str, list[tuple[float, float]]] = {"edge": [], "nginx": []}
                for _ in range(args.rounds):
                    samples["edge"].append(
                        run_wrk(edge_url, range_header, args.seconds, args.connections)
                    )
                    samples["nginx"].append(
                        run_wrk(nginx_url, range_header, args.seconds, args.connections)
                    )
                edge_rps = statistics.median(s[0] for s in samples["edge"])
                nginx_rps = statistics.median(s[0] for s in samples["nginx"])
                results[name] = {
                    "edge_rps": round(edge_rps),
                    "nginx_rps": round(nginx_rps),
                    "edge_to_nginx_rps": round(edge_rps / nginx_rps, 3),
                    "edge_p99_ms": statistics.median(s[1] for s in samples["edge"]),
                    "nginx_p99_ms": statistics.median(s[1] for s in samples["nginx"]),
                }
                print(
                    f"{name:>28}: edge/nginx req/s = {results[name]['edge_to_nginx_rps']}"
                    f"  ({results[name]['edge_rps']} vs {results[name]['nginx_rps']})",
                    flush=True,
                )
            print(
                json.dumps(
                    {
                        "connections": args.connections,
                        "seconds": args.seconds,
                        "rounds": args.rounds,
                        "results": results,
                    },
                    indent=2,
                )
            )
        finally:
            stop_processes(processes)


if __name__ == "__main__":
    main()
