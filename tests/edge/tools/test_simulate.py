"""The simulator: slicing requests as the edge does, hit ratios with known answers, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.tools.simulate import BELADY, simulate, slice_accesses
from edge.tools.traces import parse_trace


def test_requests_become_the_slices_that_cover_them() -> None:
    # 2500-byte object, 1000-byte slices: bytes 900-2099 touch slices 0, 1 and 2
    accesses = slice_accesses(parse_trace(["0 obj 2500 900 1200"]), 1000)
    assert [key & 0xFFFFFF for key in accesses.keys] == [0, 1, 2]
    assert list(accesses.sizes) == [1000, 1000, 500]  # the tail slice is short
    assert list(accesses.wanted) == [100, 1000, 100]
    assert accesses.footprint == 2500


def test_hit_ratios_on_a_trace_with_a_known_answer() -> None:
    # Three 1000-byte objects read whole, twice over, through a 2000-byte cache.
    trace = parse_trace([f"{n} {key} 1000" for n, key in enumerate("abcabc")])
    accesses = slice_accesses(trace, 1000)
    lru = simulate(accesses, "lru", 2000)
    assert (lru.object_hit_ratio, lru.byte_hit_ratio) == (0.0, 0.0)  # LRU's worst case
    # Belady keeps a and b, bypasses c (needed last): a and b hit the second time round.
    optimum = simulate(accesses, BELADY, 2000)
    assert optimum.object_hit_ratio == pytest.approx(2 / 6)
    everything = simulate(accesses, "s3fifo", 3000)
    assert everything.byte_hit_ratio == pytest.approx(0.5)  # all second reads hit


def test_byte_hit_ratio_counts_only_requested_bytes() -> None:
    trace = parse_trace(["0 a 4000", "1 a 4000 0 10"])  # whole, then 10 bytes of slice 0
    result = simulate(slice_accesses(trace, 1000), "lru", 10_000)
    assert result.object_hit_ratio == pytest.approx(1 / 5)
    assert result.byte_hit_ratio == pytest.approx(10 / 4010)


def _simulate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_prints_json_per_policy_and_size(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    trace.write_text("".join(f"{n} t{n % 7} 600000 0 300000\n" for n in range(200)))
    result = _simulate_cli(
        "--trace", str(trace), "--cache-size", "10%,1MiB", "--policy", "s3fifo,lru,belady",
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["default_policy"] == "s3fifo"
    assert [(r["policy"], r["cache_bytes"]) for r in doc["results"]] == [
        ("s3fifo", 367_001),
        ("lru", 367_001),
        ("belady", 367_001),
        ("s3fifo", 1_048_576),
        ("lru", 1_048_576),
        ("belady", 1_048_576),
    ]
    assert doc["footprint_bytes"] == 7 * 2 * 262_144  # two 256 KiB slices of 7 objects
    assert all(0 <= r["byte_hit_ratio"] <= 1 for r in doc["results"])
    text = _simulate_cli("--trace", str(trace), "--cache-size", "50%")
    assert text.returncode == 0, text.stderr
    assert "s3fifo" in text.stdout
    assert "(default)" in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cache-size", "lots"], "--cache-size: expected a size"),
        (["--cache-size", "0%"], "above 0% and at most 100%"),
        (["--cache-size", "1%", "--policy", "arc"], "unknown policy 'arc'"),
        (["--cache-size", "1%", "--slice-bytes", "12"], "--slice-bytes must be at least 1KiB"),
    ],
)
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    trace = tmp_path / "trace.txt"
    trace.write_text("0 a 1000\n")
    result = _simulate_cli("--trace", str(trace), *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


def test_cli_on_a_missing_trace(tmp_path: Path) -> None:
    result = _simulate_cli("--trace", str(tmp_path / "none.txt"), "--cache-size", "1%")
    assert result.returncode == 1
    assert "No such file or directory" in result.stderr
