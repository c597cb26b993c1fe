"""Restart with a full disk tier: time to the first disk hit, time to a rebuilt index, and
index memory per slice.

Writes N slice files (default 100,000, 16 KiB slices) into a disk cache folder: the slices of
one real published track, written by a real edge, plus filler slices of other objects in the
same format. Then starts ``encore-edge serve`` on that folder and measures, from process
start: the first response served from disk (X-Cache-Tier: disk), and /readyz turning 200
(the index rebuild finished). Index memory per slice is traced exactly (tracemalloc) on the
same classes; the edge's RSS growth against the same edge on an empty folder, measured in
the same run, is printed too.

    python -m loadtests.bench_disk_restart [--slices 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import time
import tracemalloc
import urllib.error
import urllib.request
from pathlib import Path

from edge.cache.disk import DiskTier
from edge.cache.slice_files import encode, slice_name, write_atomically
from loadtests.local_origin import local_origin
from origin.license import License
from origin.local_s3 import LocalS3, free_port
from origin.publish import RenditionFile, TrackInfo, publish_track
from origin.s3 import open_s3_client
from origin.seek_table import SeekTable
from origin.settings import DEFAULT_POLICY, load_settings

SLICE_BYTES = 16 * 1024
BUCKET = "bench"


def _index_bytes_per_slice(slices: int) -> float:
    """Memory the disk index holds per slice, traced exactly (names and entries), in this
    process: the same DiskTier and policy classes the edge runs."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    disk = DiskTier(Path("/nonexistent"), 1 << 50, SLICE_BYTES, DEFAULT_POLICY)
    for n in range(slices):
        disk._index[slice_name(f"tracks/t{n}/160-x.ogg", SLICE_BYTES, 0)] = disk._size(16412)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / slices


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _publish(s3: LocalS3, workdir: Path) -> tuple[str, bytes]:
    data = os.urandom(64 * SLICE_BYTES)
    path = workdir / "track.ogg"
    path.write_bytes(data)
    file = RenditionFile(
        "160", path, "vorbis", "audio/ogg; codecs=vorbis", "ogg", 160, 44_100, 2, 30.0,
        SeekTable.from_points(0, [(0.0, 0)]),
    )  # fmt: skip
    settings = load_settings(None, env={"ENCORE_ORIGIN__ENDPOINT_URL": s3.endpoint_url})
    async with open_s3_client(settings.origin) as client:
        result = await publish_track(
            client, BUCKET, TrackInfo("restart", "t", "a", License(("*",))), [file],
            part_bytes=settings.ingest.part_bytes,
        )  # fmt: skip
    return result.manifest.renditions["160"].key, data


def _fill(cache: Path, key: str, data: bytes, total: int) -> None:
    for index in range(len(data) // SLICE_BYTES):
        chunk = data[index * SLICE_BYTES : (index + 1) * SLICE_BYTES]
        write_atomically(cache, slice_name(key, SLICE_BYTES, index), encode(key, index, chunk), "")
    filler = os.urandom(SLICE_BYTES)
    for n in range(total - len(data) // SLICE_BYTES):
        fake = f"tracks/filler-{n // 100}/160-{'0' * 64}.ogg"
        write_atomically(
            cache, slice_name(fake, SLICE_BYTES, n % 100), encode(fake, n % 100, filler), ""
        )


def _config(path: Path, port: int, s3: LocalS3, cache: Path) -> None:
    path.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nworkers = 1\n'
        f'[origin]\nendpoint_url = "{s3.endpoint_url}"\nbucket = "{BUCKET}"\n'
        f'[cache]\nslice_bytes = "{SLICE_BYTES}"\nmemory_bytes = "64MiB"\n'
        f'disk_path = "{cache}"\ndisk_bytes = "100GiB"\n'
        '[edge]\nregion = "SE"\n'
    )


def _start(config: Path) -> tuple[subprocess.Popen[bytes], float]:
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "edge", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, started


def _poll(url: str, headers: dict[str, str], until: float, want_tier: str | None) -> float | None:
    while time.monotonic() < until:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=2
            ) as r:
                if want_tier is None or r.headers.get("X-Cache-Tier") == want_tier:
                    return time.monotonic()
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.01)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=100_000)
    args = parser.parse_args()
    with local_origin(BUCKET, prefix="encore-bench-restart-") as (tmp, s3):
        key, data = asyncio.run(_publish(s3, tmp))
        cache = tmp / "cache"
        print(f"writing {args.slices} slice files of {SLICE_BYTES} bytes ...", flush=True)
        _fill(cache, key, data, args.slices)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        slice_range = {"Range": f"bytes={20 * SLICE_BYTES}-{21 * SLICE_BYTES - 1}"}

        empty = tmp / "empty-cache"
        _config(tmp / "empty.toml", port, s3, empty)
        process, _ = _start(tmp / "empty.toml")
        _poll(base + "/readyz", {}, time.monotonic() + 30, None)
        reference_kib = _rss_kib(process.pid)
        process.terminate()
        process.wait(10)

        _config(tmp / "full.toml", port, s3, cache)
        process, started = _start(tmp / "full.toml")
        try:
            url = f"{base}/v1/tracks/restart/160"
            first_hit = _poll(url, slice_range, started + 30, "disk")
            ready = _poll(base + "/readyz", {}, started + 60, None)
            full_kib = _rss_kib(process.pid)
        finally:
            process.terminate()
            process.wait(10)
        if first_hit is None or ready is None:
            sys.exit("bench_disk_restart: the edge never served a disk hit or got ready")
        per_slice = (full_kib - reference_kib) * 1024 / args.slices
        print(f"first disk hit after start:   {first_hit - started:.2f} s (goal: 1 s)")
        print(f"index rebuilt (/readyz 200):  {ready - started:.2f} s (goal: 10 s)")
        print(
            f"index memory per slice:       {_index_bytes_per_slice(args.slices):.0f} bytes "
            f"traced ({DEFAULT_POLICY}; goal: 300)"
        )
        print(
            f"edge RSS growth per slice:    {per_slice:.0f} bytes ({full_kib} KiB vs "
            f"{reference_kib} KiB on an empty disk, same run; includes the rebuild's "
            "freed but unreturned scratch memory)"
        )


if __name__ == "__main__":
    main()
