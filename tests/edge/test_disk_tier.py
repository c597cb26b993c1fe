"""The disk tier in a real edge: hits survive a restart, damaged files are never served, the
byte bound holds, and a disk too small for anything leaves the node serving."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.disk_tier import DiskTier
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.edge_server import EdgeServer

SLICE_FILES = "slices"


def _slice_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / SLICE_FILES).glob("*/*") if p.is_file())


def _wait_for_files(root: Path, count: int, timeout_s: float = 10) -> list[Path]:
    deadline = time.monotonic() + timeout_s
    while True:
        files = _slice_files(root)
        if len(files) >= count or time.monotonic() > deadline:
            return files
        time.sleep(0.05)


def _wait_ready(edge: EdgeServer, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while edge.get("/readyz").status != 200:
        assert time.monotonic() < deadline, "disk index never finished rebuilding"
        time.sleep(0.05)


def _sample(edge: EdgeServer, name: str, **labels: str) -> float:
    """A counter's value; the registry is shared by every edge in this process, so tests
    compare values before and after."""
    return edge.metric_samples().get((name, frozenset(labels.items())), 0.0)


def _disk(root: Path, disk_bytes: int = 64 * 1024**2) -> dict[str, object]:
    return {"disk_path": str(root), "disk_bytes": disk_bytes}


def test_hits_survive_a_restart(
    tmp_path: Path, catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    data = os.urandom(3 * TEST_SLICE_BYTES + 500)
    track = catalog.publish({"160": data}).track_id
    path = f"/v1/tracks/{track}/160"
    first = start_edge(cache=_disk(tmp_path))
    cold = first.get(path)
    assert (cold.status, cold.header("X-Cache-Tier")) == (200, "origin")
    assert len(_wait_for_files(tmp_path, 4)) == 4
    first.stop()

    second = start_edge(cache=_disk(tmp_path))
    _wait_ready(second)
    warm = second.get(path, Range=f"bytes=100-{2 * TEST_SLICE_BYTES}")
    assert warm.status == 206
    assert warm.body == data[100 : 2 * TEST_SLICE_BYTES + 1]
    assert (warm.header("X-Cache"), warm.header("X-Cache-Tier")) == ("HIT", "disk")
    again = second.get(path, Range=f"bytes=100-{2 * TEST_SLICE_BYTES}")
    assert again.header("X-Cache-Tier") == "memory"  # promoted by the disk hit


def test_damaged_slice_files_are_never_served(
    tmp_path: Path, catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    data = os.urandom(4 * TEST_SLICE_BYTES)
    track = catalog.publish({"160": data}).track_id
    path = f"/v1/tracks/{track}/160"
    first = start_edge(cache=_disk(tmp_path))
    assert first.get(path).body == data
    files = _wait_for_files(tmp_path, 4)
    first.stop()
    flipped = bytearray(files[0].read_bytes())
    flipped[-7] ^= 0x55
    files[0].write_bytes(bytes(flipped))
    files[1].write_bytes(files[1].read_bytes()[:1000])  # truncated
    files[2].write_bytes(b"")  # a crash before any byte reached the disk

    second = start_edge(cache=_disk(tmp_path))
    _wait_ready(second)
    damaged_before = _sample(second, "encore_disk_damaged_slices_total")
    for _ in range(2):  # the second time, the refetched slices are back on disk or in memory
        reply = second.get(path)
        assert reply.status == 200
        assert reply.body == data
    assert _sample(second, "encore_disk_damaged_slices_total") - damaged_before == 3


def test_the_byte_bound_holds(
    tmp_path: Path, catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    budget = 5 * (TEST_SLICE_BYTES + 200)  # five slice files with their headers
    edge = start_edge(cache={**_disk(tmp_path, budget), "memory_bytes": 0})
    for _ in range(4):
        data = os.urandom(3 * TEST_SLICE_BYTES)
        track = catalog.publish({"160": data}).track_id
        assert edge.get(f"/v1/tracks/{track}/160").body == data
    time.sleep(0.5)  # background writes
    held = sum(p.stat().st_size for p in _slice_files(tmp_path))
    assert 0 < held <= budget


def test_a_disk_too_small_for_a_slice_leaves_the_node_serving(
    tmp_path: Path, catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    data = os.urandom(2 * TEST_SLICE_BYTES)
    track = catalog.publish({"160": data}).track_id
    edge = start_edge(cache=_disk(tmp_path, TEST_SLICE_BYTES // 2))
    refused_before = _sample(edge, "encore_cache_admissions_refused_total", tier="disk")
    for _ in range(2):
        assert edge.get(f"/v1/tracks/{track}/160").body == data
    time.sleep(0.3)  # background writes
    assert _slice_files(tmp_path) == []
    refused = _sample(edge, "encore_cache_admissions_refused_total", tier="disk")
    assert refused - refused_before >= 2


def test_leftover_temporary_files_are_cleaned_at_startup(
    tmp_path: Path, start_edge: Callable[..., EdgeServer]
) -> None:
    (tmp_path / "tmp").mkdir(parents=True)
    leftover = tmp_path / "tmp" / "w0-0123456789abcdef0123456789abcdef.999"
    leftover.write_bytes(b"half a slice")
    edge = start_edge(cache=_disk(tmp_path))
    _wait_ready(edge)
    assert not leftover.exists()


def test_a_failing_disk_leaves_the_node_serving(
    tmp_path: Path, catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    (tmp_path / "tmp").write_bytes(b"a file where the temp folder should be")  # writes fail
    data = os.urandom(3 * TEST_SLICE_BYTES)
    track = catalog.publish({"160": data}).track_id
    edge = start_edge(cache=_disk(tmp_path))
    _wait_ready(edge)
    refused_before = _sample(edge, "encore_cache_admissions_refused_total", tier="disk")
    for _ in range(2):
        assert edge.get(f"/v1/tracks/{track}/160").body == data
    time.sleep(0.3)
    assert _sample(edge, "encore_cache_admissions_refused_total", tier="disk") > refused_before


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a disk that really fills up. Needs root (mount)."""
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_a_full_disk_leaves_the_node_serving(
    tiny_tmpfs: Path, catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    edge = start_edge(cache={**_disk(tiny_tmpfs, 1024**3), "memory_bytes": 0})
    _wait_ready(edge)
    for _ in range(3):  # 30 slices: far more than 256 KiB
        data = os.urandom(10 * TEST_SLICE_BYTES)
        track = catalog.publish({"160": data}).track_id
        for _ in range(2):
            assert edge.get(f"/v1/tracks/{track}/160").body == data
    time.sleep(0.3)
    assert sum(p.stat().st_size for p in _slice_files(tiny_tmpfs)) <= 256 * 1024


async def test_two_workers_racing_to_write_a_slice_keep_one_file_and_report_one_duplicate(
    tmp_path: Path,
) -> None:
    tiers = [DiskTier(tmp_path, 64 * 1024**2, 1000, "lru", worker=w, workers=2) for w in (0, 1)]
    for index in range(40):
        data = os.urandom(1000)
        duplicates = await asyncio.gather(*(tier.put("k", index, data) for tier in tiers))
        assert sorted(duplicates) == [False, True], index
        assert [await tier.get("k", index, 1000) for tier in tiers] == [data, data]
    assert len(_slice_files(tmp_path)) == 40
