"""Track lists, Zipf popularity and listening habits (skips, seeks), on a seeded random."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from loadtests.listener_behaviour import Habits, Popularity, draw_plan, parse_tracks


def test_track_ids_come_comma_separated_or_from_a_file(tmp_path: Path) -> None:
    assert parse_tracks(" a-1, b_2 ,,c3") == ["a-1", "b_2", "c3"]
    listing = tmp_path / "top.txt"
    listing.write_text("# top tracks\ndemo-001 1200 plays\n\ndemo-002  # new\n")
    assert parse_tracks(f"@{listing}") == ["demo-001", "demo-002"]
    with pytest.raises(ValueError, match="not a track id"):
        parse_tracks("ok,../etc")
    with pytest.raises(ValueError, match="cannot read"):
        parse_tracks(f"@{tmp_path / 'missing.txt'}")
    with pytest.raises(ValueError, match="no track ids"):
        parse_tracks(" , ")


def test_zipf_popularity_favours_the_head_of_the_list() -> None:
    tracks = [f"t{i}" for i in range(1, 11)]
    popularity = Popularity.parse(tracks, "zipf:1.0")
    rng = random.Random(7)
    counts = Counter(popularity.draw(rng) for _ in range(20_000))
    harmonic = sum(1 / k for k in range(1, 11))
    assert counts["t1"] / 20_000 == pytest.approx(1 / harmonic, abs=0.02)
    assert counts["t1"] / counts["t2"] == pytest.approx(2, rel=0.1)
    flat = Popularity.parse(tracks, "zipf:0")
    flat_counts = Counter(flat.draw(rng) for _ in range(20_000))
    assert max(flat_counts.values()) / min(flat_counts.values()) < 1.2
    with pytest.raises(ValueError, match="zipf:S"):
        Popularity.parse(tracks, "uniform")


def test_the_next_track_is_another_one_when_there_is_another() -> None:
    rng = random.Random(1)
    popularity = Popularity(["hit", "other"], exponent=3.0)
    assert all(popularity.draw(rng, instead_of="hit") == "other" for _ in range(50))
    assert Popularity(["only"], 1.0).draw(rng, instead_of="only") == "only"


def test_a_share_of_plays_stop_within_30_seconds_and_some_seek() -> None:
    rng = random.Random(3)
    habits = Habits()
    plans = [draw_plan(rng, 200.0, habits) for _ in range(10_000)]
    early = sum(p.stop_s <= 30 for p in plans) / len(plans)
    skipped = sum(p.skipped(200.0) for p in plans) / len(plans)
    seeking = [p for p in plans if p.seek_at_s is not None]
    assert early == pytest.approx(habits.early_skip_share, abs=0.02)
    assert skipped == pytest.approx(habits.early_skip_share + habits.late_skip_share, abs=0.02)
    assert len(seeking) / len(plans) == pytest.approx(habits.seek_share, abs=0.02)
    for plan in seeking:
        assert plan.seek_at_s is not None
        assert plan.seek_to_s is not None
        assert plan.seek_at_s < plan.stop_s
        assert plan.seek_to_s < plan.stop_s
    assert all(draw_plan(rng, 5.0).stop_s <= 5.0 for _ in range(100))
