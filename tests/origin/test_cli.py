"""``encore-origin`` as a whole: the demo catalogue, and errors that are one line each."""

from __future__ import annotations

import json

from tests.origin.conftest import OriginCli, one_error_line


def test_demo_catalog_ingests_distinct_tracks_with_a_spread_of_licences(
    origin_cli: OriginCli,
) -> None:
    made = origin_cli("demo-catalog", "--tracks", "3", "--seed", "7", "--durations", "3-6")
    assert made.returncode == 0, made.stderr
    for n in (1, 2, 3):
        assert f"published demo-00{n}" in made.stdout
    listed = json.loads(origin_cli("ls", "--json").stdout)
    demo = {t["track_id"]: t for t in listed["tracks"] if t["track_id"].startswith("demo-")}
    assert set(demo) == {"demo-001", "demo-002", "demo-003"}
    manifests = [origin_cli.manifest(track_id) for track_id in sorted(demo)]
    assert len({m.renditions["320"].sha256 for m in manifests}) == 3  # distinct audio
    assert all(3 <= m.duration_s <= 6.05 for m in manifests)
    licences = [m.license for m in manifests]
    assert all(licence is not None for licence in licences)
    assert len(set(licences)) == 3
    assert licences[0] is not None
    assert licences[0].allow == ("*",)  # the first plays everywhere, for the demo's first URL


def test_demo_catalog_checks_its_arguments(origin_cli: OriginCli) -> None:
    too_few = origin_cli("demo-catalog", "--tracks", "0")
    assert "expected a number of tracks from 1 to 10000" in one_error_line(too_few)
    assert too_few.returncode == 2
    assert "expected MIN-MAX seconds" in one_error_line(
        origin_cli("demo-catalog", "--durations", "300-30")
    )


def test_errors_are_one_line_and_non_zero(origin_cli: OriginCli) -> None:
    unreachable = origin_cli(
        "ls",
        ENCORE_ORIGIN__ENDPOINT_URL="http://127.0.0.1:9",
        ENCORE_ORIGIN__CONNECT_TIMEOUT_S="0.5",
    )
    assert one_error_line(unreachable).startswith("encore-origin: origin unreachable:")
    assert unreachable.returncode == 1
    no_bucket = origin_cli("ls", ENCORE_ORIGIN__BUCKET="no-such-bucket")
    assert one_error_line(no_bucket) == "encore-origin: bucket 'no-such-bucket' does not exist"
    bad_config = origin_cli("ls", ENCORE_ORIGIN__BUCKET="Bad_Bucket")
    assert one_error_line(bad_config) == (
        "encore-origin: ENCORE_ORIGIN__BUCKET (origin.bucket): "
        "'Bad_Bucket' is not an S3 bucket name"
    )
    usage = origin_cli("frobnicate")
    assert usage.returncode == 2
    assert "invalid choice: 'frobnicate'" in one_error_line(usage)
