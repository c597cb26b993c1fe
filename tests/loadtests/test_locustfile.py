"""The locustfile as a load tester runs it: a headless Locust subprocess against a real edge
process in front of the real S3 server, serving tracks ingested with real ffmpeg; once with
plain URLs in one process, once with signed URLs and two worker processes (the QoE samples
then reach the report through the master)."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from origin.ingest import IngestJob, ingest
from origin.ladder import parse_ladder
from origin.license import LicenseChange
from origin.s3 import open_s3_client
from tests.conftest import S3Target, make_settings
from tests.support.audio import make_source
from tests.support.edge_node import Node

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "loadtests" / "locustfile.py"
TRACK_SECONDS = 16
SPEED = 16  # a track plays in about a second: a 10 s run holds some 100 plays
LADDER = parse_ladder(["vorbis:96", "vorbis:160", "vorbis:320"])
KID = "load"
SECRET = "load-test-signing-secret-0123456789"


@pytest.fixture(scope="module")
def tracks(s3: S3Target, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two tracks ingested as ``encore-origin ingest`` does, licensed everywhere."""
    workdir = tmp_path_factory.mktemp("load-catalogue")
    ids = [f"load-{uuid.uuid4().hex[:8]}" for _ in range(2)]

    async def run() -> None:
        settings = make_settings(s3.endpoint_url, s3.bucket)
        async with open_s3_client(settings.origin) as client:
            for number, track_id in enumerate(ids):
                source = make_source(
                    workdir / f"{track_id}.flac", TRACK_SECONDS, frequency=330 + 110 * number
                )
                job = IngestJob(
                    source=source, track_id=track_id, license=LicenseChange(allow=("*",))
                )
                await ingest(
                    client, s3.bucket, job, ladder=LADDER, part_bytes=settings.ingest.part_bytes
                )

    asyncio.run(run())
    return ids


def run_locust(node: Node, tracks: list[str], out: Path, *extra: str) -> dict[str, Any]:
    """Run Locust to completion (bounded: 10 listeners, 10 s); the parsed QoE report."""
    report = out / "qoe.json"
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", "10", "-r", "10", "-t", "10s", "--host", node.url, "--csv", str(out / "run"),
        "--only-summary", "--tracks", ",".join(tracks), "--popularity", "zipf:1.0",
        "--speed", str(SPEED), "--region", "SE", "--qoe-report", str(report), *extra,
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert report.is_file(), output[-4000:]
    return dict(json.loads(report.read_text()))


def check_csv(out: Path) -> None:
    with (out / "run_stats.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert all(row["Failure Count"] == "0" for row in rows), rows
    real = {row["Name"]: int(row["Request Count"]) for row in rows if row["Type"] == "GET"}
    assert set(real) == {"manifest", "header", "range"}, real  # named by kind, not by track
    assert real["range"] > real["manifest"] > 0
    quality = {row["Name"] for row in rows if row["Type"] == "qoe"}
    assert "startup" in quality, quality
    with (out / "run_failures.csv").open() as fh:
        assert len(list(csv.reader(fh))) == 1  # the header line only
    assert (out / "run_stats_history.csv").is_file()


def check_report(report: dict[str, Any], out: Path) -> None:
    assert report["listeners"]["max"] == 10
    assert report["plays"] > 10, report["plays_by_end"]
    assert report["startup_s"]["count"] > 0
    assert 0 < report["startup_s"]["p50"] <= report["startup_s"]["p99"] < 10
    assert report["play_time_s"] > 0
    assert report["audio_played_s"] == pytest.approx(report["play_time_s"] * SPEED, rel=0.05)
    assert 0 <= report["rebuffer_ratio"] < 1
    assert 96 <= report["mean_bitrate_kbps"] <= 320
    assert sum(report["bitrate_mix"].values()) == pytest.approx(1)
    assert set(report["requests"]) == {"manifest", "header", "range"}
    assert report["failures"] == {}
    assert report["ttfb_s"]["range"]["p50"] > 0
    for name in report["plots"].values():
        assert (out / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), name


def check_player_metrics(node: Node, report: dict[str, Any]) -> None:
    """The edge's CMCD metrics moved as the listeners reported: every request carried CMCD."""
    sent = sum(report["requests"].values())
    counted = node.metric("encore_player_cmcd_requests_total")
    assert 0.9 * sent <= counted <= sent + 20, (counted, sent)  # the last ones may be cut
    assert node.metric("encore_player_cmcd_malformed_total") == 0
    assert node.metric("encore_player_startup_requests_total") >= report["startup_s"]["count"]
    assert node.metric("encore_player_requested_bitrate_kbps_count") > 0
    assert node.metric("encore_player_buffer_length_seconds_count") > 0
    if report["stalls"] == 0:
        assert node.metric("encore_player_stall_requests_total") == 0


def test_listeners_play_from_a_real_edge_and_report_their_qoe(
    start_node: Callable[..., Node], tracks: list[str], tmp_path: Path
) -> None:
    node = start_node(workers=1)
    out = tmp_path / "plain"
    report = run_locust(node, tracks, out)
    check_csv(out)
    check_report(report, out)
    check_player_metrics(node, report)
    log = node.log.read_text()
    assert "CMCD=" in log
    assert "sid%3D%22" in log
    assert node.metric("encore_next_track_hints_total", outcome="accepted") > 0


def test_signed_listeners_in_two_worker_processes(
    start_node: Callable[..., Node], tracks: list[str], tmp_path: Path
) -> None:
    node = start_node(workers=1, extra_toml=f'[auth]\nsigning_keys = {{{KID} = "{SECRET}"}}\n')
    out = tmp_path / "signed"
    report = run_locust(node, tracks, out, "--sign-config", str(node.config), "--processes", "2")
    check_csv(out)
    check_report(report, out)
    check_player_metrics(node, report)
    assert node.metric("encore_signature_rejections_total") == 0
    # A hint is honoured only when it is itself a validly signed URL.
    assert node.metric("encore_next_track_hints_total", outcome="accepted") > 0
    assert node.metric("encore_next_track_hints_total", outcome="unsigned") == 0
