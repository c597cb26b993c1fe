"""The manifest and its JSON Schema: what the write side refuses to upload and the read side
refuses to trust."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from origin import layout
from origin.license import License
from origin.manifest import MAX_MANIFEST_BYTES, Manifest, ManifestError, Rendition, parse_manifest
from origin.manifest_schema import REGION_CODES, SCHEMA, check
from origin.seek_table import SeekTable

HASH = "ab" * 32


def _rendition(size: int = 50_000) -> Rendition:
    return Rendition(
        name="96",
        key=layout.audio_key("t1", "96", HASH, "ogg"),
        content_type="audio/ogg; codecs=vorbis",
        codec="vorbis",
        bitrate_kbps=96,
        measured_kbps=97.1,
        size=size,
        sha256=HASH,
        sample_rate=44_100,
        channels=2,
        duration_s=12.5,
        seek_table=SeekTable.from_points(4000, [(0.0, 4000), (0.503, 9000), (1.2, 20_000)]),
    )


def _manifest(**changes: Any) -> Manifest:
    manifest = Manifest(
        track_id="t1",
        title="Song",
        artist="Band",
        duration_s=12.5,
        published_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        renditions={"96": _rendition()},
        license=License(
            allow=("SE", "NO"),
            deny=(),
            not_before=datetime(2026, 1, 1, tzinfo=UTC),
            not_after=None,
        ),
    )
    return replace(manifest, **changes)


def _doc() -> dict[str, Any]:
    return dict(json.loads(_manifest().to_json()))


def test_round_trip_keeps_licence_and_seek_tables() -> None:
    manifest = _manifest()
    parsed = parse_manifest(manifest.to_json(), "t1")
    assert parsed == manifest
    assert list(parsed.renditions["96"].seek_table.points()) == [
        (0.0, 4000),
        (0.503, 9000),
        (1.2, 20_000),
    ]
    assert _doc()["license"] == {
        "allow": ["SE", "NO"],
        "deny": [],
        "not_before": "2026-01-01T00:00:00Z",
        "not_after": None,
    }


def test_a_manifest_without_a_licence_is_valid_and_says_so() -> None:
    parsed = parse_manifest(_manifest(license=None).to_json(), "t1")
    assert parsed.license is None


def test_etag_is_the_content_hash() -> None:
    assert _manifest().renditions["96"].etag == f'"{HASH}"'


def test_same_content_ignores_only_the_publication_time() -> None:
    manifest = _manifest()
    assert manifest.same_content(replace(manifest, published_at=datetime.now(UTC)))
    assert not manifest.same_content(replace(manifest, title="Other"))
    assert not manifest.same_content(replace(manifest, license=None))


def _rendition_doc(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc["renditions"]["96"])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema=2), "schema: 1 was expected"),
        (lambda d: d.pop("title"), "'title' is a required property"),
        (lambda d: d.update(extra=1), "Additional properties"),
        (lambda d: d.update(track_id="t2"), "does not match 't1'"),
        (lambda d: d.update(duration_s=True), "duration_s: True is not of type 'number'"),
        (lambda d: d.update(duration_s=-1), "duration_s: -1 is less than the minimum"),
        (lambda d: d.update(published_at="2026-01-02T03:04:05"), "published_at: "),
        (lambda d: d.update(published_at="soon"), "published_at: "),
        (lambda d: d.update(renditions={}), "renditions: {} should be non-empty"),
        (lambda d: d["renditions"]["96"].update(key="tracks/other/96-x.ogg"), "renditions.96.key"),
        (lambda d: d["renditions"]["96"].update(key="../../etc/passwd"), "renditions.96.key"),
        (
            lambda d: d["renditions"]["96"].update(
                key=layout.audio_key("t1", "96", "cd" * 32, "ogg")
            ),
            "renditions.96.key: ",
        ),
        (lambda d: d["renditions"]["96"].update(size=-1), "renditions.96.size"),
        (lambda d: d["renditions"]["96"].update(sha256="nothex"), "renditions.96.sha256"),
        (lambda d: d["renditions"]["96"].update(codec="mp3"), "renditions.96.codec"),
        (lambda d: d["renditions"].update({"../x": d["renditions"]["96"]}), "renditions: "),
        (lambda d: d["license"].update(allow=["XX"]), "license.allow.0: 'XX' is not valid"),
        (lambda d: d["license"].update(allow=["se"]), "license.allow.0"),
        (lambda d: d["license"].update(deny="SE"), "license.deny: 'SE' is not of type 'array'"),
        (lambda d: d["license"].pop("allow"), "'allow' is a required property"),
        (
            lambda d: d["license"].update(not_after="2025-01-01T00:00:00Z"),
            "license: not_before .* must be earlier than not_after",
        ),
        (
            lambda d: d["renditions"]["96"]["seek_table"].update(points=[[0, 4000], [1, 3999]]),
            "renditions.96.seek_table.points.1: offsets must rise",
        ),
        (
            lambda d: d["renditions"]["96"]["seek_table"].update(points=[[0, 4000], [1, 50_000]]),
            "renditions.96.seek_table.points.1: offsets must rise within the object",
        ),
        (
            lambda d: d["renditions"]["96"]["seek_table"].update(points=[[2, 4000], [1, 5000]]),
            "times must not fall",
        ),
        (
            lambda d: d["renditions"]["96"]["seek_table"].update(points=[[0, 4000, 1]]),
            "renditions.96.seek_table.points.0",
        ),
        (
            lambda d: d["renditions"]["96"]["seek_table"].update(header_bytes=60_000),
            "header_bytes: not a byte count within the object",
        ),
        # What the schema lets through and the code must still refuse:
        (lambda d: d.update(published_at="2026-13-45T99:99:99Z"), "published_at: .* not a date"),
        (lambda d: d["license"].update(not_after="2026-02-30T00:00:00Z"), "license: "),
        (lambda d: d["renditions"]["96"].update(size=50_000.0), "renditions.96.size: 50000.0"),
        (lambda d: d["renditions"]["96"].update(channels=2.0), "renditions.96.channels"),
        (lambda d: d["renditions"]["96"].update(sha256="ab" * 32 + "\n"), "renditions.96"),
        (
            lambda d: d["renditions"]["96"].update(content_type="audio/ogg\n"),
            "renditions.96.content_type: .* is not a media type",
        ),
        (lambda d: d["renditions"].update({"96\n": d["renditions"]["96"]}), "renditions"),
        (
            lambda d: d["renditions"]["96"]["seek_table"].update(points=[[0, 4000.0]]),
            "seek_table.points.0: expected \\[seconds, byte offset\\]",
        ),
        (
            lambda d: d["renditions"]["96"]["seek_table"].update(points=[[True, 4000]]),
            "seek_table.points.0",
        ),
        (
            lambda d: d["renditions"]["96"]["seek_table"].update(points=[[0, 2**70]]),
            "seek_table.points.0",
        ),
        (
            lambda d: d["renditions"]["96"]["seek_table"].update(points=[[1e300, 4000]]),
            "seek_table.points.0",
        ),
        (lambda d: d["renditions"]["96"]["seek_table"].update(points="0,4000"), "points"),
    ],
)
def test_read_side_rejects_bad_manifests(mutate: Any, message: str) -> None:
    doc = _doc()
    mutate(doc)
    with pytest.raises(ManifestError, match=message):
        parse_manifest(json.dumps(doc).encode(), "t1")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_rejects_numbers_json_does_not_have(constant: str) -> None:
    raw = json.dumps(_doc()).replace('"duration_s": 12.5', f'"duration_s": {constant}')
    with pytest.raises(ManifestError, match=f"not JSON: {constant} is not a JSON number"):
        parse_manifest(raw.encode(), "t1")


def test_rejects_non_json_and_oversized() -> None:
    with pytest.raises(ManifestError, match="not JSON"):
        parse_manifest(b"{", "t1")
    with pytest.raises(ManifestError, match="not JSON"):
        parse_manifest(b'{"title": "\xff"}', "t1")
    with pytest.raises(ManifestError, match="manifest: \\[\\] is not of type 'object'"):
        parse_manifest(b"[]", "t1")
    with pytest.raises(ManifestError, match="more than"):
        parse_manifest(b" " * (MAX_MANIFEST_BYTES + 1), "t1")


def test_write_side_refuses_what_the_schema_forbids() -> None:
    bad = replace(_rendition(), codec="mp3")
    with pytest.raises(ManifestError, match=r"renditions\.96\.codec"):
        _manifest(renditions={"96": bad}).to_json()


def test_write_side_refuses_a_manifest_too_big_for_edges() -> None:
    points = [(n / 2, 4000 + n * 100) for n in range(90_000)]
    huge = replace(_rendition(size=10**8), seek_table=SeekTable.from_points(4000, points))
    with pytest.raises(ManifestError, match="too long for its seek tables"):
        _manifest(renditions={"96": huge}).to_json()


def test_region_codes_are_the_assigned_iso_3166_1_alpha_2_set() -> None:
    assert len(REGION_CODES) == 249
    assert {"SE", "NO", "DK", "GB", "US", "DE"} <= REGION_CODES
    assert not {"UK", "EU", "XX", "se", "*"} & REGION_CODES


def test_schema_documents_every_manifest_field() -> None:
    doc = _doc()
    check(doc)
    assert set(doc) <= set(SCHEMA["properties"])
    rendition = SCHEMA["$defs"]["rendition"]
    assert set(doc["renditions"]["96"]) == set(rendition["required"])
