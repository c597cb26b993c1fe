"""A throwaway origin for benchmarks: a temp folder with ``rclone serve s3`` and one bucket."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from origin.local_s3 import LocalS3


@contextmanager
def local_origin(bucket: str, prefix: str = "encore-bench-") -> Iterator[tuple[Path, LocalS3]]:
    """(work folder, running S3 server with ``bucket``); credentials go into the environment
    so child edges and clients find them. Everything is removed on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp_name:
        tmp = Path(tmp_name)
        s3 = LocalS3(tmp / "s3", log_path=tmp / "rclone.log")
        s3.start()
        try:
            s3.create_bucket(bucket)
            os.environ.update(s3.credentials_env())
            yield tmp, s3
        finally:
            s3.stop()
