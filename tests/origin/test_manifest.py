from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from origin import layout
from origin.manifest import MAX_MANIFEST_BYTES, Manifest, ManifestError, Rendition, parse_manifest

HASH = "ab" * 32


def _manifest() -> Manifest:
    return Manifest(
        track_id="t1",
        title="Song",
        artist="Band",
        duration_s=12.5,
        published_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        renditions={
            "96": Rendition(
                name="96",
                key=layout.audio_key("t1", "96", HASH, "ogg"),
                content_type="audio/ogg",
                codec="vorbis",
                bitrate_kbps=96,
                size=1234,
                sha256=HASH,
            )
        },
    )


def _doc() -> dict[str, Any]:
    return dict(json.loads(_manifest().to_json()))


def test_round_trip() -> None:
    assert parse_manifest(_manifest().to_json(), "t1") == _manifest()


def test_etag_is_the_content_hash() -> None:
    assert _manifest().renditions["96"].etag == f'"{HASH}"'


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema=2), "schema: expected 1"),
        (lambda d: d.pop("title"), "title: missing"),
        (lambda d: d.update(track_id="t2"), "does not match"),
        (lambda d: d.update(duration_s=True), "duration_s: wrong type"),
        (lambda d: d.update(duration_s=-1), "duration_s: must be"),
        (lambda d: d.update(published_at="2026-01-02T03:04:05"), "no time zone"),
        (lambda d: d.update(published_at="soon"), "not an ISO 8601"),
        (lambda d: d.update(renditions={}), "at least one rendition"),
        (lambda d: d["renditions"]["96"].update(key="tracks/other/96-x.ogg"), "renditions.96"),
        (lambda d: d["renditions"]["96"].update(key="../../etc/passwd"), "renditions.96"),
        (lambda d: d["renditions"]["96"].update(size=-1), "size must be"),
        (lambda d: d["renditions"]["96"].update(sha256="nothex"), "invalid content hash"),
        (lambda d: d["renditions"].update({"../x": d["renditions"]["96"]}), "invalid rendition"),
    ],
)
def test_rejects_bad_manifests(mutate: Any, message: str) -> None:
    doc = _doc()
    mutate(doc)
    with pytest.raises(ManifestError, match=message.replace(".", r"\.")):
        parse_manifest(json.dumps(doc).encode(), "t1")


def test_rejects_non_json_and_oversized() -> None:
    with pytest.raises(ManifestError, match="not JSON"):
        parse_manifest(b"{", "t1")
    with pytest.raises(ManifestError, match="not a JSON object"):
        parse_manifest(b"[]", "t1")
    with pytest.raises(ManifestError, match="more than"):
        parse_manifest(b" " * (MAX_MANIFEST_BYTES + 1), "t1")
