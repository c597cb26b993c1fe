"""Hit-path benchmark (issue 13, "a data plane at nginx speed"): the edge against nginx, Varnish
and two Python ceilings on the same objects, in the same run, as ratios.

Every server gets the same number of processes N (``--processes``, 1 then 2 by default) and
keeps its access log on, written to a file:

* **edge**: ``encore-edge serve`` (``python -m edge serve --config FILE``) with
  ``server.workers = N``; access log on (its default: its own buffered writer, on stderr,
  redirected to a file);
  signed URLs required (``[auth] signing_keys``; request URLs minted with ``encore-edge sign``);
  the track licensed for a few regions only, each request carrying ``X-Client-Region: SE``
  from loopback, a trusted peer, so the licence is decided for every request; metrics on
  (always). The memory tier holds every hit.
* **nginx**: ``proxy_cache`` + ``slice 256k`` (one cache entry per slice, as the edge keeps
  them), ``worker_processes N``, ``sendfile on`` as Debian's stock nginx.conf has it
  (``--nginx-sendfile off`` for the setup this benchmark had before), ``tcp_nopush off`` (on
  loopback, whose MTU is 64 KiB, TCP_CORK stalls 64 KiB answers on delayed ACKs: about 850
  req/s, an artifact no real network has), keep-alive without a request cap, and
  ``access_log FILE buffer=64k flush=100ms``: buffered, as Encore's access log is (flushed
  at least every 100 ms).
* **varnish**: Debian's ``varnishd -s malloc,1G``, with ``varnishncsa`` writing the access log
  (its CPU counts as Varnish's). Varnish is one multi-threaded process, not N processes, so
  it is pinned to N CPUs instead (``taskset -c 0`` / ``0-1``). It fetches the whole object on
  a range; it is warmed with one whole GET first, so every measured request is a hit.
* **httptools** / **aiohttp**: the ceilings of ``loadtests.ceiling_servers`` (the object's
  bytes in memory, N processes on one SO_REUSEPORT port; see that module).

nginx and Varnish read the bucket folder through ``rclone serve http`` (proper 206 answers,
which nginx's slice module requires), the edge reads it as S3 (``rclone serve s3``); every
cache is warmed and its answers checked byte for byte before it is measured.

Scenarios (``--scenarios``): ``64k``, ``256k`` (across a slice boundary) and ``1m`` single
ranges, memory hits, on all five servers; and ``disk``: 256 KiB ranges rotated (a small wrk
Lua script) over six renditions (about 30 MiB: 57 ranges touching 114 distinct slices) on an
edge whose memory tier is 2 MiB (disk tier on, ``prefetch_slices = 0``, since a prefetch would
turn the next read into a memory hit) against nginx on the same request set. The edge's
``/metrics`` (``encore_cache_lookups_total``) says for each round which tier the slices came
from, and ``encore_origin_fills_total`` that none came from the origin.

wrk (``-t1 -c32`` by default) drives one server at a time, in rounds that alternate the order.
For each server, scenario and N: req/s and p99 latency (wrk ``--latency``), CPU per request in
µs (utime + stime from /proc of the server's whole process tree over the round, divided by the
requests wrk completed), and wrk's own CPU (a share of one core per thread: near 100 % the run
is client-bound and the ratio says little). Ratios are medians over rounds of the per-round
ratio, with min-max. Absolute numbers on a shared 2-core machine are context only.

Targets (``--check`` exits 1 if one is missed): edge/nginx req/s >= 0.7 at 64 KiB, >= 0.9 at
256 KiB and 1 MiB, >= 0.6 for disk hits; edge p99 <= 2 x nginx p99 in every scenario.

    python -m loadtests.bench_hit_path [--seconds 5] [--rounds 3] [--connections 32]
        [--processes 1,2] [--only edge,nginx,varnish,httptools,aiohttp]
        [--scenarios 64k,256k,1m,disk] [--json PATH] [--check]

Needs nginx (with the slice module: Debian's nginx-light), wrk, varnishd and varnishncsa
(Debian's varnish; only with varnish selected) and taskset on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.local_origin import local_origin, need_tool, serve_folder_over_http
from origin.demo_catalog import generate_source
from origin.local_s3 import LocalS3, free_port

BENCH = "bench_hit_path"
INSTALL = "nginx-light wrk varnish"
BUCKET = "audio"
TRACK = "bench"
SOURCE_SECONDS = 210  # at 320 kbps, an object of about 8 MiB
# six objects, about 30 MiB, so the disk-hit rotation comes back to a slice only long after a
# 2 MiB memory tier has dropped it
LADDER = "vorbis:320,vorbis:256,vorbis:192,vorbis:160,vorbis:128,vorbis:96"
MAIN_RENDITION = "320"
ALLOWED_REGIONS = "SE,NO,DK,FI"
CLIENT_REGION = "SE"
KID, SECRET = "k1", "bench-hit-path-secret-0123456789"
SLICE = 256 * 1024

SERVERS = ("edge", "nginx", "varnish", "httptools", "aiohttp")
DISK_SERVERS = ("edge", "nginx")


@dataclass(frozen=True)
class Scenario:
    key: str
    name: str
    range: str | None  # a single range; None = the disk rotation
    rps_target: float  # edge/nginx req/s at least


SCENARIOS = {
    s.key: s
    for s in (
        Scenario("64k", "64KiB range", "bytes=1048576-1114111", 0.7),
        Scenario("256k", "256KiB across slices", "bytes=3000000-3262143", 0.9),
        Scenario("1m", "1MiB range", "bytes=0-1048575", 0.9),
        Scenario("disk", "disk hits 256KiB", None, 0.6),
    )
}
P99_TARGET = 2.0  # edge p99 / nginx p99 at most
CLIENT_BOUND = 0.9  # wrk CPU share of its threads' cores above which a round is client-bound

NGINX_CONF = """
user root;
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/nginx-access.log combined buffer=64k flush=100ms;
    sendfile {sendfile};
    tcp_nopush off;  # on loopback (64 KiB MTU) TCP_CORK stalls 64 KiB answers on delayed ACKs
    keepalive_requests 1000000;
    proxy_cache_path {tmp}/nginx-cache levels=1:2 keys_zone=audio:64m max_size=2g inactive=1h;
    proxy_temp_path {tmp}/nginx-temp;
    client_body_temp_path {tmp}/nginx-body;
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

VARNISH_VCL = """vcl 4.1;
backend origin {{ .host = "127.0.0.1"; .port = "{origin_port}"; }}
sub vcl_backend_response {{ set beresp.ttl = 1h; }}
"""

EDGE_CONF = """[server]
host = "127.0.0.1"
port = {port}
workers = {workers}
[origin]
endpoint_url = "{endpoint}"
bucket = "{bucket}"
[cache]
memory_bytes = "{memory}"
disk_path = "{disk_path}"
disk_bytes = "1GiB"
{extra_cache}[edge]
region = "SE"
[auth]
signing_keys = {{ {kid} = "{secret}" }}
"""

WRK_ROTATION = """local requests = {{
{entries}
}}
local i = 0
request = function()
  i = i % #requests + 1
  wrk.headers["Range"] = requests[i][2]
  return wrk.format(nil, requests[i][1])
end
"""


# --- small HTTP helpers (bench_access_checks uses fetch, run_wrk and wait_until_up) -----------


def fetch(url: str, headers: dict[str, str]) -> bytes:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def fetch_with_headers(url: str, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read()), dict(response.headers.items())


def status_of(url: str, headers: dict[str, str]) -> int:
    try:
        fetch(url, headers)
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


def wait_until_up(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            fetch(url, {})
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"benchmark: {url} did not come up")


@dataclass
class WrkResult:
    rps: float
    p99_ms: float
    requests: int
    duration_s: float
    cpu_s: float  # wrk's own user + system CPU
    socket_errors: dict[str, int]


def wrk_round(
    url: str,
    seconds: int,
    connections: int,
    *,
    threads: int = 1,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
) -> WrkResult:
    """One wrk run on ``url``; exits the benchmark if the server answered errors."""
    command = [
        need_tool("wrk", BENCH, INSTALL),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if "Non-2xx" in out:
        sys.exit(f"{BENCH}: {url} answered errors under load:\n{out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
    if not (rps and p99 and done):
        sys.exit(f"{BENCH}: unexpected wrk output for {url}:\n{out}")
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    names = ("connect", "read", "write", "timeout")
    return WrkResult(
        rps=float(rps[1]),
        p99_ms=float(p99[1]) * unit[p99[2]] * 1000,
        requests=int(done[1]),
        duration_s=float(done[2]) * unit[done[3]],
        cpu_s=cpu,
        socket_errors=dict(zip(names, map(int, errors.groups()), strict=True)) if errors else {},
    )


def run_wrk(
    url: str,
    range_header: str,
    seconds: int,
    connections: int,
    extra_headers: dict[str, str] | None = None,
) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) of wrk with one thread on ``url``."""
    result = wrk_round(
        url, seconds, connections, headers={"Range": range_header, **(extra_headers or {})}
    )
    return result.rps, result.p99_ms


# --- processes ---------------------------------------------------------------------------------


def tree_cpu_seconds(roots: Sequence[int]) -> float:
    """utime + stime (+ that of reaped children) of ``roots`` and all their descendants."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid = int(entry.name)
        parents[pid] = int(fields[1])  # fields[0] is the state, then ppid
        ticks[pid] = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, todo, seen = 0, [pid for pid in roots if pid in ticks], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += ticks.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total / os.sysconf("SC_CLK_TCK")


class Processes:
    """Every process the benchmark starts, each in a session of its own; ``stop`` ends their
    process groups (SIGTERM, then SIGKILL after 15 s)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                **kwargs,
            )
        self.started.append(process)
        return process

    def stop(self, processes: Sequence[subprocess.Popen[bytes]] | None = None) -> None:
        chosen = list(self.started if processes is None else processes)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [p for p in chosen if p.poll() is None]
            for process in alive:
                with suppress(ProcessLookupError):
                    if os.getpgid(process.pid) == process.pid:  # its own group: all of it
                        os.killpg(process.pid, sig)
                    else:
                        process.send_signal(sig)
            deadline = time.monotonic() + 15
            for process in alive:
                try:
                    process.wait(max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    continue
        self.started = [p for p in self.started if p not in chosen]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Server:
    """A server under test: ``roots`` are the processes whose trees' CPU counts for it."""

    name: str
    base_url: str
    roots: list[subprocess.Popen[bytes]]
    log: Path  # its own stdout/stderr
    access_log: Path
    paths: dict[str, str]  # rendition -> request path (the edge's carry the signed query)
    edge: bool = False
    label: str = ""

    def url(self, rendition: str = MAIN_RENDITION) -> str:
        return self.base_url + self.paths[rendition]

    def wait_ready(self, probe: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for process in self.roots:
                if process.poll() is not None:
                    sys.exit(
                        f"{BENCH}: {self.label or self.name} exited with {process.returncode}; "
                        f"log {self.log}:\n{_tail(self.log)}"
                    )
            try:
                fetch(self.base_url + probe, {"Range": "bytes=0-0", "X-Client-Region": "SE"})
                return
            except OSError:
                time.sleep(0.1)
        sys.exit(
            f"{BENCH}: {self.label or self.name} not up in {timeout_s:g} s; log {self.log}:\n"
            f"{_tail(self.log)}"
        )


# --- the catalogue -----------------------------------------------------------------------------


def publish(s3: LocalS3, tmp: Path) -> dict[str, str]:
    """Ingest a generated 210 s track into three renditions with ``encore-origin ingest``,
    licensed for a few regions; returns ``{rendition: object key}``."""
    began = time.monotonic()
    source = tmp / "bench.flac"
    asyncio.run(generate_source(source, SOURCE_SECONDS, random.Random(1)))
    env = {
        **os.environ,
        "ENCORE_ORIGIN__ENDPOINT_URL": s3.endpoint_url,
        "ENCORE_ORIGIN__BUCKET": BUCKET,
        "PYTHONWARNINGS": "ignore",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "origin",
            "ingest",
            str(source),
            "--track-id",
            TRACK,
            "--allow",
            ALLOWED_REGIONS,
            "--ladder",
            LADDER,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if done.returncode:
        sys.exit(f"{BENCH}: encore-origin ingest failed: {done.stderr.strip()[-2000:]}")
    keys = {}
    for path in (tmp / "s3" / BUCKET / "tracks" / TRACK).iterdir():  # {rendition}-{hash}.{ext}
        rendition = path.name.split("-", 1)[0]
        if path.is_file() and path.name != "manifest.json" and rendition.isdigit():
            keys[rendition] = f"tracks/{TRACK}/{path.name}"
    if set(keys) != {rung.split(":")[1] for rung in LADDER.split(",")}:
        sys.exit(f"{BENCH}: unexpected objects after ingest: {sorted(keys.values())}")
    print(
        f"{BENCH}: published {len(keys)} renditions in {time.monotonic() - began:.0f} s",
        file=sys.stderr,
    )
    return keys


def sign_paths(tmp: Path, renditions: Sequence[str]) -> dict[str, str]:
    """The edge's request paths, signed with ``encore-edge sign`` (valid for a day)."""
    config = tmp / "sign.toml"
    config.write_text(f'[auth]\nsigning_keys = {{ {KID} = "{SECRET}" }}\n')
    paths = {}
    for rendition in renditions:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "edge",
                "sign",
                "--config",
                str(config),
                f"/v1/tracks/{TRACK}/{rendition}",
                "--ttl",
                "86400",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        if done.returncode:
            sys.exit(f"{BENCH}: encore-edge sign failed: {done.stderr.strip()[-500:]}")
        paths[rendition] = done.stdout.strip()
    return paths


def disk_rotation(sizes: dict[str, int]) -> list[tuple[str, str]]:
    """(rendition, range) of 256 KiB ranges, each across a slice boundary and touching two
    slices no other range touches, interleaved over the renditions: a slice comes round again
    only after every other slice has, far beyond what a 2 MiB memory tier holds."""
    per: list[list[tuple[str, str]]] = [
        [
            (r, f"bytes={start}-{start + SLICE - 1}")
            for start in range(SLICE // 2, size - SLICE + 1, 2 * SLICE)
        ]
        for r, size in sorted(sizes.items())
    ]
    return [entry for group in zip(*_padded(per), strict=True) for entry in group if entry]


def _padded(lists: list[list[tuple[str, str]]]) -> list[list[tuple[str, str] | None]]:
    longest = max(len(items) for items in lists)
    return [[*items, *([None] * (longest - len(items)))] for items in lists]


def span(range_header: str) -> tuple[int, int]:
    first, last = range_header.removeprefix("bytes=").split("-")
    return int(first), int(last)


# --- starting the servers ----------------------------------------------------------------------


@dataclass
class Setup:
    tmp: Path
    s3: LocalS3
    origin_port: int
    keys: dict[str, str]
    signed: dict[str, str]
    objects: dict[str, bytes]
    args: argparse.Namespace
    procs: Processes = field(default_factory=Processes)


def start_edge(setup: Setup, workers: int, *, disk: bool) -> Server:
    kind = "edge-disk" if disk else "edge"
    folder = setup.tmp / f"{kind}-{workers}"
    folder.mkdir()
    port = free_port()
    config = folder / "edge.toml"
    config.write_text(
        EDGE_CONF.format(
            port=port,
            workers=workers,
            endpoint=setup.s3.endpoint_url,
            bucket=BUCKET,
            memory="2MiB" if disk else "256MiB",
            disk_path=folder / "cache",
            extra_cache="prefetch_slices = 0\n" if disk else "",
            kid=KID,
            secret=SECRET,
        )
    )
    log = folder / "edge.log"  # stderr: the access log and everything else the edge says
    process = setup.procs.start(
        [sys.executable, "-m", "edge", "serve", "--config", str(config)],
        log,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    server = Server(
        "edge", f"http://127.0.0.1:{port}", [process], log, log, setup.signed, edge=True, label=kind
    )
    server.wait_ready("/readyz")
    return server


def start_nginx(setup: Setup, workers: int) -> Server:
    nginx = need_tool("nginx", BENCH, INSTALL)
    folder = setup.tmp / f"nginx-{workers}"
    folder.mkdir()
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            tmp=folder,
            workers=workers,
            port=port,
            origin_port=setup.origin_port,
            sendfile=setup.args.nginx_sendfile,
        )
    )
    process = setup.procs.start([nginx, "-c", str(conf)], folder / "nginx.out")
    paths = {r: f"/{key}" for r, key in setup.keys.items()}
    server = Server(
        "nginx",
        f"http://127.0.0.1:{port}",
        [process],
        folder / "nginx-error.log",
        folder / "nginx-access.log",
        paths,
    )
    server.wait_ready(paths[MAIN_RENDITION])
    return server


def start_varnish(setup: Setup, workers: int) -> Server:
    varnishd = need_tool("varnishd", BENCH, INSTALL)
    varnishncsa = need_tool("varnishncsa", BENCH, INSTALL)
    taskset = need_tool("taskset", BENCH, "util-linux")
    folder = setup.tmp / f"varnish-{workers}"
    folder.mkdir()
    port = free_port()
    (folder / "default.vcl").write_text(VARNISH_VCL.format(origin_port=setup.origin_port))
    cpus = "0" if workers == 1 else f"0-{workers - 1}"
    # -j none: no privilege drop to the varnish user, which could not enter the 0700 temp dir
    process = setup.procs.start(
        [
            taskset,
            "-c",
            cpus,
            varnishd,
            "-F",
            "-j",
            "none",
            "-a",
            f"127.0.0.1:{port}",
            "-T",
            "none",
            "-f",
            str(folder / "default.vcl"),
            "-s",
            "malloc,1G",
            "-n",
            str(folder / "work"),
        ],
        folder / "varnishd.log",
    )
    paths = {r: f"/{key}" for r, key in setup.keys.items()}
    server = Server(
        "varnish",
        f"http://127.0.0.1:{port}",
        [process],
        folder / "varnishd.log",
        folder / "varnish-access.log",
        paths,
    )
    server.wait_ready(paths[MAIN_RENDITION])
    ncsa = setup.procs.start(
        [varnishncsa, "-n", str(folder / "work"), "-a", "-w", str(server.access_log)],
        folder / "varnishncsa.log",
    )
    server.roots.append(ncsa)
    deadline = time.monotonic() + 10
    while not server.access_log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return server


def start_ceiling(setup: Setup, workers: int, kind: str) -> Server:
    folder = setup.tmp / f"{kind}-{workers}"
    folder.mkdir()
    port = free_port()
    obj = setup.tmp / "s3" / BUCKET / setup.keys[MAIN_RENDITION]
    access = folder / "access.log"
    process = setup.procs.start(
        [
            sys.executable,
            "-m",
            "loadtests.ceiling_servers",
            kind,
            "--port",
            str(port),
            "--processes",
            str(workers),
            "--object",
            str(obj),
            "--access-log",
            str(access),
        ],
        folder / "ceiling.log",
    )
    paths = {MAIN_RENDITION: f"/{setup.keys[MAIN_RENDITION]}"}
    server = Server(
        kind, f"http://127.0.0.1:{port}", [process], folder / "ceiling.log", access, paths
    )
    server.wait_ready(paths[MAIN_RENDITION])
    return server


# --- warming and checking ----------------------------------------------------------------------

HEADERS = {"X-Client-Region": CLIENT_REGION}


def check_bytes(
    server: Server, rendition: str, range_header: str, objects: dict[str, bytes]
) -> dict[str, str]:
    first, last = span(range_header)
    body, headers = fetch_with_headers(server.url(rendition), {"Range": range_header, **HEADERS})
    if body != objects[rendition][first : last + 1]:
        sys.exit(
            f"{BENCH}: {server.label or server.name} answered wrong bytes for "
            f"{rendition} {range_header}"
        )
    return headers


def check_edge_access(server: Server, setup: Setup) -> None:
    """Licensing and signatures are really on: 451 for a region outside the licence, 403
    without the signed query."""
    url = server.url()
    if (code := status_of(url, {"Range": "bytes=0-0", "X-Client-Region": "US"})) != 451:
        sys.exit(f"{BENCH}: the edge answered {code}, not 451, outside the licence")
    if (code := status_of(url.split("?")[0], {"Range": "bytes=0-0", **HEADERS})) != 403:
        sys.exit(f"{BENCH}: the edge answered {code}, not 403, to an unsigned URL")


def warm_memory(server: Server, setup: Setup, ranges: Sequence[str]) -> None:
    """Fetch each range until several in a row (each on a new connection, so on any worker)
    are memory hits (the edge) or simply answered right (the others)."""
    if server.name == "varnish":  # one whole GET: Varnish then holds the object
        fetch(server.url(), HEADERS)
    for range_header in ranges:
        streak = 0
        for _ in range(80):
            headers = check_bytes(server, MAIN_RENDITION, range_header, setup.objects)
            hit = not server.edge or (
                headers.get("X-Cache") == "HIT" and headers.get("X-Cache-Tier") == "memory"
            )
            streak = streak + 1 if hit else 0
            if streak >= 8:
                break
        else:
            sys.exit(f"{BENCH}: {server.label} gave no steady memory hits for {range_header}")


def warm_disk(server: Server, setup: Setup, rotation: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Pass over the rotation until a whole pass has no miss; the edge's last pass's
    ``X-Cache-Tier`` counts are returned (a sample of what the rounds will read)."""
    tiers: dict[str, int] = {}
    for _ in range(10):
        tiers = {}
        for rendition, range_header in rotation:
            headers = check_bytes(server, rendition, range_header, setup.objects)
            tier = headers.get("X-Cache-Tier", "-") if headers.get("X-Cache") == "HIT" else "miss"
            tiers[tier] = tiers.get(tier, 0) + 1
        if not server.edge or "miss" not in tiers:
            return tiers
        time.sleep(0.5)  # let the background disk writes land
    sys.exit(f"{BENCH}: {server.label} still misses after 10 passes over the rotation: {tiers}")


def write_rotation(server: Server, rotation: Sequence[tuple[str, str]], path: Path) -> Path:
    entries = ",\n".join(
        f"  {{{json.dumps(server.paths[rendition])}, {json.dumps(range_header)}}}"
        for rendition, range_header in rotation
    )
    path.write_text(WRK_ROTATION.format(entries=entries))
    return path


# --- one measured round ------------------------------------------------------------------------

_SAMPLE = re.compile(r"^(encore_[a-z_]+)(?:\{([^}]*)\})?\s+(\S+)$", re.M)


def edge_counters(server: Server) -> dict[str, float]:
    """``{"memory hit": n, "disk hit": n, ..., "origin": n}`` from the edge's /metrics."""
    text = fetch(server.base_url + "/metrics", {}).decode()
    counts: dict[str, float] = {}
    for name, labels, value in _SAMPLE.findall(text):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels or ""))
        if name == "encore_cache_lookups_total":
            key = f"{found.get('tier')} {found.get('result')}"
        elif name == "encore_origin_fills_total":
            key = "origin fills"
        elif name == "encore_origin_requests_total":
            key = "origin requests"
        else:
            continue
        counts[key] = counts.get(key, 0.0) + float(value)
    return counts


def measure(server: Server, target: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    pids = [process.pid for process in server.roots]
    before = edge_counters(server) if server.edge else {}
    log_before = server.access_log.stat().st_size if server.access_log.exists() else 0
    cpu_before = tree_cpu_seconds(pids)
    result = wrk_round(
        target["url"],
        args.seconds,
        args.connections,
        threads=args.threads,
        headers=target["headers"],
        script=target.get("script"),
    )
    cpu = tree_cpu_seconds(pids) - cpu_before
    time.sleep(0.25)  # the buffered logs flush within 100 ms
    log_after = server.access_log.stat().st_size if server.access_log.exists() else 0
    row: dict[str, Any] = {
        "rps": round(result.rps, 1),
        "p99_ms": round(result.p99_ms, 3),
        "requests": result.requests,
        "server_cpu_s": round(cpu, 3),
        "server_cores": round(cpu / result.duration_s, 3),
        "cpu_us_per_request": round(cpu / max(result.requests, 1) * 1e6, 1),
        "wrk_cpu_s": round(result.cpu_s, 3),
        "wrk_cpu_share": round(result.cpu_s / result.duration_s / args.threads, 3),
        "access_log_bytes": log_after - log_before,
        "socket_errors": result.socket_errors,
    }
    if server.edge:
        after = edge_counters(server)
        delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
        hits = {tier: delta.get(f"{tier} hit", 0.0) for tier in ("memory", "disk")}
        total = sum(hits.values()) or 1.0
        row["slice_reads"] = {tier: int(n) for tier, n in hits.items()}
        row["disk_share"] = round(hits["disk"] / total, 3)
        row["origin_fills"] = int(delta.get("origin fills", 0.0))  # slices from the origin
        row["origin_requests"] = int(delta.get("origin requests", 0.0))  # manifests too
    return row


# --- summaries ---------------------------------------------------------------------------------


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def summarize(rounds: dict[str, list[dict[str, Any]]], scenario: Scenario) -> dict[str, Any]:
    servers = {
        name: {
            "rps": spread([r["rps"] for r in rows], 1),
            "p99_ms": spread([r["p99_ms"] for r in rows]),
            "cpu_us_per_request": spread([r["cpu_us_per_request"] for r in rows], 1),
            "wrk_cpu_share_max": max(r["wrk_cpu_share"] for r in rows),
            "client_bound_rounds": sum(r["wrk_cpu_share"] >= CLIENT_BOUND for r in rows),
            "rounds": rows,
        }
        for name, rows in rounds.items()
    }
    ratios: dict[str, Any] = {}
    edge = rounds.get("edge")
    if edge:
        for other, other_rows in rounds.items():
            if other == "edge":
                continue
            pairs = list(zip(edge, other_rows, strict=True))
            ratio = spread([e["rps"] / o["rps"] for e, o in pairs])
            if other == "nginx":
                ratio["target"] = scenario.rps_target
                ratio["met"] = ratio["median"] >= scenario.rps_target
                p99 = spread([e["p99_ms"] / o["p99_ms"] for e, o in pairs])
                p99["target"] = P99_TARGET
                p99["met"] = p99["median"] <= P99_TARGET
                ratios["edge/nginx p99"] = p99
            ratios[f"edge/{other} rps"] = ratio
    return {"name": scenario.name, "range": scenario.range, "servers": servers, "ratios": ratios}


def _ratio_cell(ratio: dict[str, Any] | None, mark: bool = False) -> str:
    if ratio is None:
        return "-"
    text = f"{ratio['median']:.2f} [{ratio['min']:.2f}-{ratio['max']:.2f}]"
    if mark:
        text += " ok" if ratio["met"] else " MISS"
    return text


def _k(value: float) -> str:
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def print_tables(workers: int, results: dict[str, Any], args: argparse.Namespace) -> None:
    """Two tables for one N: the ratios issue 13 judges, then each server's medians."""
    print(
        f"\n== N = {workers} process(es) each; wrk -t{args.threads} -c{args.connections}, "
        f"{args.seconds} s x {args.rounds} rounds; ratios: median [min-max] of per-round ratios"
    )
    print(
        f"{'scenario':<21}{'edge/nginx r/s':<31}{'edge/nginx p99 (<=2)':<27}"
        f"{'edge/varnish':<18}{'edge/httptools':<18}edge/aiohttp"
    )
    for result in results.values():
        ratios = result["ratios"]
        rps = ratios.get("edge/nginx rps")
        target = f" (>={rps['target']})" if rps else ""
        print(
            f"{result['name']:<21}{_ratio_cell(rps, True) + target:<31}"
            f"{_ratio_cell(ratios.get('edge/nginx p99'), True):<27}"
            f"{_ratio_cell(ratios.get('edge/varnish rps')):<18}"
            f"{_ratio_cell(ratios.get('edge/httptools rps')):<18}"
            f"{_ratio_cell(ratios.get('edge/aiohttp rps'))}"
        )
    print("medians per server: req/s, CPU µs per request, p99 latency; wrk's CPU (max)")
    print(f"{'scenario':<21}" + "".join(f"{name:<23}" for name in SERVERS) + "wrk CPU  edge tiers")
    for result in results.values():
        cells, wrk_share = [], 0.0
        for name in SERVERS:
            row = result["servers"].get(name)
            if row is None:
                cells.append(f"{'-':<23}")
                continue
            wrk_share = max(wrk_share, row["wrk_cpu_share_max"])
            star = "*" if row["client_bound_rounds"] else " "
            cells.append(
                f"{_k(row['rps']['median']):>5} {row['cpu_us_per_request']['median']:>4.0f} "
                f"{row['p99_ms']['median']:>6.1f}ms{star}    "
            )
        tiers = "-"
        if "edge" in result["servers"]:
            edge_rounds = result["servers"]["edge"]["rounds"]
            share = statistics.median(r["disk_share"] for r in edge_rounds)
            fills = sum(r["origin_fills"] for r in edge_rounds)
            tiers = f"disk {share:.0%}, origin fills {fills}"
        print(f"{result['name']:<21}" + "".join(cells) + f"{wrk_share:>6.0%}   {tiers}")
    print("(* a client-bound round: wrk's CPU at >= 90 % of its threads' cores)")


# --- main --------------------------------------------------------------------------------------


def _list(text: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown or not items:
        raise argparse.ArgumentTypeError(f"{what}: choose from {','.join(allowed)}")
    return items


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run (5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per scenario (3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (1)")
    parser.add_argument("--processes", default="1,2", help="N values to run, e.g. 1,2 (1,2)")
    parser.add_argument(
        "--only",
        type=lambda s: _list(s, SERVERS, "--only"),
        default=list(SERVERS),
        help=f"servers, from {','.join(SERVERS)}",
    )
    parser.add_argument(
        "--scenarios",
        type=lambda s: _list(s, list(SCENARIOS), "--scenarios"),
        default=list(SCENARIOS),
        help=f"from {','.join(SCENARIOS)}",
    )
    parser.add_argument("--nginx-sendfile", choices=("on", "off"), default="on")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write all results here")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    try:
        args.workers = [int(n) for n in args.processes.split(",")]
    except ValueError:
        parser.error("--processes: numbers such as 1,2")
    if any(not 1 <= n <= (os.cpu_count() or 1) for n in args.workers):
        parser.error(f"--processes: each from 1 to the CPU count ({os.cpu_count()})")
    if args.seconds < 1 or args.rounds < 1 or args.connections < 1 or args.threads < 1:
        parser.error("--seconds, --rounds, --connections and --threads must be positive")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def _stopping(procs: Processes) -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        procs.stop()
        signal.signal(signal.SIGTERM, previous)


def run_n(setup: Setup, workers: int) -> dict[str, Any]:
    """Start every selected server with ``workers`` processes, measure, stop them."""
    args = setup.args
    memory = [SCENARIOS[k] for k in args.scenarios if SCENARIOS[k].range is not None]
    disk = "disk" in args.scenarios
    servers: dict[str, Server] = {}
    disk_servers: dict[str, Server] = {}
    rotation = disk_rotation({r: len(data) for r, data in setup.objects.items()})
    results: dict[str, Any] = {}
    warm_tiers: dict[str, int] = {}
    started_before = list(setup.procs.started)
    try:
        for name in args.only:
            if memory:
                servers[name] = (
                    start_edge(setup, workers, disk=False)
                    if name == "edge"
                    else start_nginx(setup, workers)
                    if name == "nginx"
                    else start_varnish(setup, workers)
                    if name == "varnish"
                    else start_ceiling(setup, workers, name)
                )
                if name == "edge":
                    check_edge_access(servers[name], setup)
                warm_memory(servers[name], setup, [s.range for s in memory if s.range])
            if disk and name in DISK_SERVERS:
                disk_servers[name] = (
                    start_edge(setup, workers, disk=True)
                    if name == "edge"
                    else servers.get("nginx") or start_nginx(setup, workers)
                )
                tiers = warm_disk(disk_servers[name], setup, rotation)
                if name == "edge":
                    warm_tiers = tiers
        if warm_tiers:
            print(
                f"{BENCH}: N={workers}: edge disk-hit sample after warming "
                f"({len(rotation)} ranges): {warm_tiers}",
                file=sys.stderr,
            )
        for key in args.scenarios:
            scenario = SCENARIOS[key]
            chosen = disk_servers if scenario.range is None else servers
            targets: dict[str, dict[str, Any]] = {}
            for name, server in chosen.items():
                if scenario.range is None:
                    script = write_rotation(
                        server, rotation, setup.tmp / f"rotation-{name}-{workers}.lua"
                    )
                    targets[name] = {"url": server.base_url, "headers": HEADERS, "script": script}
                else:
                    targets[name] = {
                        "url": server.url(),
                        "headers": {"Range": scenario.range, **HEADERS},
                    }
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
            for round_ in range(args.rounds):
                order = list(chosen) if round_ % 2 == 0 else list(reversed(chosen))
                for name in order:
                    rounds[name].append(measure(chosen[name], targets[name], args))
                    time.sleep(0.3)
                print(
                    f"{BENCH}: N={workers} {scenario.name}: round {round_ + 1}/{args.rounds}: "
                    + ", ".join(f"{n} {rounds[n][-1]['rps']:.0f}/s" for n in chosen),
                    file=sys.stderr,
                    flush=True,
                )
            results[key] = summarize(rounds, scenario)
            if scenario.range is None:
                results[key]["warm_sample_tiers"] = warm_tiers
                results[key]["rotation_ranges"] = len(rotation)
    finally:
        setup.procs.stop([p for p in setup.procs.started if p not in started_before])
    return results


def missed_targets(runs: dict[str, dict[str, Any]]) -> list[str]:
    missed = []
    for workers, results in runs.items():
        for result in results.values():
            for label, ratio in result["ratios"].items():
                if "met" in ratio and not ratio["met"]:
                    bound = ">=" if label.endswith("rps") else "<="
                    missed.append(
                        f"N={workers} {result['name']}: {label} {ratio['median']} "
                        f"(target {bound} {ratio['target']})"
                    )
    return missed


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    need_tool("wrk", BENCH, INSTALL)
    if "nginx" in args.only:
        need_tool("nginx", BENCH, INSTALL)
    if "varnish" in args.only and any(SCENARIOS[k].range for k in args.scenarios):
        need_tool("varnishd", BENCH, INSTALL)
        need_tool("varnishncsa", BENCH, INSTALL)
        need_tool("taskset", BENCH, "util-linux")
    procs = Processes()
    runs: dict[str, dict[str, Any]] = {}
    with local_origin(BUCKET) as (tmp, s3), _stopping(procs):
        keys = publish(s3, tmp)
        origin_port = free_port()
        folder_server = serve_folder_over_http(tmp / "s3" / BUCKET, origin_port)
        procs.started.append(folder_server)
        objects = {r: (tmp / "s3" / BUCKET / key).read_bytes() for r, key in keys.items()}
        setup = Setup(
            tmp, s3, origin_port, keys, sign_paths(tmp, sorted(keys)), objects, args, procs
        )
        wait_until_up(f"http://127.0.0.1:{origin_port}/{keys[MAIN_RENDITION]}")
        for workers in args.workers:
            runs[str(workers)] = run_n(setup, workers)
            print_tables(workers, runs[str(workers)], args)
    missed = missed_targets(runs)
    elapsed = time.monotonic() - started
    print(
        f"\n{BENCH}: {elapsed:.0f} s; "
        + (f"{len(missed)} target(s) missed:" if missed else "every target met")
    )
    for line in missed:
        print(f"  {line}")
    if args.json:
        document = {
            "config": {
                "seconds": args.seconds,
                "rounds": args.rounds,
                "connections": args.connections,
                "threads": args.threads,
                "processes": args.workers,
                "only": args.only,
                "scenarios": args.scenarios,
                "nginx_sendfile": args.nginx_sendfile,
                "cpus": os.cpu_count(),
                "p99_target": P99_TARGET,
                "client_bound_share": CLIENT_BOUND,
            },
            "runs": runs,
            "missed": missed,
            "elapsed_s": round(elapsed, 1),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.check and missed:
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # every process it started is stopped by then
        sys.exit(f"{BENCH}: interrupted")
