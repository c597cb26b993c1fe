"""A throwaway origin for benchmarks: a temp folder with ``rclone serve s3`` and one bucket;
the same folder over plain HTTP for nginx, which cannot sign S3 requests; and finding tools."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from origin.local_s3 import LocalS3, rclone_binary


@contextmanager
def local_origin(
    bucket: str, prefix: str = "encore-bench-", *, etag_hash: bool = True
) -> Iterator[tuple[Path, LocalS3]]:
    """(work folder, running S3 server with ``bucket``); credentials go into the environment
    so child edges and clients find them. Everything is removed on exit. ``etag_hash``:
    see :class:`LocalS3`."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp_name:
        tmp = Path(tmp_name)
        s3 = LocalS3(tmp / "s3", log_path=tmp / "rclone.log", etag_hash=etag_hash)
        s3.start()
        try:
            s3.create_bucket(bucket)
            os.environ.update(s3.credentials_env())
            yield tmp, s3
        finally:
            s3.stop()


def need_tool(tool: str, bench: str, install: str) -> str:
    """The path of ``tool`` (also looked for in /usr/sbin), or exit with an install hint."""
    path = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None
    )
    if path is None:
        sys.exit(f"{bench}: {tool} not found (apt-get install {install})")
    return path


def serve_folder_over_http(
    folder: Path, port: int, stderr: IO[bytes] | int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """``rclone serve http`` of ``folder`` on loopback: proper 206 answers to ranges, which
    nginx's slice module needs (``rclone serve s3`` answers them with 200)."""
    return subprocess.Popen(
        [rclone_binary(), "serve", "http", f"--addr=127.0.0.1:{port}", "--config=/dev/null",
         str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )  # fmt: skip


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every one still running, then wait for each (15 s, then SIGKILL)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
