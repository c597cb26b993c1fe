"""The disk tier in a real edge: hits survive a restart, damaged files are never served, the
byte bound holds (across worker crashes too), files and folders are private, and a disk too
small for anything leaves the node serving."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.client
import os
import random
import signal
import stat
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.cache import slice_files
from edge.cache.disk import DiskTier
from edge.cache.slice_files import claim_path, slice_name, slice_path
from origin.local_s3 import free_port
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.admin_client import admin_request
from tests.support.edge_node import Node
from tests.support.edge_server import EdgeServer

SLICE_FILES = "slices"
ADMIN_TOKEN = "disk-tier-admin-token-0123"


def _slice_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / SLICE_FILES).glob("*/*") if p.is_file())


def _wait_for_files(root: Path, count: int, timeout_s: float = 10) -> list[Path]:
    deadline = time.monotonic() + timeout_s
    while True:
        files = _slice_files(root)
        if len(files) >= count or time.monotonic() > deadline:
            return files
        time.sleep(0.05)


def _disk_writes_done(edge: EdgeServer) -> None:
    """Until every background disk write the edge started has landed (the store's drain hook),
    so what a test then sees on disk is final, not early."""
    landed = edge.call(lambda app: app.slices.disk_writes_done(timeout_s=20))
    assert landed, "background disk writes never finished"


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
    _disk_writes_done(edge)
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
    _disk_writes_done(edge)
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
    _disk_writes_done(edge)
    assert _sample(edge, "encore_cache_admissions_refused_total", tier="disk") > refused_before
    assert _slice_files(tmp_path) == []


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
    _disk_writes_done(edge)
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


# --- several workers: every file is counted by exactly one worker, across crashes too ------


def _tiers(root: Path, max_bytes: int, workers: int = 2) -> list[DiskTier]:
    return [
        DiskTier(root, max_bytes, 1000, "lru", worker=w, workers=workers) for w in range(workers)
    ]


def _file_bytes(root: Path) -> int:
    total = 0
    for path in _slice_files(root):
        with contextlib.suppress(FileNotFoundError):  # evicted while listed
            total += path.stat().st_size
    return total


async def test_a_replacement_worker_counts_what_its_predecessor_wrote(tmp_path: Path) -> None:
    tiers = _tiers(tmp_path, 64 * 1024**2)
    for tier in tiers:
        await tier.rebuild()
    for index in range(40):  # all by worker 0: about half of the names hash to worker 1
        assert not await tiers[0].put("k", index, os.urandom(1000))
    assert len(tiers[0]) == 40
    assert len(tiers[1]) == 0

    # Worker 0 is killed: its index is gone, its files stay. Its replacement rebuilds.
    replacement = _tiers(tmp_path, 64 * 1024**2)[0]
    await replacement.rebuild()
    assert len(replacement) == 40
    assert replacement.bytes_held + tiers[1].bytes_held == _file_bytes(tmp_path)
    # And after a restart of the whole node, still exactly once each.
    restarted = _tiers(tmp_path, 64 * 1024**2)
    for tier in restarted:
        await tier.rebuild()
    assert sorted(len(tier) for tier in restarted) == [0, 40]
    assert sum(tier.bytes_held for tier in restarted) == _file_bytes(tmp_path)


async def test_a_miss_read_while_the_slice_is_being_written_keeps_it_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lookup's read finds no file, then its worker's own write of that slice lands before
    the lookup resumes: the lookup must not forget the slice (a file nobody counts would stay
    for good). The read is held at that point, in its thread, with the real file system."""
    (tier,) = _tiers(tmp_path, 64 * 1024**2, workers=1)
    await tier.rebuild()
    read_done, write_done = threading.Event(), threading.Event()
    real_read = slice_files.read_file

    def read_then_wait(path: Path) -> bytes | None:
        raw = real_read(path)
        read_done.set()
        write_done.wait(10)  # the write lands meanwhile
        return raw

    monkeypatch.setattr("edge.cache.disk.read_file", read_then_wait)
    lookup = asyncio.create_task(tier.get("k", 0, 1000))
    await asyncio.to_thread(read_done.wait, 10)
    monkeypatch.setattr("edge.cache.disk.read_file", real_read)
    assert not await tier.put("k", 0, os.urandom(1000))
    write_done.set()
    assert await lookup is None  # it looked before the file was there: a miss
    assert len(tier) == 1  # and the slice is still counted
    assert tier.bytes_held == _file_bytes(tmp_path)


async def test_claims_follow_evictions_and_purges(tmp_path: Path) -> None:
    tier = _tiers(tmp_path, 2 * 10 * 1100)[0]  # this worker's share: room for ten slices
    await tier.rebuild()
    for index in range(30):
        assert not await tier.put("k", index, os.urandom(1000))
    names = {tier.name("k", index) for index in range(30)}
    claims = (
        set(os.listdir(tmp_path / "claims" / "w0")) if (tmp_path / "claims").exists() else set()
    )
    held = {name.hex() for name in names if slice_path(tmp_path, name).exists()}
    assert len(held) == len(tier) == 10
    # A marker for exactly the held files that hash to the other worker.
    assert claims == {name for name in held if int(name[:8], 16) % 2 == 1}
    assert await tier.drop_objects({"k": 30 * 1000}) == 10
    assert _slice_files(tmp_path) == []
    assert list((tmp_path / "claims" / "w0").iterdir()) == []


async def test_a_crash_leaves_nothing_uncounted(tmp_path: Path) -> None:
    """What a SIGKILL can leave: a marker whose file was never linked (or already unlinked),
    a marker of a worker number no longer in use, a temporary file."""
    w0, w1 = _tiers(tmp_path, 64 * 1024**2)
    await w0.rebuild()
    await w1.rebuild()
    for index in range(20):
        assert not await w0.put("k", index, os.urandom(1000))
    by_w1 = [n for n in (w0.name("k", i) for i in range(20, 40)) if int.from_bytes(n[:4]) % 2]
    orphan = claim_path(tmp_path, 0, by_w1[0])  # claimed, then killed before the link
    orphan.touch()
    void = claim_path(tmp_path, 5, w0.name("k", 0))  # from a node once run with 6 workers
    void.parent.mkdir(parents=True)
    void.touch()
    (tmp_path / "tmp" / f"w0-{by_w1[1].hex()}.99999").write_bytes(b"half a slice")

    replacement = _tiers(tmp_path, 64 * 1024**2)[0]
    await replacement.rebuild()
    assert not orphan.exists()
    assert not void.parent.exists()
    assert list((tmp_path / "tmp").iterdir()) == []
    assert len(replacement) + len(w1) == len(_slice_files(tmp_path)) == 20
    assert replacement.bytes_held + w1.bytes_held == _file_bytes(tmp_path)


def _admin_stats(port: int) -> dict[str, Any]:
    status, stats = admin_request(port, "/admin/stats", None, ADMIN_TOKEN)
    assert status == 200, stats
    return stats


def _pid_of_worker(port: int, index: int) -> int | None:
    """The worker's pid, once it answers with its disk index rebuilt."""
    try:
        workers = _admin_stats(port)["workers"]
    except (OSError, http.client.HTTPException):
        return None  # the admin connection went to the worker just killed
    for worker in workers:
        if worker["worker"] == index and worker["disk"]["index_rebuilt"]:
            return int(worker["pid"])
    return None


def _wait_for_worker_0(node: Node, port: int, killed: int | None, timeout_s: float = 30) -> int:
    """Worker 0's pid, once it answers with its disk index rebuilt, is not ``killed`` (the
    supervisor replaced it) and the node is ready."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert node.process.poll() is None, node.log.read_text()[-2000:]
        pid = _pid_of_worker(port, 0)
        if pid is not None and pid != killed and killed not in node.workers():
            try:
                if node.get("/readyz")[0] == 200:
                    return pid
            except OSError:
                pass
        assert time.monotonic() < deadline, "worker 0 was not (re)started"
        time.sleep(0.1)


def _wait_accounted(node: Node, port: int, disk_bytes: int) -> None:
    """Until both workers answer and every slice file is counted (stats >= files). A write
    in flight is counted before its file lands; a kill between two file operations may leave
    one slice counted by two workers (never by none): at most two slice files of slack. Then
    both are within the bound."""
    slack = 2 * (TEST_SLICE_BYTES + 200)
    deadline = time.monotonic() + 15
    while True:
        stats = _admin_stats(port)
        on_disk = _file_bytes(node.cache)
        counted = stats["totals"]["disk"]["bytes"]
        if stats["workers_answering"] == 2 and on_disk <= counted <= on_disk + slack:
            break
        assert time.monotonic() < deadline, (on_disk, counted, disk_bytes, stats["workers"])
        time.sleep(0.05)
    assert on_disk <= disk_bytes
    assert counted <= disk_bytes


def test_the_byte_bound_holds_across_worker_crashes(
    catalog: Catalog, start_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    # LRU, so that the churn below evicts every file a worker counts. (S3-FIFO keeps slices
    # that were hit through any number of one-time reads, by design.)
    monkeypatch.setenv("ENCORE_CACHE__POLICY", "lru")
    disk_bytes = 2 * 1024**2
    port = free_port()
    config = {
        "disk_bytes": str(disk_bytes),
        "memory_bytes": "64KiB",  # reads go to the disk and the origin
        "extra_toml": f'[admin]\nport = {port}\ntoken = "{ADMIN_TOKEN}"\n',
    }
    node = start_node(**config)
    slices = 32

    def publish(count: int) -> list[tuple[str, str, bytes]]:
        published = []
        for _ in range(count):
            data = os.urandom(slices * TEST_SLICE_BYTES)
            manifest = catalog.publish({"160": data})
            published.append((manifest.track_id, manifest.renditions["160"].key, data))
        return published

    # Twice the bound: slices keep being evicted and written while worker 0 is killed.
    played = publish(8)
    stop = threading.Event()
    lock = threading.Lock()
    served = [0]
    wrong: list[str] = []

    def load(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            track_id, _, data = rng.choice(played)
            start = rng.randrange(len(data))
            end = min(start + rng.randrange(8 * TEST_SLICE_BYTES), len(data) - 1)
            try:
                _, body, _ = node.get(f"/v1/tracks/{track_id}/160", f"bytes={start}-{end}")
            except (OSError, http.client.HTTPException):
                continue  # the worker answering was killed
            with lock:
                served[0] += 1
                if body != data[start : end + 1]:
                    wrong.append(track_id)

    killed: int | None = None
    loaders = [threading.Thread(target=load, args=(seed,)) for seed in range(8)]
    for thread in loaders:
        thread.start()
    try:
        for _ in range(6):
            mark = served[0]
            deadline = time.monotonic() + 30
            while served[0] < mark + 40:  # worker 0 writes (and claims) slices meanwhile
                assert time.monotonic() < deadline, "the node stopped serving"
                time.sleep(0.02)
            killed = _wait_for_worker_0(node, port, killed)
            os.kill(killed, signal.SIGKILL)
        _wait_for_worker_0(node, port, killed)  # the last one killed is replaced
    finally:
        stop.set()
        for thread in loaders:
            thread.join(30)
    assert wrong == []
    _wait_accounted(node, port, disk_bytes)

    # Three times the bound of other slices, one per connection (so both workers write
    # several times their share): every file counted by a worker is evicted. A file of the
    # first tracks still there would be one that no worker counts, there for good.
    fresh = publish(12)
    requests = [(t, i) for t, _, _ in fresh for i in range(slices)]
    random.Random(7).shuffle(requests)

    def read_slice(request: tuple[str, int]) -> int:
        first = request[1] * TEST_SLICE_BYTES
        range_ = f"bytes={first}-{first + TEST_SLICE_BYTES - 1}"
        return node.get(f"/v1/tracks/{request[0]}/160", range_)[0]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(read_slice, requests)) == {206}
    old = [
        slice_path(node.cache, slice_name(key, TEST_SLICE_BYTES, index))
        for _, key, _ in played
        for index in range(slices)
    ]
    deadline = time.monotonic() + 15
    while left := [path for path in old if path.exists()]:
        assert time.monotonic() < deadline, f"{len(left)} slice files counted by no worker"
        time.sleep(0.05)
    _wait_accounted(node, port, disk_bytes)

    # Stopped (pending writes drained), the files are what they are: within the bound.
    node.process.send_signal(signal.SIGTERM)
    assert node.process.wait(30) == 0
    assert _file_bytes(node.cache) <= disk_bytes
    # A fresh start counts each file exactly once.
    again = start_node(**config)
    deadline = time.monotonic() + 15
    while True:
        stats = _admin_stats(port)
        if stats["workers_answering"] == 2 and all(
            w["disk"]["index_rebuilt"] for w in stats["workers"]
        ):
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.05)
    assert stats["totals"]["disk"]["bytes"] == _file_bytes(again.cache)
    assert stats["totals"]["disk"]["slices"] == len(again.slice_files())


# --- private files and folders -----------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
async def test_files_and_folders_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "var" / "cache"  # neither exists yet
    previous = os.umask(umask)
    try:
        tiers = _tiers(root, 64 * 1024**2)
        for tier in tiers:
            await tier.rebuild()
        for index in range(10):
            assert not await tiers[0].put("k", index, os.urandom(1000))
    finally:
        os.umask(previous)
    folders = [tmp_path / "var", root, *(p for p in root.rglob("*") if p.is_dir())]
    files = [p for p in root.rglob("*") if p.is_file()]
    assert {oct(_mode(p)) for p in folders} == {oct(0o700)}
    assert {oct(_mode(p)) for p in files} == {oct(0o600)}
    # Slice files and claim markers were among them (the temp files are those same inodes).
    assert {p.relative_to(root).parts[0] for p in files} == {"slices", "claims"}
    assert {"slices", "tmp", "claims"} <= {p.name for p in root.iterdir()}


async def test_an_older_installs_folders_are_made_private_at_startup(tmp_path: Path) -> None:
    for folder in ("slices", "slices/ab", "tmp"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder).chmod(0o755)
    old = tmp_path / "slices" / "ab" / ("ab" * 16)
    old.write_bytes(b"an old slice file")
    old.chmod(0o644)
    await _tiers(tmp_path, 64 * 1024**2, workers=1)[0].rebuild()
    assert _mode(tmp_path / "slices") == _mode(tmp_path / "tmp") == 0o700
    # Inside a 0700 folder, nobody else reaches the old 0644 files: they need no chmod.


async def test_a_verified_file_is_checksummed_again_only_once_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tier = DiskTier(tmp_path, 64 * 1024**2, 1000, "lru")
    data = os.urandom(1000)
    await tier.put("k", 0, data)
    path = slice_path(tmp_path, tier.name("k", 0))
    try:
        slice_files.read_cached(path)
    except BlockingIOError:
        pytest.skip("this file system cannot read with RWF_NOWAIT: every read is verified")
    summed: list[int] = []
    crc32 = zlib.crc32

    def counting(buffer: bytes, value: int = 0) -> int:
        summed.append(len(buffer))
        return crc32(buffer, value)

    monkeypatch.setattr(zlib, "crc32", counting)
    assert await tier.get("k", 0, 1000) == data  # first read: verified
    assert await tier.get("k", 0, 1000) == data  # verified, unchanged, in the page cache
    assert summed == [1000]
    flipped = bytearray(path.read_bytes())
    flipped[-1] ^= 0x01
    before = path.stat().st_mtime_ns
    path.write_bytes(flipped)
    os.utime(path, ns=(before + 10**9, before + 10**9))  # rewritten: a new identity
    assert await tier.get("k", 0, 1000) is None  # verified again, found damaged, dropped
    assert summed == [1000, 1000]
    assert not path.exists()


async def test_a_file_is_read_at_once_only_once_verified_and_while_unchanged(
    tmp_path: Path,
) -> None:
    tier = DiskTier(tmp_path, 64 * 1024**2, 1000, "lru")
    data = os.urandom(1000)
    await tier.put("k", 0, data)
    path = slice_path(tmp_path, tier.name("k", 0))
    try:
        slice_files.read_cached(path)
    except BlockingIOError:
        pytest.skip("this file system cannot read with RWF_NOWAIT: every read is verified")
    assert tier.read_now("k", 0, 1000) is None  # written here, never read back: not verified
    assert await tier.get("k", 0, 1000) == data
    assert tier.read_now("k", 0, 1000) == (tier.name("k", 0), data)
    assert tier.read_now("k", 1, 1000) is None  # no such file
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before + 10**9, before + 10**9))  # touched: a new identity
    assert tier.read_now("k", 0, 1000) is None
    assert await tier.get("k", 0, 1000) == data  # verified again
    assert tier.read_now("k", 0, 1000) is not None


def test_a_disk_hit_read_at_once_says_what_a_verified_read_says(
    tmp_path: Path,
    catalog: Catalog,
    start_edge: Callable[..., EdgeServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Verified before, unchanged and in the page cache, a slice file is read on the spot,
    without the thread hop of DiskTier.get; the answer, the counts and the tier are those of
    the first read, which verified it."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    try:
        slice_files.read_cached(probe)
    except BlockingIOError:
        pytest.skip("this file system cannot read with RWF_NOWAIT: every read is verified")
    data = os.urandom(3 * TEST_SLICE_BYTES + 500)
    path = f"/v1/tracks/{catalog.publish({'160': data}).track_id}/160"
    cache = _disk(tmp_path / "cache")
    edge = start_edge(cache={**cache, "memory_bytes": 0, "prefetch_slices": 0})
    assert edge.get(path).body == data  # from the origin, onto disk (memory is off)
    _disk_writes_done(edge)
    disk = edge.app.slices.disk
    assert disk is not None
    gets: list[int] = []
    verified_get = disk.get

    async def counting_get(object_key: str, index: int, length: int) -> Any:
        gets.append(index)
        return await verified_get(object_key, index, length)

    monkeypatch.setattr(disk, "get", counting_get)
    wanted = f"bytes={TEST_SLICE_BYTES + 10}-{2 * TEST_SLICE_BYTES + 9}"  # slices 1 and 2
    replies, counted = [], []
    for _ in range(2):
        before = edge.metric_samples()
        replies.append(edge.get(path, Range=wanted))
        after = edge.metric_samples()
        counted.append(
            {
                key: after[key] - before.get(key, 0)
                for key in after
                if key[0] in ("encore_cache_lookups_total", "encore_response_bytes_total")
                and after[key] != before.get(key, 0)
            }
        )
    assert gets == [1, 2]  # the first time only: verified then
    slow, at_once = replies
    assert at_once.body == slow.body == data[TEST_SLICE_BYTES + 10 : 2 * TEST_SLICE_BYTES + 10]
    assert (at_once.status, at_once.header("X-Cache"), at_once.header("X-Cache-Tier")) == (
        206,
        "HIT",
        "disk",
    )
    assert {k: v for k, v in at_once.headers.items() if k != "Date"} == {
        k: v for k, v in slow.headers.items() if k != "Date"
    }
    assert counted[0] == counted[1]  # the same lookups and bytes, by tier
    hits = ("encore_cache_lookups_total", frozenset({"tier": "disk", "result": "hit"}.items()))
    sent = ("encore_response_bytes_total", frozenset({"tier": "disk"}.items()))
    assert (counted[1][hits], counted[1][sent]) == (2, TEST_SLICE_BYTES)
