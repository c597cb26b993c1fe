"""The bucket layout: the only place that turns ids into S3 keys.

Ids are checked against strict character sets here, so no unvalidated input can become a key.
"""

from __future__ import annotations

import re

TRACK_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_\-]{0,127}"
RENDITION_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_\-]{0,31}"
CONTENT_HASH_PATTERN = r"[0-9a-f]{64}"
EXTENSION_PATTERN = r"[a-z0-9]{1,8}"

_TRACK_ID = re.compile(TRACK_ID_PATTERN)
_RENDITION = re.compile(RENDITION_PATTERN)

TRACKS_PREFIX = "tracks/"


def is_track_id(value: str) -> bool:
    return _TRACK_ID.fullmatch(value) is not None


def is_rendition_name(value: str) -> bool:
    return _RENDITION.fullmatch(value) is not None


def _check(track_id: str, rendition: str | None = None) -> None:
    if not is_track_id(track_id):
        raise ValueError(f"invalid track id {track_id!r}: use 1-128 of A-Z a-z 0-9 _ -")
    if rendition is not None and not is_rendition_name(rendition):
        raise ValueError(f"invalid rendition name {rendition!r}: use 1-32 of A-Z a-z 0-9 _ -")


def track_prefix(track_id: str) -> str:
    _check(track_id)
    return f"{TRACKS_PREFIX}{track_id}/"


def manifest_key(track_id: str) -> str:
    return f"{track_prefix(track_id)}manifest.json"


def audio_key(track_id: str, rendition: str, content_hash: str, extension: str) -> str:
    _check(track_id, rendition)
    if not re.fullmatch(CONTENT_HASH_PATTERN, content_hash):
        raise ValueError(f"invalid content hash {content_hash!r}: expected 64 hex digits")
    if not re.fullmatch(EXTENSION_PATTERN, extension):
        raise ValueError(f"invalid file extension {extension!r}")
    return f"{track_prefix(track_id)}{rendition}-{content_hash}.{extension}"
