from __future__ import annotations

import pytest

from origin import layout

HASH = "0f" * 32


def test_keys_follow_the_design_layout() -> None:
    assert layout.manifest_key("t123") == "tracks/t123/manifest.json"
    assert layout.audio_key("t123", "160", HASH, "ogg") == f"tracks/t123/160-{HASH}.ogg"


@pytest.mark.parametrize("track_id", ["", "..", "a/b", "a\x00", "-x", "a" * 129, "å", "a b", "%2e"])
def test_hostile_track_ids_never_become_keys(track_id: str) -> None:
    assert not layout.is_track_id(track_id)
    with pytest.raises(ValueError, match="invalid track id"):
        layout.manifest_key(track_id)


@pytest.mark.parametrize("rendition", ["", "..", "1/2", "9" * 33, "96.ogg"])
def test_hostile_rendition_names_never_become_keys(rendition: str) -> None:
    with pytest.raises(ValueError, match="invalid rendition"):
        layout.audio_key("t1", rendition, HASH, "ogg")


def test_hash_and_extension_are_checked() -> None:
    with pytest.raises(ValueError, match="content hash"):
        layout.audio_key("t1", "96", "abc", "ogg")
    with pytest.raises(ValueError, match="extension"):
        layout.audio_key("t1", "96", HASH, "og/g")
