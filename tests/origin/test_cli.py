"""``encore-origin`` as an operator runs it, against the real S3 server and real ffmpeg."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import S3Target


def _origin(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "origin", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **env},
        check=False,
    )


def test_demo_catalog_publishes_tracks_that_ls_lists(s3: S3Target) -> None:
    env = {"ENCORE_ORIGIN__ENDPOINT_URL": s3.endpoint_url, "ENCORE_ORIGIN__BUCKET": s3.bucket}
    made = _origin("demo-catalog", "--tracks", "1", "--seed", "7", **env)
    assert made.returncode == 0, made.stderr
    assert '"published": "demo-001"' in made.stdout
    listed = _origin("ls", **env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("demo-001"))
    assert "Demo tone 1" in row
    assert "96,160,320" in row


def test_errors_are_one_line_and_non_zero(s3: S3Target) -> None:
    unreachable = _origin(
        "ls",
        ENCORE_ORIGIN__ENDPOINT_URL="http://127.0.0.1:9",
        ENCORE_ORIGIN__CONNECT_TIMEOUT_S="0.5",
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("encore-origin: origin unreachable:")
    assert len(unreachable.stderr.strip().splitlines()) == 1
    no_bucket = _origin(
        "ls", ENCORE_ORIGIN__ENDPOINT_URL=s3.endpoint_url, ENCORE_ORIGIN__BUCKET="no-such-bucket"
    )
    assert no_bucket.returncode == 1
    assert no_bucket.stderr.startswith("encore-origin: origin refused: NoSuchBucket")
    bad_config = _origin("ls", ENCORE_ORIGIN__BUCKET="Bad_Bucket")
    assert bad_config.returncode == 1
    assert bad_config.stderr.strip() == (
        "encore-origin: ENCORE_ORIGIN__BUCKET (origin.bucket): "
        "'Bad_Bucket' is not an S3 bucket name"
    )
