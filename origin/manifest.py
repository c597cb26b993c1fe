"""The track manifest: the one mutable document per track, written last to publish it.

Both sides use this module: ``encore-origin`` builds and serialises manifests, the edge parses
and checks what it reads from the bucket. Either way the document is checked against
``manifest.schema.json`` and then for what a schema cannot say (keys derived from the layout,
seek points inside the object, licence windows in order). A manifest that fails is never
written and never served.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from origin import layout
from origin.license import License
from origin.manifest_schema import ManifestError, check
from origin.seek_table import SeekTable

SCHEMA_VERSION = 1
MAX_MANIFEST_BYTES = 1024 * 1024
# The schema's pattern, matched whole: the header value an edge will send for the rendition.
_CONTENT_TYPE = re.compile(r"[a-z]+/[a-z0-9.+\-]+(; ?[a-z]+=[A-Za-z0-9.\-]+)*")

__all__ = ["MAX_MANIFEST_BYTES", "Manifest", "ManifestError", "Rendition", "parse_manifest"]


@dataclass(frozen=True, slots=True)
class Rendition:
    name: str
    key: str
    content_type: str
    codec: str
    bitrate_kbps: int  # the ladder rung's nominal bitrate
    measured_kbps: float  # size * 8 / duration
    size: int
    sha256: str
    sample_rate: int
    channels: int
    duration_s: float
    seek_table: SeekTable

    @property
    def etag(self) -> str:
        """A strong validator: the object is content-addressed, so its hash names its bytes."""
        return f'"{self.sha256}"'

    def to_doc(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "content_type": self.content_type,
            "codec": self.codec,
            "bitrate_kbps": self.bitrate_kbps,
            "measured_kbps": self.measured_kbps,
            "size": self.size,
            "sha256": self.sha256,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "duration_s": self.duration_s,
            "seek_table": self.seek_table.to_doc(),
        }


@dataclass(frozen=True, slots=True)
class Manifest:
    track_id: str
    title: str
    artist: str
    duration_s: float
    published_at: datetime
    renditions: Mapping[str, Rendition]
    license: License | None = None  # None: served nowhere

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "track_id": self.track_id,
            "title": self.title,
            "artist": self.artist,
            "duration_s": self.duration_s,
            "published_at": self.published_at.astimezone(UTC).isoformat(),
            "renditions": {name: r.to_doc() for name, r in self.renditions.items()},
        }
        if self.license is not None:
            doc["license"] = self.license.to_doc()
        return doc

    def to_json(self) -> bytes:
        """The bytes to upload, checked against the schema first (the write side)."""
        doc = self.to_doc()
        check(doc)
        try:
            raw = json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
        except ValueError as exc:
            raise ManifestError(f"manifest: {exc}") from None
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ManifestError(
                f"manifest would be {len(raw)} bytes, more than {MAX_MANIFEST_BYTES}: "
                "the track is too long for its seek tables"
            )
        parse_manifest(raw, self.track_id)  # what an edge will run on it
        return raw

    def same_content(self, other: Manifest) -> bool:
        """Equal apart from when each was published."""
        return replace(other, published_at=self.published_at) == self

    @property
    def footprint(self) -> int:
        """Rough bytes this object holds, for byte-bounded caches."""
        return 2048 + sum(1024 + r.seek_table.nbytes for r in self.renditions.values())


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def parse_manifest(raw: bytes, expected_track_id: str) -> Manifest:
    """Parse and check a manifest read from the bucket for ``expected_track_id`` (the read side).

    Whatever the bytes, the outcome is a Manifest or a ManifestError naming the field.
    """
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest is {len(raw)} bytes, more than {MAX_MANIFEST_BYTES}")
    try:
        doc = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as exc:  # also bad UTF-8, NaN and Infinity
        raise ManifestError(f"manifest is not JSON: {exc}") from None
    check(doc, seek_points=False)  # SeekTable.from_doc checks the points, much faster
    try:
        return _build(doc, expected_track_id)
    except ManifestError:
        raise
    except (ValueError, TypeError, OverflowError, KeyError) as exc:
        # What a schema cannot rule out: a timestamp like 2026-13-45, a trailing newline that
        # JSON Schema's "$" lets through, 1.0 where an integer belongs.
        raise ManifestError(f"manifest: {exc}") from None


def _build(doc: dict[str, Any], expected_track_id: str) -> Manifest:
    track_id: str = doc["track_id"]
    if track_id != expected_track_id:
        raise ManifestError(f"track_id: {track_id!r} does not match {expected_track_id!r}")
    license_doc = doc.get("license")
    return Manifest(
        track_id=track_id,
        title=doc["title"],
        artist=doc["artist"],
        duration_s=float(doc["duration_s"]),
        published_at=_timestamp(doc["published_at"], "published_at"),
        renditions={
            name: _parse_rendition(track_id, name, value)
            for name, value in doc["renditions"].items()
        },
        license=None if license_doc is None else License.from_doc(license_doc),
    )


def _timestamp(value: str, where: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ManifestError(f"{where}: {value!r} is not a date-time") from None


def _integer(doc: dict[str, Any], name: str, where: str) -> int:
    value = doc[name]
    if type(value) is not int:  # JSON Schema counts 1.0 as an integer
        raise ManifestError(f"{where}.{name}: {value!r} is not an integer")
    return value


def _parse_rendition(track_id: str, name: str, doc: dict[str, Any]) -> Rendition:
    where = f"renditions.{name}"
    extension = doc["key"].rpartition(".")[2]
    try:
        expected_key = layout.audio_key(track_id, name, doc["sha256"], extension)
    except ValueError as exc:
        raise ManifestError(f"{where}: {exc}") from None
    # The key must be the one the layout derives, so a manifest cannot point anywhere else.
    if doc["key"] != expected_key:
        raise ManifestError(f"{where}.key: {doc['key']!r} is not {expected_key!r}")
    if not _CONTENT_TYPE.fullmatch(doc["content_type"]):
        raise ManifestError(f"{where}.content_type: {doc['content_type']!r} is not a media type")
    size = _integer(doc, "size", where)
    try:
        seek_table = SeekTable.from_doc(doc["seek_table"], size)
    except ManifestError as exc:
        raise ManifestError(f"{where}.{exc}") from None
    return Rendition(
        name=name,
        key=doc["key"],
        content_type=doc["content_type"],
        codec=doc["codec"],
        bitrate_kbps=_integer(doc, "bitrate_kbps", where),
        measured_kbps=float(doc["measured_kbps"]),
        size=size,
        sha256=doc["sha256"],
        sample_rate=_integer(doc, "sample_rate", where),
        channels=_integer(doc, "channels", where),
        duration_s=float(doc["duration_s"]),
        seek_table=seek_table,
    )
