"""The pure parts of loadtests.bench_listeners: its origin proxy's byte count and identity
heads, the CPU peak, the per-pass numbers, the targets and the report; and nginx's view of a
real ingested manifest."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loadtests import bench_listeners as bench
from loadtests import bench_listeners_origin as bench_origin
from loadtests import bench_listeners_report as bench_report
from loadtests.bench_hit_path import fetch
from origin import layout
from origin.license import License
from origin.manifest import Manifest, Rendition, parse_manifest
from origin.seek_table import SeekTable
from tests.support.tcp_proxy import Faults


def qoe(**overrides: Any) -> dict[str, Any]:
    """A QoE report as loadtests.qoe_report writes it (the fields the bench reads)."""
    report: dict[str, Any] = {
        "plays": 40,
        "startup_s": {"count": 38, "mean": 0.06, "p50": 0.005, "p95": 0.112, "p99": 0.2},
        "ttfb_s": {"range": {"count": 900, "p50": 0.002, "p95": 0.0061, "p99": 0.01}},
        "rebuffer_ratio": 0.0004,
        "stalls": 1,
        "stall_time_s": 0.04,
        "play_time_s": 100.0,
        "failures": {"range: HTTP 503": 2},
        "mean_bitrate_kbps": 301.4,
        "requests": {"manifest": 40, "header": 60, "range": 900},
    }
    report.update(overrides)
    return report


# --- the proxy -----------------------------------------------------------------------------------


def test_without_header_drops_every_line_of_that_name_whatever_its_case() -> None:
    head = (
        b"GET /a HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nRange: bytes=0-1\r\n"
        b"accept-encoding: br\r\n\r\n"
    )
    assert bench_origin.without_header(head, b"Accept-Encoding") == (
        b"GET /a HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n"
    )
    assert bench_origin.without_header(head, b"X-None") == head


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers with the Accept-Encoding it got (or "none"), in a 1000-byte body."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = (self.headers.get("Accept-Encoding") or "none").encode().ljust(1000, b".")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("identity", [False, True])
def test_the_counting_proxy_counts_requests_gets_and_bytes(echo_port: int, identity: bool) -> None:
    proxy = bench_origin.CountingProxy(
        "127.0.0.1", echo_port, Faults(latency_s=0.05), identity=identity
    )
    proxy.start()
    try:
        before = proxy.snapshot()
        bodies = [fetch(proxy.url + "/x", {"Accept-Encoding": "gzip"}) for _ in range(3)]
        delta = bench_origin.origin_delta(proxy, before)
    finally:
        proxy.stop()
    assert {body[:4] for body in bodies} == {b"none" if identity else b"gzip"}
    assert delta["requests"] == delta["gets"] == 3
    assert 3 * 1000 < delta["bytes"] < 3 * 1300  # bodies and heads
    assert delta["cold_tracks"] == 0
    assert 50 <= delta["ttfb_p50_ms"] <= delta["ttfb_p95_ms"] < 1000  # the 50 ms included


# --- CPU -----------------------------------------------------------------------------------------


def test_peak_share_is_the_busiest_window() -> None:
    # 0.2 cores for 10 s, then 0.9 cores for 5 s, then idle.
    samples = [(float(t), 0.2 * min(t, 10)) for t in range(11)]
    samples += [(10.0 + t, 2.0 + 0.9 * t) for t in range(1, 6)]
    samples += [(15.0 + t, 6.5) for t in range(1, 5)]
    assert bench_report.peak_share(samples) == pytest.approx(0.9)
    assert bench_report.peak_share(samples, window_s=100) == pytest.approx(6.5 / 19)
    assert bench_report.peak_share(samples[:1]) == 0.0
    assert bench_report.peak_share([(0.0, 0.0), (2.0, 1.0)]) == pytest.approx(0.5)  # shorter span


def test_busy_share() -> None:
    assert bench_report.busy_share((100, 1000), (150, 1100)) == 0.5
    assert bench_report.busy_share((100, 1000), (100, 1000)) is None


# --- numbers and targets -------------------------------------------------------------------------


def test_pass_row_in_milliseconds() -> None:
    row = bench_report.pass_row(qoe())
    assert row["startup_p95_ms"] == 112.0
    assert row["range_ttfb_p95_ms"] == 6.1
    assert row["failures"] == 2
    assert row["requests"] == 1000
    assert row["mean_kbps"] == 301
    empty = bench_report.pass_row(
        qoe(
            startup_s={"count": 0, "mean": None, "p50": None, "p95": None, "p99": None},
            ttfb_s={},
            rebuffer_ratio=None,
            mean_bitrate_kbps=None,
        )
    )
    assert empty["startup_p95_ms"] is None
    assert empty["range_ttfb_p95_ms"] is None
    assert empty["mean_kbps"] is None


def test_targets_two_round_trips_plus_the_warm_ttfb() -> None:
    cold, warm = bench_report.pass_row(qoe()), bench_report.pass_row(qoe())
    met = bench_report.targets(cold, warm, round_trip_ms=53.0)
    assert met == {"startup_budget_ms": 112.1, "startup_ok": True, "rebuffer_ok": True}
    slow = bench_report.pass_row(qoe(startup_s={**qoe()["startup_s"], "p95": 0.113}))
    assert not bench_report.targets(slow, warm, round_trip_ms=53.0)["startup_ok"]
    stalling = bench_report.pass_row(qoe(rebuffer_ratio=0.0011))
    assert not bench_report.targets(stalling, warm, 53.0)["rebuffer_ok"]
    no_warm = bench_report.pass_row(qoe(ttfb_s={}))
    assert bench_report.targets(cold, no_warm, 53.0) == {
        "startup_budget_ms": None,
        "startup_ok": False,
        "rebuffer_ok": True,
    }


def test_pooled_rebuffer_weighs_rounds_by_play_time() -> None:
    rows = [
        bench_report.pass_row(qoe(stall_time_s=1.0, play_time_s=100.0)),
        bench_report.pass_row(qoe(stall_time_s=0.0, play_time_s=300.0)),
    ]
    assert bench_report.pooled_rebuffer(rows) == pytest.approx(1 / 400)
    assert bench_report.pooled_rebuffer([]) is None


def _pass(report: dict[str, Any], peak: float = 0.5) -> dict[str, Any]:
    return {
        "qoe": report,
        "row": bench_report.pass_row(report),
        "origin": {
            "requests": 50,
            "gets": 48,
            "bytes": 20 * 1024**2,
            "cold_tracks": 30,
            "ttfb_p50_ms": 55.0,
            "ttfb_p95_ms": 70.0,
        },
        "server_cpu_s": 12.5,
        "locust": {"share": 0.4, "peak_share": peak, "processes": 1},
        "machine_busy": 0.8,
    }


def _document() -> dict[str, Any]:
    args = bench.parse_args(["--listeners", "20", "--rounds", "1"])
    rounds = []
    for server, startup_p95, peak in (("edge", 0.2, 0.95), ("nginx", 0.3, 0.5)):
        cold = _pass(qoe(startup_s={**qoe()["startup_s"], "p95": startup_p95}), peak)
        warm = _pass(qoe())
        rounds.append(
            {
                "server": server,
                "round": 1,
                "cold": cold,
                "warm": warm,
                "targets": bench_report.targets(cold["row"], warm["row"], 53.0),
            }
        )
    return {
        "command": "python -m loadtests.bench_listeners " + " ".join(args.argv),
        "config": {
            "listeners": 20,
            "spawn_rate": 2.0,
            "speed": 10.0,
            "popularity": "zipf:1.0",
            "tracks": 16,
            "copies": 30,
            "track_seconds": "30-45",
            "latency_ms": 50.0,
            "seconds": 60,
            "warm_seconds": 20,
            "rounds": 1,
            "workers": 2,
            "locust_processes": 1,
            "cpus": 2,
        },
        "catalogue": {"size": 480, "audio_s": 600, "ingest_s": 80.0},
        "origin_round_trip_ms": 53.0,
        "machine_busy_before": 0.05,
        "rounds": rounds,
    }


def test_missed_names_only_the_edge() -> None:
    assert bench_report.missed(_document()["rounds"]) == ["round 1: startup p95 200 ms > 112.1 ms"]


def test_the_table_shows_both_servers_the_command_and_a_client_bound_pass() -> None:
    text = bench_report.table(_document())
    assert text.startswith("command: python -m loadtests.bench_listeners --listeners 20")
    assert "edge 1" in text
    assert "nginx 1" in text
    assert "edge targets: round 1: rebuffer 0.040% <= 0.1% ok, startup p95 200 <= " in text
    assert "= 112.1 MISS" in text
    assert "nginx, same formula (not checked): round 1: " in text
    assert "95%*" in text  # the edge pass's Locust peak, marked client-bound
    assert "client-bound cold passes: edge 1" in text


# --- options and the catalogue -------------------------------------------------------------------


def test_options_defaults_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    args = bench.parse_args([])
    assert (args.listeners, args.speed, args.latency_ms) == (200, 10, 50)
    assert args.spawn_rate == 20
    assert args.track_seconds == (30, 45)
    assert (args.tracks, args.copies) == (16, 30)
    assert args.only == ["edge", "nginx"]
    assert bench.parse_args(["--track-seconds", "40"]).track_seconds == (40, 40)
    for bad in (["--track-seconds", "50-40"], ["--only", "varnish"], ["--seconds", "2"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
    with pytest.raises(SystemExit):
        bench.parse_args(["--check", "--only", "nginx"])
    capsys.readouterr()


def test_locust_command_carries_the_population() -> None:
    args = bench.parse_args(["--listeners", "50", "--locust-processes", "2"])
    args.tracks_file = "/tmp/t.txt"
    command = bench.locust_command(args, "http://127.0.0.1:1", 60, bench.REPO)
    joined = " ".join(command)
    assert "-u 50 -r 5 -t 60s --host http://127.0.0.1:1" in joined
    assert "--tracks @/tmp/t.txt --popularity zipf:1.0 --speed 10" in joined
    assert command[-2:] == ["--processes", "2"]


def test_manifest_tracks_from_either_origin() -> None:
    paths = [
        "/audio/tracks/cold-001/manifest.json",
        "/audio/tracks/cold-001/manifest.json",  # the other edge worker
        "/audio/tracks/cold-002-c03/320-" + "a" * 64 + ".ogg",
        "/v1/tracks/cold-004?CMCD=cid%3D%22cold-004%22",
        "/v1/tracks/cold-005",
        "/tracks/cold-006/160-" + "b" * 64 + ".ogg",
        "/ready.txt",
    ]
    assert bench_origin.manifest_tracks(paths) == {"cold-001", "cold-004", "cold-005"}


def test_track_lengths_are_reproducible_and_in_range() -> None:
    lengths = bench_origin.track_lengths(50, 30, 45, seed=3)
    assert lengths == bench_origin.track_lengths(50, 30, 45, seed=3)
    assert all(30 <= n <= 45 for n in lengths)
    assert len(set(lengths)) > 1


def test_nginx_view_is_the_edge_view_with_bucket_urls() -> None:
    table = SeekTable.from_points(4000, [(0.0, 4000), (1.0, 20000)])
    rendition = Rendition(
        name="160",
        key="tracks/t-1/160-" + "a" * 64 + ".ogg",
        content_type="audio/ogg; codecs=vorbis",
        codec="vorbis",
        bitrate_kbps=160,
        measured_kbps=158.0,
        size=40000,
        sha256="a" * 64,
        sample_rate=44100,
        channels=2,
        duration_s=2.0,
        seek_table=table,
    )
    manifest = Manifest(
        track_id="t-1",
        title="T",
        artist="A",
        duration_s=2.0,
        published_at=datetime(2026, 1, 1, tzinfo=UTC),
        renditions={"160": rendition},
        license=License(("*",)),
    )
    view = bench_origin.nginx_view(manifest.to_json(), "t-1")
    assert [r["url"] for r in view["renditions"]] == ["/tracks/t-1/160-" + "a" * 64 + ".ogg"]
    assert view["renditions"][0]["seek_table"] == table.to_doc()
    assert "license" not in view


def test_copies_are_tracks_of_their_own_with_the_same_audio(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    table = SeekTable.from_points(10, [(0.0, 10)])
    audio = b"OggS" + bytes(96)
    key = f"tracks/t-1/96-{hashlib.sha256(audio).hexdigest()}.ogg"
    (bucket / "tracks" / "t-1").mkdir(parents=True)
    (bucket / key).write_bytes(audio)
    rendition = Rendition(
        "96", key, "audio/ogg; codecs=vorbis", "vorbis", 96, 96.0, len(audio),
        hashlib.sha256(audio).hexdigest(), 44100, 2, 1.0, table,
    )  # fmt: skip
    manifest = Manifest(
        "t-1", "T", "A", 1.0, datetime(2026, 1, 1, tzinfo=UTC), {"96": rendition}, License(("*",))
    )
    (bucket / layout.manifest_key("t-1")).write_bytes(manifest.to_json())
    ids = bench_origin.publish_copies(bucket, ["t-1"], copies=3)
    assert ids == ["t-1", "t-1-c02", "t-1-c03"]
    for copy_id in ids[1:]:
        copy = parse_manifest((bucket / layout.manifest_key(copy_id)).read_bytes(), copy_id)
        copied = copy.renditions["96"]
        assert copied.key.startswith(f"tracks/{copy_id}/96-")
        assert (bucket / copied.key).read_bytes() == audio
        assert copied.seek_table == table
        assert copy.license == manifest.license
    assert bench_origin.publish_copies(bucket, ["t-1"], copies=1) == ["t-1"]
