"""The track manifest: the one mutable document per track, written last to publish it.

Both sides use this module: ``encore-origin`` builds and serialises manifests, the edge parses
and checks what it reads from the bucket. A manifest that fails :func:`parse_manifest` is never
served.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from origin import layout

SCHEMA_VERSION = 1
MAX_MANIFEST_BYTES = 1024 * 1024


class ManifestError(ValueError):
    """The manifest is not one this code can trust; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Rendition:
    name: str
    key: str
    content_type: str
    codec: str
    bitrate_kbps: int
    size: int
    sha256: str

    @property
    def etag(self) -> str:
        """A strong validator: the object is content-addressed, so its hash names its bytes."""
        return f'"{self.sha256}"'


@dataclass(frozen=True, slots=True)
class Manifest:
    track_id: str
    title: str
    artist: str
    duration_s: float
    published_at: datetime
    renditions: Mapping[str, Rendition]

    def to_json(self) -> bytes:
        doc = {
            "schema": SCHEMA_VERSION,
            "track_id": self.track_id,
            "title": self.title,
            "artist": self.artist,
            "duration_s": self.duration_s,
            "published_at": self.published_at.astimezone(UTC).isoformat(),
            "renditions": {
                r.name: {
                    "key": r.key,
                    "content_type": r.content_type,
                    "codec": r.codec,
                    "bitrate_kbps": r.bitrate_kbps,
                    "size": r.size,
                    "sha256": r.sha256,
                }
                for r in self.renditions.values()
            },
        }
        return json.dumps(doc, indent=2, sort_keys=True).encode()


def parse_manifest(raw: bytes, expected_track_id: str) -> Manifest:
    """Parse and check a manifest read from the bucket for ``expected_track_id``."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest is {len(raw)} bytes, more than {MAX_MANIFEST_BYTES}")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(f"manifest is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError("manifest is not a JSON object")
    if doc.get("schema") != SCHEMA_VERSION:
        raise ManifestError(f"schema: expected {SCHEMA_VERSION}, got {doc.get('schema')!r}")
    track_id = _field(doc, "track_id", str)
    if track_id != expected_track_id:
        raise ManifestError(f"track_id: {track_id!r} does not match {expected_track_id!r}")
    duration = _field(doc, "duration_s", (int, float))
    if not math.isfinite(duration) or duration < 0:
        raise ManifestError(f"duration_s: must be a non-negative number, got {duration!r}")
    try:
        published_at = datetime.fromisoformat(_field(doc, "published_at", str))
    except ValueError:
        raise ManifestError("published_at: not an ISO 8601 timestamp") from None
    if published_at.tzinfo is None:
        raise ManifestError("published_at: timestamp has no time zone")
    renditions_doc = _field(doc, "renditions", dict)
    if not renditions_doc:
        raise ManifestError("renditions: a manifest needs at least one rendition")
    renditions = {
        name: _parse_rendition(track_id, name, value) for name, value in renditions_doc.items()
    }
    return Manifest(
        track_id=track_id,
        title=_field(doc, "title", str),
        artist=_field(doc, "artist", str),
        duration_s=float(duration),
        published_at=published_at,
        renditions=renditions,
    )


def _parse_rendition(track_id: str, name: str, doc: Any) -> Rendition:
    where = f"renditions.{name}"
    if not layout.is_rendition_name(name):
        raise ManifestError(f"{where}: invalid rendition name")
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: expected an object")
    sha256 = _field(doc, "sha256", str, where)
    key = _field(doc, "key", str, where)
    extension = key.rpartition(".")[2]
    try:
        expected_key = layout.audio_key(track_id, name, sha256, extension)
    except ValueError as exc:
        raise ManifestError(f"{where}: {exc}") from None
    # The key must be the one the layout derives, so a manifest cannot point anywhere else.
    if key != expected_key:
        raise ManifestError(f"{where}.key: {key!r} is not {expected_key!r}")
    size = _field(doc, "size", int, where)
    bitrate = _field(doc, "bitrate_kbps", int, where)
    if size < 0 or bitrate <= 0:
        raise ManifestError(f"{where}: size must be >= 0 and bitrate_kbps > 0")
    return Rendition(
        name=name,
        key=key,
        content_type=_field(doc, "content_type", str, where),
        codec=_field(doc, "codec", str, where),
        bitrate_kbps=bitrate,
        size=size,
        sha256=sha256,
    )


def _field(
    doc: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str = ""
) -> Any:
    path = f"{where}.{name}" if where else name
    if name not in doc:
        raise ManifestError(f"{path}: missing")
    value = doc[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ManifestError(f"{path}: wrong type {type(value).__name__}")
    return value
